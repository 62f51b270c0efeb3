"""A numbered log of what happened, for live streams (SSE, WebSocket) to follow.

Every event gets the next sequence number. A reader asks for events after the last number
it saw and waits until there are some. With a ``path``, every event is also written to an
``EventStore`` file, so after a scheduler restart the numbering continues and a reader can
resume from its last number; ``epoch`` then names that file and stays the same. Without one
(tests, an in-memory registry) ``epoch`` changes at every start, so a reader knows to fetch
the current state again instead of trusting its position.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import uuid
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("trainq.events")


class EventLog:
    """A bounded ring of recent events with a wake-up for waiting readers."""

    def __init__(self, capacity: int = 10_000, path: str | None = None, store: Any = None) -> None:
        """``path``: an event file (``EventStore``); ``store``: an event store already open (e.g.
        a Postgres registry's, ``scheduler.store.open_event_store``); neither: in memory only."""
        self.epoch = uuid.uuid4().hex[:8]
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._next = 1
        self._changed: asyncio.Event | None = None
        self._store = None
        self._unsaved: list[dict[str, Any]] | None = None  # inside ``batch``: what the file still needs
        if path is not None:
            from .eventstore import EventStore

            store = EventStore(path, capacity)
        if store is not None:
            self._store = store
            self.epoch = self._store.epoch
            self._events.extend(self._store.load(capacity))
            self._next = self._store.last_seq() + 1

    @property
    def last_seq(self) -> int:
        return self._next - 1

    def append(self, event: dict[str, Any]) -> None:
        """Record an event (called synchronously by the scheduler core's listeners)."""
        numbered = {**event, "seq": self._next}  # the log's number wins
        if self._unsaved is not None:
            self._unsaved.append(numbered)
        else:
            self._save([numbered])
        self._events.append(numbered)
        self._next += 1
        if self._changed is not None:
            self._changed.set()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Events appended inside are written to the file together at the end, in one transaction
        (a submit of many jobs writes once, not once a job). Readers see each event at once; only
        the file waits, for as long as the synchronous code inside runs (no ``await`` inside)."""
        if self._unsaved is not None:  # already in a batch: the outer one writes
            yield
            return
        self._unsaved = []
        try:
            yield
        finally:
            unsaved, self._unsaved = self._unsaved, None
            self._save(unsaved)

    def _save(self, events: list[dict[str, Any]]) -> None:
        if self._store is None or not events:
            return
        try:
            self._store.append_many(events)
        except Exception:
            logger.exception("could not persist events %s-%s", events[0]["seq"], events[-1]["seq"])

    def since(self, after: int, job_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Events numbered above ``after`` (optionally of one job), oldest first."""
        out = []
        first = self._events[0]["seq"] if self._events else self._next
        start = max(0, after + 1 - first)  # seqs in the ring are contiguous (but see below)
        if start and start < len(self._events) and self._events[start]["seq"] != after + 1:
            start = 0  # a gap (an event that could not be persisted before a restart): scan
        for event in itertools.islice(self._events, start, None):
            if event["seq"] <= after:
                continue
            if job_id is None or event.get("job_id") == job_id:
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    async def wait(self, after: int, job_id: str | None, timeout_s: float) -> dict[str, Any]:
        """Events after ``after``, waiting up to ``timeout_s`` for the first one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            events = self.since(after, job_id)
            remaining = deadline - loop.time()
            if events or remaining <= 0:
                oldest = self._events[0]["seq"] if self._events else self._next
                return {"epoch": self.epoch, "events": events, "last_seq": self.last_seq,
                        "truncated": after + 1 < oldest}
            if self._changed is None:
                self._changed = asyncio.Event()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
