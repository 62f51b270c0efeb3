"""Attempts: what runners report, how an attempt ends, what it lost, and pausing a running one.

A runner's events arrive typed (``runner_events``); ``policy.failure`` decides what an end means
and ``Attempts.settle`` applies the decision through the writer. Nothing here runs a scheduling
pass: the façade runs one after each command.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..jobs import Attempt, Job, Report, iso, step_of
from ..policy import failure
from ..policy.pausing import PausePlan, plan_pause
from ..states import ACTIVE, JobStatus
from ..store import Request
from .checkpoints import Checkpoints
from .runner_events import Exited, HookSeen, Reported, RunnerEvent, Started
from .writer import Writer

S = JobStatus

#: What a pause, resume or the job says when its train function never reads its checkpoint.
NOT_RESUMABLE = ("its train function never calls ray.train.get_checkpoint(), so a resume starts it over"
                 " from the beginning: everything since its attempt started would be redone")
IGNORED_CHECKPOINT = ("the train function ignored its checkpoint: it was resumed from one but never called"
                      " ray.train.get_checkpoint(), so it started over")


#: why a job paused for a shutdown is back in the queue
SHUTDOWN_OVER = "trainq started again after a shutdown; requeued"


class Attempts:
    """Runs of a job: their events, ends and losses, and pauses of running ones."""

    def __init__(self, writer: Writer, checkpoints: Checkpoints) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.checkpoints = checkpoints
        self.shutting_down = False  # a shutdown is in progress (``Scheduler.drain``): nothing new starts

    # -- what runners report ----------------------------------------------------------------------
    def on_event(self, event: RunnerEvent) -> bool:
        """Apply one runner event (idempotent). True when it ended the attempt (a pass is due)."""
        job = self.writer.find(event.job_id)
        if job is None:
            return False
        if isinstance(event, Reported):
            self._on_report(job, event)
        elif isinstance(event, Started):
            if job.attempt == event.attempt and job.status is S.PENDING:
                self.writer.transition(job, S.RUNNING, "start", "workers started")
        elif isinstance(event, HookSeen):
            if not job.cooperative:
                self.writer.update(job, cooperative=True)
        else:
            self._on_exit(job, event)
            return True
        return False

    def launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        """No runner could be started for the attempt (e.g. its working_dir failed to upload)."""
        self.writer.release(job_id, attempt)
        job = self.writer.find(job_id)
        if job is not None and job.attempt == attempt and job.status in ACTIVE:
            job = self.writer.transition(job, S.FAILED, "fail", "could not start a runner",
                                         finished_at=self.ctx.clock(), error=error)
            self.end(job, "failed", self.ctx.clock())

    def runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        """A runner is gone without saying how its attempt ended (and its run with it)."""
        self.writer.release(job_id, attempt)
        job = self.writer.find(job_id)
        if job is None or job.attempt != attempt or job.status not in ACTIVE:
            return
        now = self.ctx.clock()
        if job.status is S.PENDING:
            job = self.writer.requeue(job, "requeue", f"runner gone before training started ({why}); requeued",
                                      job.resume_from)
        else:
            decision = failure.on_runner_lost(job.status, job.pause_reason, why, job.retries,
                                              self.writer.spec(job).max_retries, self.ctx.settings.retry_backoff_s)
            job = self.settle(job, decision, now, error=f"RunnerLost: the runner of attempt {attempt} is gone ({why})")
        self.end(job, "lost", now, attempt=attempt)

    def _on_report(self, job: Job, event: Reported) -> None:
        attempt = event.attempt
        report = Report(job.job_id, attempt, event.seq, event.at, event.metrics, event.checkpoint_path)
        if job.attempt != attempt or not self.ctx.store.record_report(report):
            return  # a stale attempt, or a resend of a report already recorded
        if report.checkpoint_path:
            self.checkpoints.on_recorded(job.job_id, attempt, report.at, report.checkpoint_path)
        if job.status is S.PENDING:
            job = self.writer.transition(job, S.RUNNING, "start", "first report received")
        if report.seq == 1 and event.read_checkpoint is not None:
            self._learn_resumable(job, event.read_checkpoint)
            job = self.writer.job(job.job_id)
        self._verify_resume(job, report)
        if report.checkpoint_path and job.checkpoint_requested_at is not None \
                and report.at >= job.checkpoint_requested_at:
            self.writer.update(job, checkpoint_requested_at=None)
            self.writer.notify({"type": "checkpoint", "job_id": job.job_id, "attempt": attempt,
                                "checkpoint_path": report.checkpoint_path, "requested": True,
                                "at": iso(report.at)})
        public = {"type": "report", **report.to_dict()}
        public["report_seq"] = public.pop("seq")  # "seq" is the event log's own numbering
        self.writer.notify(public)

    def _learn_resumable(self, job: Job, read_checkpoint: bool) -> None:
        """The first report of an attempt says whether its function asked for its checkpoint."""
        changes: dict[str, Any] = {"resumable": read_checkpoint}
        if not read_checkpoint:
            changes["warning"] = (IGNORED_CHECKPOINT if job.resume_from else NOT_RESUMABLE)
        self.writer.update(job, **changes)
        if not read_checkpoint:
            self.writer.notify({"type": "warning", "job_id": job.job_id, "warning": changes["warning"]})

    def _verify_resume(self, job: Job, report: Report) -> None:
        """Warn when a resumed attempt's first report shows it ignored its checkpoint."""
        if not job.resume_from or job.warning or report.seq != 1:
            return  # only the first report of a resumed attempt is checked (runners count from 1)
        recorded = self.ctx.store.find_checkpoint(job.job_id, job.resume_from)
        start_step = step_of(recorded["metrics"]) if recorded else None
        first_step = step_of(report.metrics)
        if start_step is not None and first_step is not None and first_step <= start_step:
            warning = (f"the train function seems to have ignored its checkpoint: it resumed from step"
                       f" {start_step} but its first report is step {first_step}")
            self.writer.update(job, warning=warning)
            self.writer.notify({"type": "warning", "job_id": job.job_id, "warning": warning})

    def _on_exit(self, job: Job, event: Exited) -> None:
        attempt, outcome = event.attempt, event.outcome
        at = event.at or self.ctx.clock()
        self.writer.release(job.job_id, attempt)
        if job.attempt != attempt or job.status not in ACTIVE:
            # The scheduler already settled this attempt (cancel, deadline); keep its accounting.
            self.end(job, None, at, attempt=attempt)
            return
        if job.status is S.PENDING and outcome != "failed":
            # It trained, so it ran, even if its "started" word never arrived.
            job = self.writer.transition(job, S.RUNNING, "start", "finished before its start was reported")
        if job.status is S.PENDING:  # failed before training: the runner could not start the run
            decision = failure.Decision(S.FAILED, "the run failed before training started")
        else:
            decision = failure.on_exit(job.status, job.pause_reason, outcome, event.failure, job.retries,
                                       self.writer.spec(job).max_retries, self.ctx.settings.retry_backoff_s)
        job = self.settle(job, decision, at, error=event.error, final_checkpoint=event.checkpoint_path)
        self.end(job, outcome, at)
        self.checkpoints.apply_retention(job.job_id)  # what the ended attempt still needed is free now

    # -- how an attempt ends --------------------------------------------------------------------
    def settle(self, job: Job, decision: failure.Decision, at: float, error: str | None = None,
               final_checkpoint: str | None = None) -> Job:
        """Apply a failure-policy decision to an active job whose attempt has ended."""
        w = self.writer
        if decision.status is S.COMPLETED:
            return w.transition(job, S.COMPLETED, "complete", decision.reason, finished_at=at,
                                checkpoint_path=final_checkpoint or job.checkpoint_path)
        if decision.status is S.PAUSED and job.pause_reason == failure.SHUTDOWN and not self.shutting_down:
            # trainq started again before its pause for the shutdown ended: it goes back to the
            # queue, as those whose pause ended before the restart do (``Scheduler.recover``)
            return w.requeue(job, "requeue", SHUTDOWN_OVER, job.checkpoint_path)
        if decision.status is S.PAUSED:
            return w.transition(job, S.PAUSED, "pause", decision.reason, paused_at=at)
        if decision.status is S.QUEUED:
            reason = decision.reason
            if job.pause_reason == failure.PREEMPT and job.preempted_by:
                reason = f"preempted by {job.preempted_by}: " + reason.removeprefix("preempted: ")
            elif job.pause_reason == failure.RESIZE and job.preempted_by:
                reason = f"shrinking for {job.preempted_by}: " + reason.removeprefix("resizing: ")
            # A job whose time slice is over, or a borrowing job preempted (its owner's guarantee did
            # not cover it), goes behind the jobs waiting: back in its old place it would start
            # again at once on the room just made, ahead of the job it was paused for.
            behind: dict[str, Any] = {"seq": self.ctx.store.next_seq()} if job.pause_reason == failure.ROTATE or (
                job.pause_reason == failure.PREEMPT and job.borrowing) else {}
            return w.requeue(job, "requeue", reason, job.checkpoint_path,
                             retries=job.retries + (1 if decision.retry else 0),
                             not_before=at + decision.backoff_s if decision.backoff_s else None,
                             keep_reason=job.pause_reason in (failure.PREEMPT, failure.ROTATE), **behind)
        return w.transition(job, S.FAILED, "fail", decision.reason, finished_at=at,
                            error=error or "the run failed without an error message")

    def stop_orphan(self, job_id: str, attempt: int) -> bool:
        """Stop a live runner of an attempt that is not active (after a restart, or found by
        reconciliation); what it holds stays counted until it ends. False: the run belongs to
        another registry's scheduler, never ours to stop."""
        orphan = self.ctx.store.get_job(job_id)
        if orphan is None:
            return False
        if (job_id, attempt) not in self.writer.held:
            self.writer.hold(orphan, attempt)
        self.ctx.launcher.stop(job_id, attempt)
        return True

    def stop(self, job: Job, outcome: str, at: float) -> None:
        """Stop the job's current attempt now (its state already written) and account for it."""
        self.ctx.launcher.stop(job.job_id, job.attempt)
        self.end(job, outcome, at)

    def end(self, job: Job, outcome: str | None, at: float, attempt: int | None = None) -> None:
        """Record how an attempt ended and how much work it lost beyond its last checkpoint."""
        store = self.ctx.store
        record = store.get_attempt(job.job_id, attempt or job.attempt)
        if record is None:
            return
        if record.outcome is None and outcome is not None:
            record.outcome = outcome
        if record.ended_at is None:
            record.ended_at = at
        first_end = record.lost_work is None
        record.lost_work = self.lost_work(record, at=record.ended_at, resumable=job.resumable)
        store.save_attempt(record)
        if record.attempt == job.attempt:
            self.writer.update(job, lost_work=record.lost_work)
        if first_end:
            self.writer.notify({"type": "attempt", "job_id": job.job_id, "attempt": record.attempt,
                                "outcome": record.outcome, "lost_work": record.lost_work,
                                "at": iso(record.ended_at)})

    def lost_work(self, attempt: Attempt, at: float, resumable: bool | None = None) -> dict[str, Any]:
        """Reports, seconds and (when reported) steps an attempt made beyond its last checkpoint.

        A job whose function never reads its checkpoint redoes its whole attempt on resume.
        """
        store = self.ctx.store
        reports = store.reports(attempt.job_id, attempt=attempt.attempt)
        last_ckpt = max((i for i, r in enumerate(reports) if r.checkpoint_path), default=None)
        if resumable is False:
            base_at, checkpoint, after, base_step = attempt.started_at, None, reports, None
        elif last_ckpt is not None:
            base_at, base_step = reports[last_ckpt].at, step_of(reports[last_ckpt].metrics)
            after = reports[last_ckpt + 1:]
            checkpoint = reports[last_ckpt].checkpoint_path
        else:
            base_at, checkpoint, after = attempt.started_at, attempt.resumed_from, reports
            resumed = store.find_checkpoint(attempt.job_id, checkpoint) if checkpoint else None
            base_step = step_of(resumed["metrics"]) if resumed else None
        last_step = step_of(after[-1].metrics) if after else None
        steps = None
        if last_step is not None:
            steps = last_step - base_step if base_step is not None else last_step + 1
        lost: dict[str, Any] = {"reports": len(after), "seconds": round(max(0.0, at - base_at), 3), "steps": steps,
                                "since_checkpoint": checkpoint}
        if resumable is False:
            lost["note"] = "its train function never reads its checkpoint: the whole attempt is redone"
        return lost

    def started_at(self, job: Job) -> float:
        """When the job's current attempt started (its last change, before it has one)."""
        return job.started_at if job.started_at is not None else job.updated_at

    @staticmethod
    def running_since(job: Job, now: float) -> float:
        """When the job's current attempt's workers started: its last transition while it runs;
        ``now`` while it still starts (it has run for 0 s). The minimum runtime, the time slice and
        the elastic churn bound count from here, not from the admission."""
        return job.updated_at if job.status is JobStatus.RUNNING else now

    # -- pausing a running attempt ----------------------------------------------------------------
    def plan_pause(self, job: Job, now: float, deadline_s: float | None = None, wait_forever: bool = False,
                   cap_s: float | None = None) -> PausePlan:
        """When a pause of this running job must end at the latest, and when it likely will.

        ``cap_s`` bounds a derived deadline further (a preemption's grace, a shutdown's limit).
        """
        store, settings = self.ctx.store, self.ctx.settings
        reports = store.reports(job.job_id, attempt=job.attempt)
        steps = [b.at - a.at for a, b in itertools.pairwise(reports)]
        attempt = store.get_attempt(job.job_id, job.attempt)
        limit = settings.pause_max_wait_s if cap_s is None else min(cap_s, settings.pause_max_wait_s)
        return plan_pause(now, attempt.started_at if attempt else now, [r.at for r in reports if r.checkpoint_path],
                          step_s=_median(steps), cooperative=job.cooperative, deadline_s=deadline_s,
                          wait_forever=wait_forever, max_wait_s=limit, floor_s=min(30.0, limit),
                          default_s=min(settings.pause_default_deadline_s, limit))

    def begin_pause(self, job: Job, plan: PausePlan, intent: failure.PauseIntent, reason: str, *,
                    request: Request | None = None, **changes: Any) -> Job:
        """running -> pausing: ask the runner to stop right after its next checkpoint report."""
        job = self.writer.transition(job, S.PAUSING, "pause", reason, request=request,
                                     pause_requested_at=self.ctx.clock(),
                                     pause_deadline_at=plan.deadline_at, expected_paused_by=plan.expected_at,
                                     pause_reason=intent, checkpoint_requested_at=None, **changes)
        self.ctx.launcher.request_pause(job.job_id, job.attempt)
        return job

    # -- periodic: deadlines and limits -----------------------------------------------------------
    def expire(self, now: float) -> None:
        """End what ran out of time: time limits, pause deadlines, start timeouts."""
        self._enforce_time_limits(now)
        for job_id, deadline in list(self.writer.deadlines.items()):
            if deadline <= now:
                job = self.writer.job(job_id)
                decision = failure.after_pause(job.pause_reason, "pause deadline passed; stopped at the"
                                               " last recorded checkpoint")
                job = self.settle(job, decision, now)
                self.stop(job, "paused (deadline)", now)
        limit = self.ctx.settings.start_timeout_s
        for job_id, attempt in list(self.writer.held):
            starting = self.writer.find(job_id)
            if starting is not None and starting.attempt == attempt and starting.status is S.PENDING \
                    and starting.started_at is not None and now - starting.started_at > limit:
                starting = self.writer.requeue(starting, "requeue", f"its workers could not be placed within"
                                               f" {limit:g}s (start timeout); back in the queue", starting.resume_from)
                self.stop(starting, "start timeout", now)

    def _enforce_time_limits(self, now: float) -> None:
        """Stop an attempt that has run its ``time_limit_s``: the job fails with a time-limit error."""
        for job in list(self.writer.live.values()):
            limit = self.writer.spec(job).time_limit_s
            if limit is None or job.status not in (S.PENDING, S.RUNNING) or job.started_at is None \
                    or now - job.started_at < limit:
                continue
            job = self.writer.transition(job, S.FAILED, "fail", f"time limit of {limit:g}s reached; stopped",
                                         finished_at=now, error=f"TimeLimit: attempt {job.attempt} ran for its"
                                         f" time limit of {limit:g} s (time_limit_s) and was stopped; resume it to"
                                         " go on from its last checkpoint")
            self.stop(job, "time limit", now)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
