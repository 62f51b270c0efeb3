"""The HTTP API's hot reads, coalesced: many concurrent requests, one actor call.

Under load most of a read's cost is the round trip to the scheduler actor (about 1.4 ms on 2
cores), not the read. So ``get``, ``list`` and ``queue`` go through a ``Coalescer``: while one
batch of reads is in flight to the actor, the requests that arrive wait and go together in the
next one (``SchedulerService.reads``), identical reads once. An idle server adds nothing (a
lone request goes at once); a busy one makes one call for many requests.

This is not a cache: every request is answered by a call issued after it arrived, so an answer
is never older than its request (a client that submits and then lists sees its job).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from scheduler.wire import HOT_READS as READS  # what the scheduler's ``reads`` answers in one call

#: ``reads`` of the scheduler: (method, args) pairs in, one answer (bytes, or the error it raised) each out.
Issue = Callable[[list[tuple[str, tuple[Any, ...]]]], Awaitable[Sequence[Any]]]


def _key(method: str, args: tuple[Any, ...]) -> Hashable:
    return method, tuple(tuple(a) if isinstance(a, list) else a for a in args)


class Coalescer:
    """At most one batch of reads in flight; what arrives meanwhile goes in the next batch."""

    def __init__(self, issue: Issue) -> None:
        self._issue = issue
        self._waiting: dict[Hashable, tuple[str, tuple[Any, ...], list[asyncio.Future[Any]]]] = {}
        self._busy = False

    async def read(self, method: str, *args: Any) -> Any:
        """``method(*args)`` on the scheduler, in the next batch; its answer, or its error raised."""
        if method not in READS:
            raise ValueError(f"{method!r} is not a read that may be coalesced (one of {sorted(READS)})")
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(_key(method, args), (method, args, []))[2].append(future)
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = list(self._waiting.values()), {}
                try:
                    answers = list(await self._issue([(method, args) for method, args, _ in batch]))
                    if len(answers) != len(batch):
                        raise RuntimeError(f"{len(answers)} answers to {len(batch)} reads")
                except BaseException as e:  # the call as a whole failed (e.g. the actor is restarting)
                    _answer(batch, [e] * len(batch))
                    if not isinstance(e, Exception):
                        raise  # cancelled: the server is shutting down
                    continue
                _answer(batch, answers)
        finally:
            self._busy = False


def _answer(batch: list[tuple[str, tuple[Any, ...], list[asyncio.Future[Any]]]], answers: list[Any]) -> None:
    for (_, _, futures), answer in zip(batch, answers):
        for future in futures:
            if future.done():  # its request was cancelled (the client went away)
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
