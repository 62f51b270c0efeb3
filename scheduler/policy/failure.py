"""What the end of an attempt means for its job, pure (as Ray Train's ``FailurePolicy`` decides).

An attempt ends with an outcome its runner reports (``completed``, ``paused``, ``failed`` with
a failure ``kind``), or its runner is lost without a word. A job that was pausing ends as its
pause intended: ``user`` and ``shutdown`` pauses end ``paused``, a ``preempt`` pause goes back to
the queue by itself. A failure raised by the train function fails the job; a failure of the
infrastructure (a node, a worker process, the runner, the whole Ray instance) requeues it from
its last checkpoint, up to ``max_retries`` times (-1: always) with a growing backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..states import JobStatus

S = JobStatus


class PauseIntent(str, Enum):
    """Who asked for a pause, which decides where the job goes when it stops (stored as its value)."""

    USER = "user"
    PREEMPT = "preempt"
    SHUTDOWN = "shutdown"
    #: a time slice is over; like a preemption it goes back to the queue, but behind
    ROTATE = "timeslice"
    #: an elastic job changes size: back to the queue in its place, relaunched at once with another size
    RESIZE = "resize"

    def __str__(self) -> str:
        return self.value


USER, PREEMPT, SHUTDOWN, ROTATE, RESIZE = (PauseIntent.USER, PauseIntent.PREEMPT, PauseIntent.SHUTDOWN,
                                           PauseIntent.ROTATE, PauseIntent.RESIZE)
#: Failure kinds a runner reports.
USER_ERROR, INFRASTRUCTURE = "user", "infrastructure"


@dataclass(frozen=True)
class Decision:
    """The job's next state (``completed``, ``paused``, ``queued`` or ``failed``) and why."""

    status: JobStatus
    reason: str
    retry: bool = False  # counts against max_retries
    backoff_s: float = 0.0


def backoff_s(retries: int, base_s: float, cap_s: float = 60.0) -> float:
    """Delay before retry number ``retries + 1``: base, doubling, capped."""
    return min(cap_s, base_s * (2 ** retries)) if base_s > 0 else 0.0


def after_pause(intent: str | None, how: str) -> Decision:
    """Where a pausing job goes once its run stopped (``how`` says how it stopped)."""
    if intent == PREEMPT:
        return Decision(S.QUEUED, f"preempted: {how}; requeued to resume from its last checkpoint")
    if intent == ROTATE:
        return Decision(S.QUEUED, f"time slice over: {how}; requeued behind the jobs waiting for their turn")
    if intent == RESIZE:
        return Decision(S.QUEUED, f"resizing: {how}; requeued in its place to start again from that checkpoint"
                        " with as many workers as fit")
    if intent == SHUTDOWN:
        return Decision(S.PAUSED, f"paused for a shutdown: {how}; it resumes when trainq starts again")
    return Decision(S.PAUSED, how)


def on_exit(status: str, intent: str | None, outcome: str, kind: str | None, retries: int,
            max_retries: int, retry_base_s: float) -> Decision:
    """Decide what a runner's exit event means. ``status`` is the job's state before it."""
    if outcome == "paused" and status == "pausing":
        return after_pause(intent, "stopped right after a checkpoint report")
    if outcome in ("completed", "paused"):
        # "paused" without a pause in progress cannot happen; a clean exit is a completion.
        return Decision(S.COMPLETED, "training finished")
    if kind == INFRASTRUCTURE:
        return _infrastructure(status, intent, "the run lost a node or a worker process", retries,
                               max_retries, retry_base_s)
    return Decision(S.FAILED, "training failed")


def on_runner_lost(status: str, intent: str | None, why: str, retries: int, max_retries: int,
                   retry_base_s: float) -> Decision:
    """Decide what the loss of a runner (and with it the run) means."""
    return _infrastructure(status, intent, f"runner gone ({why})", retries, max_retries, retry_base_s)


def _infrastructure(status: str, intent: str | None, what: str, retries: int, max_retries: int,
                    retry_base_s: float) -> Decision:
    if status == "pausing":
        return after_pause(intent, f"{what} while pausing; stopped at the last recorded checkpoint")
    if max_retries >= 0 and retries >= max_retries:
        return Decision(S.FAILED, f"{what}; not requeued: it already used its {max_retries} retries")
    wait = backoff_s(retries, retry_base_s)
    limit = "unlimited" if max_retries < 0 else str(max_retries)
    return Decision(S.QUEUED, f"{what}; requeued from its last checkpoint (retry {retries + 1} of {limit})",
                    retry=True, backoff_s=wait)
