"""Live streams as Server-Sent Events: state changes and metrics reports as they happen.

A stream starts with a ``snapshot`` event (the current state of the job, or of every active
and queued job), then follows the scheduler's event log. When the scheduler actor restarts,
the stream sends a fresh snapshot instead of guessing what it missed. A comment line every
``heartbeat_s`` keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .backend import Backend

ACTIVE = ["queued", "pending", "running", "pausing"]


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def follow(backend: Backend, job_id: str | None, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
    """The event stream of one job (``job_id``) or of all jobs (None)."""
    epoch = None
    after = 0
    while True:
        if epoch is None:
            health = await backend.call("health")
            epoch = health["epoch"]
            batch = await backend.call("events", 1 << 62, job_id, 0)  # just the current position
            after = batch["last_seq"]
            if job_id is not None:
                snapshot: Any = await backend.call("get", job_id)
            else:
                snapshot = await backend.call("list", ACTIVE, None, 0)
            yield sse("snapshot", snapshot)
        batch = await backend.call("events", after, job_id, heartbeat_s)
        if batch["epoch"] != epoch or batch["truncated"]:
            epoch = None  # restarted, or we fell too far behind: start again from a snapshot
            continue
        if not batch["events"]:
            yield ": keep-alive\n\n"
            continue
        for event in batch["events"]:
            after = event["seq"]
            yield sse(event["type"], event, event["seq"])
