"""api.coalesce: concurrent hot reads share one call, and no answer is older than its request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api.coalesce import Batcher, Coalescer
from scheduler.errors import JobNotFound


class FakeScheduler:
    """``reads`` over a registry whose version moves on with every write; each call takes a while."""

    def __init__(self) -> None:
        self.version = 0
        self.jobs = {"a": "A", "b": "B"}
        self.calls: list[list[tuple[str, tuple[Any, ...]]]] = []
        self.fail_next: BaseException | None = None

    async def reads(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        self.calls.append(calls)
        await asyncio.sleep(0.01)  # the round trip
        if self.fail_next is not None:
            e, self.fail_next = self.fail_next, None
            raise e
        out: list[Any] = []
        for method, args in calls:
            if method == "get_json":
                job = self.jobs.get(args[0])
                out.append((job, self.version) if job else JobNotFound(f"no job {args[0]!r}"))
            else:
                out.append((method, args, self.version))
        return out


async def _in_flight(reads: Coalescer, job_id: str = "a") -> asyncio.Future[Any]:
    """A read of ``job_id``, once its call is on the way (what arrives next waits for the next call)."""
    first = asyncio.ensure_future(reads.read("get_json", job_id))
    await asyncio.sleep(0.002)
    return first


def test_a_lone_read_goes_at_once_and_gets_its_answer() -> None:
    async def main() -> None:
        fake = FakeScheduler()
        reads = Coalescer(fake.reads)
        assert await reads.read("get_json", "a") == ("A", 0)
        assert await reads.read("page_json", None, 100, 0) == ("page_json", (None, 100, 0), 0)
        assert len(fake.calls) == 2

    asyncio.run(main())


def test_reads_that_arrive_during_a_call_share_the_next_one_identical_ones_once() -> None:
    async def main() -> None:
        fake = FakeScheduler()
        reads = Coalescer(fake.reads)
        first = await _in_flight(reads)
        rest = [reads.read("get_json", "b"), reads.read("get_json", "a"), reads.read("page_json", ["queued"], 10, 0),
                reads.read("page_json", ["queued"], 10, 0), reads.read("queue_json", None, 0)]
        answers = await asyncio.gather(first, *rest)
        assert answers == [("A", 0), ("B", 0), ("A", 0), ("page_json", (["queued"], 10, 0), 0),
                           ("page_json", (["queued"], 10, 0), 0), ("queue_json", (None, 0), 0)]
        assert len(fake.calls) == 2  # 6 requests, 2 calls
        assert fake.calls[1] == [("get_json", ("b",)), ("get_json", ("a",)), ("page_json", (["queued"], 10, 0)),
                                 ("queue_json", (None, 0))]

    asyncio.run(main())


def test_no_answer_is_older_than_its_request() -> None:
    async def main() -> None:
        fake = FakeScheduler()
        reads = Coalescer(fake.reads)

        async def client(i: int) -> None:
            for _ in range(20):
                fake.version += 1  # a write this client saw acknowledged
                seen = fake.version
                _, version = await reads.read("get_json", "a")
                assert version >= seen, f"client {i} read version {version} after writing {seen}"

        await asyncio.gather(*(client(i) for i in range(8)))
        assert len(fake.calls) < 8 * 20  # and they did share calls

    asyncio.run(main())


def test_each_request_gets_its_own_error_and_a_failed_call_fails_only_its_batch() -> None:
    async def main() -> None:
        fake = FakeScheduler()
        reads = Coalescer(fake.reads)
        got = await asyncio.gather(reads.read("get_json", "nope"), reads.read("get_json", "a"), return_exceptions=True)
        assert isinstance(got[0], JobNotFound) and "nope" in str(got[0]) and got[1] == ("A", 0)

        fake.fail_next = ConnectionError("the actor is restarting")
        first = await _in_flight(reads)
        second = asyncio.ensure_future(reads.read("get_json", "b"))  # in the next batch, after the failed one
        with pytest.raises(ConnectionError, match="restarting"):
            await first
        assert await second == ("B", 0)

    asyncio.run(main())


def test_a_cancelled_request_leaves_the_others_alone() -> None:
    async def main() -> None:
        fake = FakeScheduler()
        reads = Coalescer(fake.reads)
        first = await _in_flight(reads)
        gone = asyncio.ensure_future(reads.read("get_json", "b"))
        stays = asyncio.ensure_future(reads.read("get_json", "b"))
        await asyncio.sleep(0)
        gone.cancel()
        assert await first == ("A", 0) and await stays == ("B", 0)
        assert gone.cancelled()

    asyncio.run(main())


def test_only_reads_may_be_coalesced() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="'submit' is not a read"):
            await Coalescer(FakeScheduler().reads).read("submit", {})

    asyncio.run(main())


def test_submits_are_batched_each_its_own_and_a_batch_holds_at_most_max_batch() -> None:
    async def main() -> None:
        calls: list[list[Any]] = []

        async def submit_json(items: list[Any]) -> list[Any]:
            calls.append(items)
            await asyncio.sleep(0.01)  # the commit
            return [f"job-{item[1]}" for item in items]

        submits = Batcher(submit_json, max_batch=3)
        first = asyncio.ensure_future(submits.add(({"n": 1}, "k0", None)))
        await asyncio.sleep(0.002)  # on its way: what comes next waits for the next call
        same = [({"n": 1}, f"k{i}", None) for i in range(1, 6)]  # equal specs, still five submits
        answers = await asyncio.gather(first, *(submits.add(item) for item in same))
        assert answers == [f"job-k{i}" for i in range(6)]
        assert [len(c) for c in calls] == [1, 3, 2]  # nothing merged, none over max_batch, in order
        assert [item[1] for c in calls for item in c] == [f"k{i}" for i in range(6)]

    asyncio.run(main())
