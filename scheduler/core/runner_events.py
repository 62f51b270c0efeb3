"""What a runner tells the scheduler about its attempt, typed.

Runners send these dataclasses over Ray; ``parse`` also takes the plain-dict form runners sent
before (``{"kind": "report", ...}``: a runner host still alive across an upgrade may send it),
so nothing inside the core compares kind strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Started:
    """The attempt's workers are up and training."""

    job_id: str
    attempt: int


@dataclass(frozen=True)
class HookSeen:
    """The train function called the cooperative hook (``pause_requested``/``should_checkpoint``)."""

    job_id: str
    attempt: int


@dataclass(frozen=True)
class Reported:
    """One ``ray.train.report``: metrics, maybe a checkpoint; ``seq`` counts from 1 per attempt."""

    job_id: str
    attempt: int
    seq: int
    at: float
    metrics: dict[str, Any] = field(default_factory=dict)
    checkpoint_path: str | None = None
    #: on an attempt's first report: whether the train function asked for its checkpoint
    read_checkpoint: bool | None = None


@dataclass(frozen=True)
class Exited:
    """The run ended: ``completed``, ``paused`` (stopped right after a checkpoint, as asked),
    ``failed``, or ``stopped`` (the scheduler stopped it and already recorded why)."""

    job_id: str
    attempt: int
    outcome: str
    at: float | None = None
    error: str | None = None
    #: for a failure: ``user`` (the train function raised) or ``infrastructure``
    failure: str | None = None
    checkpoint_path: str | None = None


RunnerEvent = Started | HookSeen | Reported | Exited


def parse(event: Mapping[str, Any] | RunnerEvent) -> RunnerEvent:
    """A runner's event in its typed form; a dict of an unknown kind is a ``ValueError``."""
    if isinstance(event, (Started, HookSeen, Reported, Exited)):
        return event
    kind, job_id, attempt = event["kind"], str(event["job_id"]), int(event["attempt"])
    if kind == "report":
        read = event.get("read_checkpoint")
        return Reported(job_id, attempt, int(event["seq"]), float(event["at"]), dict(event.get("metrics") or {}),
                        event.get("checkpoint_path"), None if read is None else bool(read))
    if kind == "started":
        return Started(job_id, attempt)
    if kind == "hook":
        return HookSeen(job_id, attempt)
    if kind == "exit":
        at = event.get("at")
        return Exited(job_id, attempt, str(event["outcome"]), float(at) if at else None, event.get("error"),
                      event.get("failure"), event.get("checkpoint_path"))
    raise ValueError(f"unknown runner event kind {kind!r}")
