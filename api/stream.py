"""Live streams: state changes and metrics reports as they happen, as SSE or WebSocket messages.

``events()`` is the one source both transports format. A stream starts with a ``snapshot``
event (the current state of the job, or of every active and queued job), then follows the
scheduler's event log. A reader that gives the last event id it saw (SSE ``Last-Event-ID``,
WebSocket ``?last_event_id=``) gets the events after it instead of a snapshot, also across a
scheduler restart, since the log is persisted and keeps its numbering. When that is not
possible (the log moved on past what it keeps, or it is a different log), the stream sends a
fresh snapshot instead of guessing what was missed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from scheduler import wire

from .backend import Backend

ACTIVE = ["queued", "pending", "running", "pausing"]


@dataclass(frozen=True)
class StreamEvent:
    """One event of a stream; ``type`` is None for a heartbeat (nothing happened for a while)."""

    type: str | None
    data: Any = None
    id: int | None = None


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {wire.dumps(data)}\n\n"


async def events(backend: Backend, job_id: str | None, heartbeat_s: float = 15.0,
                 last_event_id: int | None = None) -> AsyncIterator[StreamEvent]:
    """The events of one job (``job_id``) or of all jobs (None), without end."""
    epoch = None
    after = 0
    resume = last_event_id
    while True:
        if epoch is None:
            health = await backend.health()
            epoch = health["epoch"]
            if resume is not None:
                after, resume = resume, None
                probe = await backend.events(after, job_id, 0)
                if probe["epoch"] == epoch and not probe["truncated"] and after <= probe["last_seq"]:
                    continue  # replay from the log: the loop below sends what came after ``after``
            batch = await backend.events(1 << 62, job_id, 0)  # just the current position
            after = batch["last_seq"]
            if job_id is not None:
                snapshot: Any = await backend.get(job_id)
            else:
                snapshot = await backend.list(ACTIVE, None, 0)
            yield StreamEvent("snapshot", snapshot)
        batch = await backend.events(after, job_id, heartbeat_s)
        if batch["epoch"] != epoch or batch["truncated"]:
            epoch = None  # a different log, or we fell too far behind: start again from a snapshot
            continue
        if not batch["events"]:
            yield StreamEvent(None)
            continue
        for event in batch["events"]:
            after = event["seq"]
            yield StreamEvent(event["type"], event, event["seq"])


async def follow(backend: Backend, job_id: str | None, heartbeat_s: float = 15.0,
                 last_event_id: int | None = None) -> AsyncIterator[str]:
    """The event stream as Server-Sent Events (a comment line as the heartbeat)."""
    async for ev in events(backend, job_id, heartbeat_s, last_event_id):
        yield ": keep-alive\n\n" if ev.type is None else sse(ev.type, ev.data, ev.id)
