"""The verbs that change a job: pause, resume, cancel, set_priority, checkpoint, and a shutdown's drain.

Each checks who asks (``authorize``), decides from the job's state, and writes through the
writer; none runs a scheduling pass (the façade runs one after each).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import Forbidden, IllegalTransition, InvalidSpec, NotCooperative
from ..jobs import Job, iso
from ..policy import failure
from ..states import ACTIVE, RESUMABLE, JobStatus
from ..verbs import CheckpointRequested, PauseResult, ResumeResult
from .attempts import NOT_RESUMABLE, Attempts
from .checkpoints import Checkpoints
from .dependencies import Dependencies
from .idempotency import Once
from .views import Views
from .writer import Writer

S = JobStatus


class Commands:
    """What users (and a shutdown) ask of a job."""

    def __init__(self, writer: Writer, attempts: Attempts, checkpoints: Checkpoints, views: Views,
                 dependencies: Dependencies) -> None:
        self.writer = writer
        self.dependencies = dependencies
        self.ctx = writer.ctx
        self.attempts = attempts
        self.checkpoints = checkpoints
        self.views = views

    def authorize(self, job_id: str, as_user: str | None, action: str) -> Job:
        """The job, if ``as_user`` may act on it: its owner or an admin. ``as_user`` None is a
        trusted caller (through Ray, or no users file)."""
        job = self.writer.job(job_id)
        users = self.ctx.users
        if as_user is None or users is None:
            return job
        user = users.get(as_user)
        if user is None:
            raise Forbidden(f"unknown user {as_user!r} may not {action} jobs", user=as_user, action=action,
                            job_id=job_id)
        if not user.is_admin and job.owner != user.name:
            raise Forbidden(f"user {user.name!r} may not {action} job {job_id!r}: it belongs to"
                            f" {job.owner or 'no user'!r}; only its owner or an admin may", user=user.name,
                            owner=job.owner, action=action, job_id=job_id)
        return job

    def pause(self, job_id: str, deadline_s: float | None, no_deadline: bool, once: Once) -> PauseResult:
        """Pause a job (README, "The model": pause and resume).

        A running job stops right after its next checkpoint report, or at ``deadline_s``; without
        one the deadline comes from its checkpoint cadence (``policy.pausing``), unless
        ``no_deadline`` says to wait for the checkpoint however long it takes (an explicit
        ``deadline_s`` given with it still applies).
        """
        if deadline_s is not None and (not math.isfinite(deadline_s) or deadline_s <= 0):
            raise InvalidSpec(f"deadline_s must be a positive number of seconds, got {deadline_s}",
                              field="deadline_s")
        w = self.writer
        job = w.job(job_id)
        previous = job.status
        if previous is S.PAUSING and job.pause_reason != failure.USER:
            # Being preempted (or drained): the user's pause wins, so it ends paused, not requeued.
            why = f"preempted by {job.preempted_by}" if job.pause_reason == failure.PREEMPT else job.pause_reason
            job = w.update(job, pause_reason=failure.USER)
            return _pause_result(job, previous, f"job was already pausing ({why}); it will now stay"
                                 " paused when it stops, instead of going back to the queue")
        if previous in (S.PAUSING, S.PAUSED):
            return _pause_result(job, previous, f"job is already {previous.value}; nothing changed")
        now = self.ctx.clock()
        if previous is S.QUEUED:
            job = w.transition(job, S.PAUSED, "pause", "paused while queued", request=once.take(), paused_at=now,
                               pause_reason=failure.USER)
            message = "Job paused (was queued); it left the queue"
        elif previous is S.PENDING:
            # Persist first: if we crash before the stop, recovery stops the orphaned runner.
            job = w.transition(job, S.PAUSED, "pause", "paused while starting", request=once.take(),
                               paused_at=now, pause_reason=failure.USER)
            self.attempts.stop(job, "paused", now)
            message = "Job paused (was pending); its start was abandoned"
        elif previous is S.RUNNING:
            # no_deadline turns off the *default* deadline; an explicit one still applies (HTTP
            # query parameters cannot say "not both", so the pair must mean something).
            plan = self.attempts.plan_pause(job, now, deadline_s=deadline_s,
                                            wait_forever=no_deadline and deadline_s is None)
            job = self.attempts.begin_pause(job, plan, failure.USER, "pause requested"
                                            + (f" with a {deadline_s:g}s deadline" if deadline_s else ""),
                                            request=once.take())
            message = f"Job is pausing: it stops right after its next checkpoint report ({plan.message})"
        else:
            raise IllegalTransition(job_id, previous.value, S.PAUSED.value, "pause")
        if job.resumable is False:
            message += ". " + NOT_RESUMABLE
        return _pause_result(job, previous, message)

    def resume(self, job_id: str, checkpoint_path: str | None, once: Once) -> ResumeResult:
        """Queue a paused, failed or cancelled job again, to start from a recorded checkpoint."""
        job = self.writer.job(job_id)
        previous = job.status
        if previous not in RESUMABLE:
            raise IllegalTransition(job_id, previous.value, S.QUEUED.value, "resume")
        start_from = job.checkpoint_path
        if checkpoint_path is not None:
            start_from = self.checkpoints.recorded(job, checkpoint_path)
        start_from, fallback = self.checkpoints.existing_start(job, start_from, named=checkpoint_path is not None)
        warning = NOT_RESUMABLE if job.resumable is False else None
        job = self.writer.requeue(job, "resume", f"resumed from {start_from or 'the start (no checkpoint)'}",
                                  start_from, warning=warning, request=once.take())
        self.dependencies.revive(job_id)  # the jobs cancelled for want of it wait for it again
        position = self.views.position(job_id)
        message = (f"Job resumed from checkpoint and queued at position {position}" if start_from
                   else f"Job has no checkpoint; it starts over, queued at position {position}")
        if fallback:
            message += ". " + fallback
        if warning:
            message += ". " + warning
        return ResumeResult(success=True, job_id=job_id, previous_status=previous.value, status=job.status.value,
                            checkpoint_path=start_from, queue_position=position, message=message)

    def cancel(self, job_id: str, once: Once) -> Job:
        """Cancel a job; a running one is stopped now (its resources free once it has stopped)."""
        job = self.writer.job(job_id)
        previous = job.status
        if previous is S.CANCELLED:
            return job
        now = self.ctx.clock()
        job = self.writer.transition(job, S.CANCELLED, "cancel", f"cancelled while {previous.value}",
                                     request=once.take(), finished_at=now)
        if previous in ACTIVE:
            self.attempts.stop(job, "cancelled", now)
        return job

    def set_priority(self, job_id: str, priority: Any) -> None:
        """Change a job's priority; its queue position changes at once and a raise may preempt."""
        if isinstance(priority, bool) or not isinstance(priority, int) or not -1_000_000 <= priority <= 1_000_000:
            raise InvalidSpec(f"priority must be an integer from -1000000 to 1000000, got {priority!r}",
                              field="priority")
        job = self.writer.job(job_id)
        if job.status is S.COMPLETED:
            raise IllegalTransition(job_id, job.status.value, job.status.value, "reprioritize",
                                    "a completed job never runs again")
        if job.priority != priority:
            previous = job.priority
            self.writer.update(job, priority=priority)
            self.writer.notify({"type": "priority", "job_id": job_id, "priority": priority,
                                "previous_priority": previous, "at": iso(self.ctx.clock())})

    def checkpoint(self, job: Job) -> CheckpointRequested:
        """Have a running job save a checkpoint at its next step and go on (checkpoint-now)."""
        job_id = job.job_id
        if job.status is not S.RUNNING:
            raise IllegalTransition(job_id, job.status.value, job.status.value, "checkpoint",
                                    "only a running job can save a checkpoint on request")
        if not job.cooperative:
            raise NotCooperative(job_id, "its train function has not called scheduler.train.should_checkpoint()"
                                 " (or pause_requested()) in this job, so it cannot save on request; it"
                                 " checkpoints only on its own schedule")
        if job.checkpoint_requested_at is None:
            job = self.writer.update(job, checkpoint_requested_at=self.ctx.clock())
            self.ctx.launcher.request_checkpoint(job_id, job.attempt)
        return CheckpointRequested(
            success=True, job_id=job_id, status=job.status.value, requested_at=iso(job.checkpoint_requested_at),
            checkpoint_path=job.checkpoint_path,
            message="checkpoint requested: the loop saves it at its next step and goes on; it is recorded when"
                    " reported (a 'checkpoint' event; the job's checkpoint_requested_at clears)")

    def drain(self, grace_s: float) -> list[str]:
        """A shutdown: pause every active job, to resume at the next start (see ``Scheduler.drain``)."""
        w, now = self.writer, self.ctx.clock()
        for job in self.ctx.store.jobs_in(ACTIVE):
            if job.status is S.RUNNING:
                plan = self.attempts.plan_pause(job, now, cap_s=grace_s)
                self.attempts.begin_pause(job, plan, failure.SHUTDOWN, "trainq is shutting down")
            elif job.status is S.PAUSING:
                deadline = min(job.pause_deadline_at or now + grace_s, now + grace_s)
                w.update(job, pause_deadline_at=deadline,
                         pause_reason=failure.SHUTDOWN if job.pause_reason != failure.USER else job.pause_reason)
            elif job.status is S.PENDING:
                job = w.transition(job, S.PAUSED, "pause", "trainq is shutting down; start abandoned",
                                   paused_at=now, pause_reason=failure.SHUTDOWN)
                self.attempts.stop(job, "paused (shutdown)", now)
        return sorted({job_id for job_id, _ in w.held})


def _pause_result(job: Job, previous: JobStatus, message: str) -> PauseResult:
    pausing = job.status is S.PAUSING
    return PauseResult(success=True, job_id=job.job_id, previous_status=previous.value, status=job.status.value,
                       paused_at=iso(job.paused_at), message=message,
                       expected_paused_by=iso(job.expected_paused_by) if pausing else None,
                       deadline_at=iso(job.pause_deadline_at) if pausing else None)
