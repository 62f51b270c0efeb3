"""The verbs, typed once: what the core, the actor's service, the API's backend and both Python
clients answer, so a reader (and mypy) can follow a pause from a route or a client to the core.

``Verbs`` is the synchronous form (the core, ``RayClient``, ``HttpClient``); ``scheduler.service``
and ``api.backend`` answer the same verbs awaitably. The answers are plain JSON-ready dicts: a
job's public form (``JobView``, described field by field by ``api.schemas.JobPublic``) and the
fixed shapes below.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

#: A job as every interface shows it (``api.schemas.JobPublic`` lists its fields).
JobView = dict[str, Any]
#: A recorded checkpoint: path, attempt, metrics, time, bytes, retention ``state``.
CheckpointView = dict[str, Any]
#: The verbs a whole sweep takes (each member that can: ``core.sweeps``).
SweepVerb = Literal["pause", "resume", "cancel"]


class PauseResult(TypedDict):
    """The answer to ``pause`` (the seed's contract, plus when a pausing job should be paused)."""

    success: bool
    job_id: str
    previous_status: str
    status: str
    paused_at: str | None
    message: str
    expected_paused_by: str | None
    deadline_at: str | None


class ResumeResult(TypedDict):
    """The answer to ``resume``."""

    success: bool
    job_id: str
    previous_status: str
    status: str
    checkpoint_path: str | None
    queue_position: int | None
    message: str


class CheckpointRequested(TypedDict):
    """The answer to ``checkpoint`` (checkpoint-now)."""

    success: bool
    job_id: str
    status: str
    requested_at: str | None
    checkpoint_path: str | None
    message: str


class Verbs(Protocol):
    """The verbs every synchronous interface answers the same way."""

    def submit(self, spec: Any, idempotency_key: str | None = None) -> JobView:
        """Queue a job; the same key (and spec) returns the job the first call made."""

    def get(self, job_id: str) -> JobView:
        """One job (a queued one with its pending reason and ETA)."""

    def queue(self) -> list[JobView]:
        """The queued jobs in the order they will start."""

    def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False) -> PauseResult:
        """Pause a job; a running one stops right after its next checkpoint report."""

    def resume(self, job_id: str, checkpoint_path: str | None = None) -> ResumeResult:
        """Queue a paused, failed or cancelled job again from a recorded checkpoint."""

    def cancel(self, job_id: str) -> JobView:
        """Cancel a job, stopping it if it runs."""

    def set_priority(self, job_id: str, priority: int) -> JobView:
        """Change a job's priority; a raise may preempt others."""

    def checkpoint(self, job_id: str) -> CheckpointRequested:
        """Ask a running cooperative job to save a checkpoint now and go on."""

    def checkpoints(self, job_id: str) -> list[CheckpointView]:
        """Every checkpoint the job recorded, newest first."""

    def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True) -> CheckpointView:
        """Pin a recorded checkpoint (kept whatever the retention rule says), or unpin it."""

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""

    def usage(self, by: str = "user", since: Any = None) -> dict[str, Any]:
        """Resource use per user or per job."""
