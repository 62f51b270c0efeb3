"""The job record: a plain dataclass inside; ``to_dict`` is its public, JSON-ready form."""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .states import JobStatus

#: Metrics keys read as a step counter, in order of preference.
STEP_KEYS = ("global_step", "step", "iteration", "training_iteration", "epoch")
#: Config keys read as "how many steps in total" (progress bars, ETAs), in order of preference.
TOTAL_KEYS = ("max_steps", "total_steps", "total", "steps", "num_steps")


_last_id = [0, 0]  # the (millisecond, low bits) of this process's latest id
_id_lock = threading.Lock()


def ordered_id() -> str:
    """20 hex digits: the time in milliseconds (48 bits), then 32 low bits.

    Unique and ordered by creation, so a new id is stored at the end of the B-tree indexes keyed
    by it (jobs, transitions, request keys) instead of on a random page of each: a batch of
    submits writes about half the bytes. The low bits start at random in each millisecond (ids of
    other processes made in the same one differ; not secret: every user sees every job, and
    Python reseeds ``random`` in a forked child) and count up within it, as ULID's monotonic mode
    does: random bits alone collided once in a run of 5,000 ids (a birthday in 2^32 at ~1,000 ids
    a millisecond), and two requests sharing a key would share an answer.
    """
    with _id_lock:
        ms, low = max(time.time_ns() // 1_000_000, _last_id[0]), random.getrandbits(32)
        if ms == _last_id[0]:
            low = _last_id[1] + 1
            if low >> 32:  # 2^32 ids in one millisecond: borrow the next one
                ms, low = ms + 1, random.getrandbits(31)
        _last_id[0], _last_id[1] = ms, low
    return f"{ms:012x}{low:08x}"


def new_job_id() -> str:
    """A URL-safe, unique job id that sorts by submission time."""
    return "job_" + ordered_id()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string (None stays None)."""
    return None if ts is None else _format(ts)


# Remembered, in one bounded memo: the same instants are formatted again and again (a job's
# created_at and updated_at, its events, every page that shows it), and formatting is the slow part.
@functools.lru_cache(maxsize=4096)
def _format(ts: float) -> str:
    """``datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")`` with a Z,
    the way datetime does it (the fraction rounded half-even to microseconds, then cut to
    milliseconds), with the seconds formatted once per second: new instants come in bursts."""
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1
    global _second
    second, text = _second  # one tuple, read and replaced whole: safe from any thread
    if second != int(whole):
        stamp = datetime.fromtimestamp(whole, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _second = second, text = int(whole), stamp
    return f"{text}.{micros // 1000:03d}Z"


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def step_of(metrics: dict[str, Any] | None) -> int | None:
    """The step counter a report carries, if any (see STEP_KEYS)."""
    if not metrics:
        return None
    for key in STEP_KEYS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return None


def total_steps_of(config: dict[str, Any] | None) -> int | None:
    """The run's total of steps, if its config names one (see TOTAL_KEYS)."""
    for key in TOTAL_KEYS:
        value = (config or {}).get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Job:
    """One job across all its attempts, as a row read from the store: a plain record, never
    changed in place (a change is a new row, read again). Only ``core.writer.Writer`` writes rows."""

    job_id: str
    name: str
    spec: dict[str, Any]
    priority: int
    seq: int  # submission order; the queue's tie-breaker, kept across pauses
    status: JobStatus = JobStatus.QUEUED
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    paused_at: float | None = None
    attempt: int = 0
    checkpoint_path: str | None = None  # latest recorded
    resume_from: str | None = None  # what the next attempt starts from
    metrics: dict[str, Any] | None = None  # latest report (rank 0)
    error: str | None = None
    warning: str | None = None
    lost_work: dict[str, Any] | None = None  # of the latest stop
    pause_requested_at: float | None = None
    pause_deadline_at: float | None = None
    expected_paused_by: float | None = None  # from the checkpoint cadence, while pausing
    pause_reason: str | None = None  # who asked: user, preempt (by whom in preempted_by), shutdown
    preempted_by: str | None = None
    preemptions: int = 0
    retries: int = 0  # requeues after infrastructure failures
    not_before: float | None = None  # a requeue's backoff: it may not start before this
    resumable: bool | None = None  # does its train function read its checkpoint? None: not known yet
    cooperative: bool = False  # its loop calls scheduler.train's hook (so it can checkpoint on request)
    checkpoint_requested_at: float | None = None  # a checkpoint-now waiting for its report
    owner: str | None = None  # the user who submitted it (None: no users file, or a trusted caller)
    borrowing: bool = False  # its current attempt runs beyond its owner's guarantee (reclaimed first)
    backfill: str | None = None  # its current attempt started as backfill: ends_before or spare
    workers: int | None = None  # how many workers its current (or last) attempt runs with

    def to_dict(self, queue_position: int | None = None) -> dict[str, Any]:
        """The job as every API returns it (timestamps ISO 8601, status a lowercase string); its
        nested values (spec, metrics) are the job's own."""
        d = {name: getattr(self, name) for name in _JOB_FIELDS if name != "seq"}
        d["status"] = self.status.value
        for key in _TIME_FIELDS:
            d[key] = iso(d[key])
        d["queue_position"] = queue_position if self.status is JobStatus.QUEUED else None
        return d


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_TIME_FIELDS = ("created_at", "updated_at", "started_at", "finished_at", "paused_at",
                "pause_requested_at", "pause_deadline_at", "expected_paused_by", "not_before",
                "checkpoint_requested_at")


@dataclass(frozen=True)
class Report:
    """One ``ray.train.report`` as the scheduler recorded it."""

    job_id: str
    attempt: int
    seq: int
    at: float
    metrics: dict[str, Any]
    checkpoint_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["at"] = iso(self.at)
        return d


@dataclass(frozen=True)
class Transition:
    """One recorded change of state."""

    job_id: str
    from_status: JobStatus | None
    to_status: JobStatus
    at: float
    reason: str
    attempt: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "from_status": self.from_status.value if self.from_status else None,
            "to_status": self.to_status.value,
            "at": iso(self.at),
            "reason": self.reason,
            "attempt": self.attempt,
        }


@dataclass
class Attempt:
    """One run of a job: what it started from and how it ended."""

    job_id: str
    attempt: int
    started_at: float
    resumed_from: str | None = None
    run_name: str = ""
    ended_at: float | None = None
    outcome: str | None = None
    lost_work: dict[str, Any] | None = None
    accelerator_type: str | None = None  # the type admission gave it (of the job's accelerator_type)
    workers: int | None = None  # how many workers it ran with (an elastic job's size changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["started_at"], d["ended_at"] = iso(self.started_at), iso(self.ended_at)
        return d
