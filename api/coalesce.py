"""The HTTP API's hot calls, batched: many concurrent requests, one call to the scheduler.

Under load most of a request's cost is the round trip to the scheduler actor, not the work. So
the hot reads (``get``, ``list``, ``queue``) and submits go through a ``Batcher``: while one batch
is in flight, the requests that arrive wait and go together in the next one. An idle server adds
nothing (a lone request goes at once); a busy one makes one call for many requests.

- Reads (``Coalescer``): identical reads in a batch are made once (``SchedulerService.reads``).
  This is not a cache: every request is answered by a call issued after it arrived, so an answer
  is never older than its request (a client that submits and then lists sees its job).
- Submits: a batch is stored with one commit, one fsync for all (``SchedulerService.submit_json``:
  group commit). Each request is answered only once that commit is on disk, and each is checked
  on its own: a bad spec fails alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from scheduler.wire import HOT_READS as READS  # what the scheduler's ``reads`` answers in one call

#: A batch's call: items in, one answer (or the error it raised) per item out, in order.
Issue = Callable[[list[Any]], Awaitable[Sequence[Any]]]
#: The most items one call carries; more wait for the next (keeps one call from holding the actor long).
MAX_BATCH = 256


def _key(method: str, args: tuple[Any, ...]) -> Hashable:
    return method, tuple(tuple(a) if isinstance(a, list) else a for a in args)


class Batcher:
    """At most one batch in flight; what arrives meanwhile goes in the next batch.

    ``same`` (optional) names items that may share one answer: equal names are sent once.
    """

    def __init__(self, issue: Issue, same: Callable[[Any], Hashable] | None = None,
                 max_batch: int = MAX_BATCH) -> None:
        self._issue = issue
        self._same = same
        self._max = max_batch
        self._waiting: dict[Hashable, tuple[Any, list[asyncio.Future[Any]]]] = {}
        self._numbers = itertools.count()
        self._busy = False

    async def add(self, item: Any) -> Any:
        """``item`` in the next batch: its answer, or its error raised."""
        future = asyncio.get_running_loop().create_future()
        name = self._same(item) if self._same is not None else next(self._numbers)
        self._waiting.setdefault(name, (item, []))[1].append(future)
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                names = list(itertools.islice(self._waiting, self._max))
                batch = [self._waiting.pop(name) for name in names]
                try:
                    answers = list(await self._issue([item for item, _ in batch]))
                    if len(answers) != len(batch):
                        raise RuntimeError(f"{len(answers)} answers to {len(batch)} items")
                except BaseException as e:  # the call as a whole failed (e.g. the actor is restarting)
                    _answer(batch, [e] * len(batch))
                    if not isinstance(e, Exception):
                        raise  # cancelled: the server is shutting down
                    continue
                _answer(batch, answers)
        finally:
            self._busy = False


class Coalescer(Batcher):
    """The hot reads: ``(method, args)`` items, identical ones answered once."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(issue, same=lambda item: _key(*item))

    async def read(self, method: str, *args: Any) -> Any:
        """``method(*args)`` on the scheduler, in the next batch; its answer, or its error raised."""
        if method not in READS:
            raise ValueError(f"{method!r} is not a read that may be coalesced (one of {sorted(READS)})")
        return await self.add((method, args))


def _answer(batch: list[tuple[Any, list[asyncio.Future[Any]]]], answers: list[Any]) -> None:
    for (_, futures), answer in zip(batch, answers):
        for future in futures:
            if future.done():  # its request was cancelled (the client went away)
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
