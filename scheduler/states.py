"""Job states and the one table of legal transitions (README, "The model").

The table is data; ``core.writer.Writer.transition`` is the only code that applies it.
"""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """A job's state; the value is the lowercase string every API uses."""

    QUEUED = "queued"  # waiting for resources
    PENDING = "pending"  # admitted: resources reserved, runner and workers starting
    RUNNING = "running"  # workers are training
    PAUSING = "pausing"  # stops right after its next checkpoint report
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


S = JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.PENDING, S.PAUSED, S.CANCELLED}),
    S.PENDING: frozenset({S.RUNNING, S.PAUSED, S.QUEUED, S.FAILED, S.CANCELLED}),
    # running -> queued: requeued after an infrastructure failure (a node or the runner lost).
    S.RUNNING: frozenset({S.PAUSING, S.COMPLETED, S.FAILED, S.CANCELLED, S.QUEUED}),
    # pausing -> queued: a preempted job (or one whose node was lost) goes back to the queue by itself.
    S.PAUSING: frozenset({S.PAUSED, S.QUEUED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.QUEUED, S.CANCELLED}),  # queued: resumed, or requeued after a shutdown
    S.FAILED: frozenset({S.QUEUED}),  # resume from its last checkpoint
    S.CANCELLED: frozenset({S.QUEUED}),  # resume from its last checkpoint
    S.COMPLETED: frozenset(),
}

#: States in which a runner may be alive and holding resources.
ACTIVE = frozenset({S.PENDING, S.RUNNING, S.PAUSING})
#: States a job can be resumed from.
RESUMABLE = frozenset({S.PAUSED, S.FAILED, S.CANCELLED})
#: States that end an attempt for good unless the job is resumed.
STOPPED = frozenset({S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED})


def allowed(current: JobStatus, target: JobStatus) -> bool:
    """Whether the table allows ``current -> target``."""
    return target in TRANSITIONS[current]

