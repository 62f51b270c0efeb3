"""The scheduler core: decides and records, never touches Ray.

Glossary
- job: what a user submitted; keeps its ``job_id`` across pauses, failures and resumes.
- attempt: one run of a job (a runner actor and a Ray Train run named ``attempt-<n>``).
- runner: the actor that runs one attempt; the ``Launcher`` starts, pauses and stops runners.
- allocation: what trainq handed out to a job in ``pending``/``running``/``pausing``.
- lost work: how far an attempt got beyond its last checkpoint when it stopped.

``Scheduler._transition`` is the only writer of job state: it checks the table, writes with
compare-and-set, keeps the in-memory queue and allocations in step, then notifies listeners.
Everything reaches the caller only after the store has committed it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from . import policy, workloads
from .config import join_path
from .errors import CheckpointRefused, DoesNotFit, IllegalTransition, InvalidSpec, JobNotFound
from .jobs import Attempt, Job, Report, Transition, iso, new_job_id, step_of
from .policy import Entry, QueueIndex, Resources
from .spec import JobSpec, parse_spec
from .states import ACTIVE, RESUMABLE, JobStatus, allowed
from .store import Store

S = JobStatus
Event = dict[str, Any]


class Launcher(Protocol):
    """Starts and stops runners; the Ray shell implements it, tests fake it."""

    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        """Start a runner for ``attempt`` (asynchronously; it reports back through events)."""

    def request_pause(self, job_id: str, attempt: int) -> None:
        """Ask the attempt's runner to stop right after its next checkpoint report."""

    def stop(self, job_id: str, attempt: int) -> None:
        """Stop the attempt now and free its resources; a runner already gone is fine."""


class Cluster(Protocol):
    """The cluster's size as Ray reports it."""

    def capacity(self) -> Resources:
        """Total resources now."""

    def max_capacity(self) -> Resources:
        """The most the cluster can grow to (equal to ``capacity`` without an autoscaler)."""

    def nodes(self) -> list[Resources]:
        """Per-node totals of the nodes the cluster can have (may be empty when unknown)."""

    def request(self, bundles: list[Resources]) -> None:
        """Ask the autoscaler for these bundles (no-op without one)."""


class Scheduler:
    """The job registry and queue. One instance lives inside the scheduler actor."""

    def __init__(self, store: Store, launcher: Launcher, cluster: Cluster, *, storage_root: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.launcher = launcher
        self.cluster = cluster
        self.storage_root = storage_root
        self.clock = clock
        self.listeners: list[Callable[[Event], None]] = []
        self.queue = QueueIndex()
        self.allocated: dict[str, Resources] = {}
        self.deadlines: dict[str, float] = {}
        self._requested: list[Resources] | None = None
        for job in self.store.jobs_in([S.QUEUED, *ACTIVE]):
            self._index(job)

    # -- the verbs ------------------------------------------------------------------------------
    def submit(self, data: Any) -> dict[str, Any]:
        """Validate a spec, store the job as ``queued`` and start whatever fits now."""
        spec = parse_spec(data)
        if spec.workload is not None:
            config = workloads.validate(spec.workload, spec.config, self.storage_root)
            spec = spec.model_copy(update={"config": config})
        self._check_fits(spec)
        _check_local_dirs(spec.runtime_env)
        now = self.clock()
        job = Job(job_id=new_job_id(), name=spec.display_name, spec=spec.model_dump(mode="json"),
                  priority=spec.priority, seq=0, created_at=now, updated_at=now)
        job = self.store.insert_job(job, Transition(job.job_id, None, S.QUEUED, now, "submitted", 0))
        self._index(job)
        self._notify_status(job, None, "submitted")
        self.schedule()
        return self.get(job.job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        """One job as a dict."""
        return self._public(self._job(job_id))

    def list(self, status: str | Iterable[str] | None = None, limit: int | None = None,
             offset: int = 0) -> list[dict[str, Any]]:
        """Jobs newest first, optionally filtered by status (one or several)."""
        statuses = _statuses(status)
        return [self._public(j) for j in self.store.list_jobs(statuses, limit, offset)]

    def count(self, status: str | Iterable[str] | None = None) -> int:
        """How many jobs (in ``status``) there are."""
        return self.store.count_jobs(_statuses(status))

    def queue_jobs(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """The queued jobs in the order they will start."""
        out = []
        for i, entry in enumerate(self.queue.page(limit, offset)):
            job = self.store.get_job(entry.job_id)
            if job is not None:
                out.append(job.to_dict(queue_position=offset + i + 1))
        return out

    def pause(self, job_id: str, deadline_s: float | None = None) -> dict[str, Any]:
        """Pause a job (DESIGN.md, "Pause and resume, precisely")."""
        if deadline_s is not None and (not math.isfinite(deadline_s) or deadline_s <= 0):
            raise InvalidSpec(f"deadline_s must be a positive number of seconds, got {deadline_s}",
                              field="deadline_s")
        job = self._job(job_id)
        previous = job.status
        if previous in (S.PAUSING, S.PAUSED):
            return self._pause_result(job, previous, f"job is already {previous.value}; nothing changed")
        now = self.clock()
        if previous is S.QUEUED:
            job = self._transition(job, S.PAUSED, "pause", "paused while queued", paused_at=now)
            message = "Job paused (was queued); it left the queue"
        elif previous is S.PENDING:
            # Persist first: if we crash before the stop, recovery stops the orphaned runner.
            job = self._transition(job, S.PAUSED, "pause", "paused while starting", paused_at=now)
            self.launcher.stop(job.job_id, job.attempt)
            self._end_attempt(job, "paused", now)
            message = "Job paused (was pending); its start was abandoned"
        elif previous is S.RUNNING:
            deadline_at = None if deadline_s is None else now + deadline_s
            job = self._transition(
                job, S.PAUSING, "pause",
                "pause requested" + (f" with a {deadline_s:g}s deadline" if deadline_s else ""),
                pause_requested_at=now, pause_deadline_at=deadline_at,
            )
            self.launcher.request_pause(job.job_id, job.attempt)
            message = "Job is pausing: it stops right after its next checkpoint report" + (
                f", or at the latest in {deadline_s:g}s" if deadline_s else "")
        else:
            raise IllegalTransition(job_id, previous.value, S.PAUSED.value, "pause")
        self.schedule()
        return self._pause_result(job, previous, message)

    def resume(self, job_id: str, checkpoint_path: str | None = None) -> dict[str, Any]:
        """Queue a paused, failed or cancelled job again, to start from a recorded checkpoint."""
        job = self._job(job_id)
        previous = job.status
        if previous not in RESUMABLE:
            raise IllegalTransition(job_id, previous.value, S.QUEUED.value, "resume")
        start_from = job.checkpoint_path
        if checkpoint_path is not None:
            start_from = self._recorded_checkpoint(job, checkpoint_path)
        job = self._transition(
            job, S.QUEUED, "resume", f"resumed from {start_from or 'the start (no checkpoint)'}",
            resume_from=start_from, paused_at=None, finished_at=None, error=None, warning=None,
            pause_requested_at=None, pause_deadline_at=None,
        )
        position = self.queue.position(job_id)
        result = {
            "success": True, "job_id": job_id, "previous_status": previous.value,
            "status": job.status.value, "checkpoint_path": start_from, "queue_position": position,
            "message": (f"Job resumed from checkpoint and queued at position {position}" if start_from
                        else f"Job has no checkpoint; it starts over, queued at position {position}"),
        }
        self.schedule()
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; a running one is stopped now and its resources are freed."""
        job = self._job(job_id)
        previous = job.status
        if previous is S.CANCELLED:
            return self._public(job)
        now = self.clock()
        job = self._transition(job, S.CANCELLED, "cancel", f"cancelled while {previous.value}",
                               finished_at=now)
        if previous in ACTIVE:
            self.launcher.stop(job.job_id, job.attempt)
            self._end_attempt(job, "cancelled", now)
        self.schedule()
        return self._public(job)

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the job recorded (path, metrics, time, attempt), newest first."""
        self._job(job_id)
        return [{**c, "at": iso(c["at"])} for c in self.store.checkpoints(job_id)]

    def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The job's metrics reports, oldest first."""
        self._job(job_id)
        return [r.to_dict() for r in self.store.reports(job_id, after_id=after_id, limit=limit)]

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        self._job(job_id)
        return {"transitions": [t.to_dict() for t in self.store.transitions(job_id)],
                "attempts": [a.to_dict() for a in self.store.attempts(job_id)]}

    # -- what runners report ------------------------------------------------------------------------
    def on_runner_event(self, event: Mapping[str, Any]) -> None:
        """Apply one event a runner sent: ``started``, ``report`` or ``exit``. Idempotent."""
        job = self.store.get_job(event["job_id"])
        if job is None:
            return
        kind, attempt = event["kind"], int(event["attempt"])
        if kind == "report":
            self._on_report(job, attempt, event)
        elif kind == "started":
            if job.attempt == attempt and job.status is S.PENDING:
                self._transition(job, S.RUNNING, "start", "workers started")
        elif kind == "exit":
            self._on_exit(job, attempt, event)
        else:
            raise ValueError(f"unknown runner event kind {kind!r}")

    def on_runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        """A runner is gone without saying how its attempt ended."""
        job = self.store.get_job(job_id)
        if job is None or job.attempt != attempt or job.status not in ACTIVE:
            return
        now = self.clock()
        if job.status is S.PENDING:
            self._transition(job, S.QUEUED, "requeue", f"runner gone before training started ({why}); requeued")
        elif job.status is S.PAUSING:
            job = self._transition(job, S.PAUSED, "pause", f"runner gone while pausing ({why});"
                                   " paused at the last recorded checkpoint", paused_at=now)
        else:
            job = self._transition(job, S.FAILED, "fail", f"runner gone: {why}",
                                   finished_at=now, error=f"RunnerLost: the runner of attempt {attempt} is gone ({why})")
        self._end_attempt(job, "lost", now)
        self.schedule()

    def recover(self, alive: set[tuple[str, int]]) -> None:
        """After a restart: keep live runners, settle jobs whose runner is gone, stop orphans."""
        active = {(j.job_id, j.attempt): j for j in self.store.jobs_in(ACTIVE)}
        for (job_id, attempt), job in active.items():
            if (job_id, attempt) not in alive:
                self.on_runner_lost(job_id, attempt, "not found after a scheduler restart")
            elif job.status is S.PAUSING:
                # The request may have been lost with the old actor; asking again is harmless.
                self.launcher.request_pause(job_id, attempt)
        for job_id, attempt in alive - set(active):
            self.launcher.stop(job_id, attempt)
        self.schedule()

    def tick(self) -> None:
        """Periodic work: enforce pause deadlines, then start what fits."""
        now = self.clock()
        for job_id, deadline in list(self.deadlines.items()):
            if deadline <= now:
                job = self._job(job_id)
                job = self._transition(job, S.PAUSED, "pause",
                                       "pause deadline passed; stopped at the last recorded checkpoint",
                                       paused_at=now)
                self.launcher.stop(job.job_id, job.attempt)
                self._end_attempt(job, "paused (deadline)", now)
        self.schedule()

    def schedule(self) -> list[str]:
        """Start every queued job that fits now, in policy order; returns their ids."""
        free = policy.subtract(self.cluster.capacity(), *self.allocated.values())
        started = []
        for entry in policy.admit(self.queue, free):
            job = self._job(entry.job_id)
            attempt_no = job.attempt + 1
            now = self.clock()
            job = self._transition(job, S.PENDING, "start", f"admitted as attempt {attempt_no}",
                                   attempt=attempt_no, started_at=now)
            attempt = Attempt(job.job_id, attempt_no, now, resumed_from=job.resume_from,
                              run_name=f"attempt-{attempt_no}")
            self.store.save_attempt(attempt)
            try:
                self.launcher.launch(job, attempt, self.job_root(job))
            except Exception as e:  # a launch that cannot even start fails the job, loudly
                self._transition(job, S.FAILED, "fail", "could not start a runner",
                                 finished_at=self.clock(), error=f"{type(e).__name__}: {e}")
                continue
            started.append(job.job_id)
        head = self.queue.head()
        wanted = None
        if head is not None and not policy.fits(head.demand, policy.subtract(
                self.cluster.capacity(), *self.allocated.values())):
            wanted = [dict(head.demand)]
        if wanted != self._requested:  # ask the autoscaler only when the ask changes
            self._requested = wanted
            self.cluster.request(wanted or [])
        return started

    def job_root(self, job: Job) -> str:
        """Where the job's runs and checkpoints live: ``<storage root>/<job_id>``."""
        root = job.spec.get("storage_path") or self.storage_root
        return join_path(root, job.job_id)

    # -- internals ------------------------------------------------------------------------------
    def _transition(self, job: Job, target: JobStatus, action: str, reason: str, **changes: Any) -> Job:
        """The only writer of job state: check the table, compare-and-set, index, notify."""
        if not allowed(job.status, target):
            raise IllegalTransition(job.job_id, job.status.value, target.value, action)
        at = self.clock()
        transition = Transition(job.job_id, job.status, target, at, reason, changes.get("attempt", job.attempt))
        updated = self.store.transition(job.job_id, job.status, transition, changes)
        if updated is None:
            current = self._job(job.job_id)
            raise IllegalTransition(job.job_id, current.status.value, target.value, action)
        self._index(updated)
        self._notify_status(updated, job.status, reason)
        return updated

    def _index(self, job: Job) -> None:
        """Keep the queue, allocations and deadlines in step with a job's stored state."""
        if job.status is S.QUEUED:
            self.queue.add(Entry(job.job_id, job.priority, job.seq, self._demand(job)))
        else:
            self.queue.remove(job.job_id)
        if job.status in ACTIVE:
            self.allocated[job.job_id] = self._demand(job)
        else:
            self.allocated.pop(job.job_id, None)
        if job.status is S.PAUSING and job.pause_deadline_at is not None:
            self.deadlines[job.job_id] = job.pause_deadline_at
        else:
            self.deadlines.pop(job.job_id, None)

    def _on_report(self, job: Job, attempt: int, event: Mapping[str, Any]) -> None:
        report = Report(job.job_id, attempt, int(event["seq"]), float(event["at"]),
                        dict(event.get("metrics") or {}), event.get("checkpoint_path"))
        if job.attempt != attempt or not self.store.record_report(report):
            return  # a stale attempt, or a resend of a report already recorded
        if job.status is S.PENDING:
            job = self._transition(job, S.RUNNING, "start", "first report received")
        self._verify_resume(job, report)
        event = {"type": "report", **report.to_dict()}
        event["report_seq"] = event.pop("seq")  # "seq" is the event log's own numbering
        for listener in self.listeners:
            listener(event)

    def _on_exit(self, job: Job, attempt: int, event: Mapping[str, Any]) -> None:
        outcome, at = event["outcome"], float(event.get("at") or self.clock())
        if job.attempt != attempt or job.status not in ACTIVE:
            # The scheduler already settled this attempt (cancel, deadline); keep its accounting.
            self._end_attempt(job, None, at, attempt=attempt)
            return
        if job.status is S.PENDING and outcome != "failed":
            # It trained, so it ran, even if its "started" word never arrived.
            job = self._transition(job, S.RUNNING, "start", "finished before its start was reported")
        if outcome == "paused" and job.status is S.PAUSING:
            job = self._transition(job, S.PAUSED, "pause", "stopped right after a checkpoint report",
                                   paused_at=at)
        elif outcome in ("completed", "paused"):
            # "paused" without a pause in progress cannot happen; a clean exit is a completion.
            final = event.get("checkpoint_path") or job.checkpoint_path
            job = self._transition(job, S.COMPLETED, "complete", "training finished",
                                   finished_at=at, checkpoint_path=final)
        else:
            job = self._transition(job, S.FAILED, "fail", "training failed", finished_at=at,
                                   error=event.get("error") or "the run failed without an error message")
        self._end_attempt(job, outcome, at)
        self.schedule()

    def _end_attempt(self, job: Job, outcome: str | None, at: float, attempt: int | None = None) -> None:
        """Record how an attempt ended and how much work it lost beyond its last checkpoint."""
        record = self.store.get_attempt(job.job_id, attempt or job.attempt)
        if record is None:
            return
        if record.outcome is None and outcome is not None:
            record.outcome = outcome
        if record.ended_at is None:
            record.ended_at = at
        record.lost_work = self._lost_work(record, at=record.ended_at)
        self.store.save_attempt(record)
        if record.attempt == job.attempt:
            self.store.update_job(job.job_id, {"lost_work": record.lost_work})

    def _lost_work(self, attempt: Attempt, at: float) -> dict[str, Any]:
        """Reports, seconds and (when reported) steps an attempt made beyond its last checkpoint."""
        reports = self.store.reports(attempt.job_id, attempt=attempt.attempt)
        last_ckpt = max((i for i, r in enumerate(reports) if r.checkpoint_path), default=None)
        if last_ckpt is not None:
            base_at, base_step = reports[last_ckpt].at, step_of(reports[last_ckpt].metrics)
            after = reports[last_ckpt + 1:]
            checkpoint = reports[last_ckpt].checkpoint_path
        else:
            base_at, checkpoint, after = attempt.started_at, attempt.resumed_from, reports
            resumed = self.store.find_checkpoint(attempt.job_id, checkpoint) if checkpoint else None
            base_step = step_of(resumed["metrics"]) if resumed else None
        last_step = step_of(after[-1].metrics) if after else None
        steps = None
        if last_step is not None:
            steps = last_step - base_step if base_step is not None else last_step + 1
        return {"reports": len(after), "seconds": round(max(0.0, at - base_at), 3), "steps": steps,
                "since_checkpoint": checkpoint}

    def _verify_resume(self, job: Job, report: Report) -> None:
        """Warn when a resumed attempt's first report shows it ignored its checkpoint."""
        if not job.resume_from or job.warning or report.seq != 1:
            return  # only the first report of a resumed attempt is checked (runners count from 1)
        recorded = self.store.find_checkpoint(job.job_id, job.resume_from)
        start_step = step_of(recorded["metrics"]) if recorded else None
        first_step = step_of(report.metrics)
        if start_step is not None and first_step is not None and first_step <= start_step:
            warning = (f"the train function seems to have ignored its checkpoint: it resumed from step"
                       f" {start_step} but its first report is step {first_step}")
            self.store.update_job(job.job_id, {"warning": warning})
            for listener in self.listeners:
                listener({"type": "warning", "job_id": job.job_id, "warning": warning})

    def _recorded_checkpoint(self, job: Job, path: str) -> str:
        root = self.job_root(job)
        candidate = path if "://" in path else os.path.normpath(path)
        if not _inside(candidate, root):
            raise CheckpointRefused(job.job_id, path, f"it is outside the job's storage {root}")
        if self.store.find_checkpoint(job.job_id, candidate) is None:
            raise CheckpointRefused(job.job_id, path, "this job never recorded that checkpoint"
                                    " (see its checkpoints list)")
        return candidate

    def _check_fits(self, spec: JobSpec) -> None:
        demand, worker = spec.demand(), spec.worker_resources()
        if policy.never_fits(demand, worker, self.cluster.max_capacity(), self.cluster.nodes()):
            raise DoesNotFit(demand, self.cluster.max_capacity())

    def _demand(self, job: Job) -> Resources:
        return JobSpec.model_validate(job.spec).demand()

    def _job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _public(self, job: Job) -> dict[str, Any]:
        return job.to_dict(queue_position=self.queue.position(job.job_id))

    def _pause_result(self, job: Job, previous: JobStatus, message: str) -> dict[str, Any]:
        return {"success": True, "job_id": job.job_id, "previous_status": previous.value,
                "status": job.status.value, "paused_at": iso(job.paused_at), "message": message}

    def _notify_status(self, job: Job, previous: JobStatus | None, reason: str) -> None:
        event = {"type": "status", "job_id": job.job_id, "status": job.status.value,
                 "previous_status": previous.value if previous else None, "reason": reason,
                 "attempt": job.attempt, "at": iso(job.updated_at)}
        for listener in self.listeners:
            listener(event)


def _check_local_dirs(runtime_env: Mapping[str, Any]) -> None:
    """A local working_dir/py_modules is uploaded from the scheduler's machine: it must exist there."""
    entries = [("runtime_env.working_dir", runtime_env.get("working_dir"))]
    entries += [(f"runtime_env.py_modules.{i}", p) for i, p in enumerate(runtime_env.get("py_modules") or [])]
    for field, path in entries:
        if isinstance(path, str) and "://" not in path and not os.path.exists(path):
            raise InvalidSpec(
                f"{field} {path!r} does not exist on the scheduler's machine; give a folder there"
                " (shared storage on a cluster) or a URI such as s3://..., gcs://... or https://....zip",
                field=field)


def _statuses(status: str | Iterable[str] | None) -> list[JobStatus] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    out = []
    for value in values:
        try:
            out.append(JobStatus(value))
        except ValueError:
            raise InvalidSpec(f"unknown status {value!r}; one of {[s.value for s in JobStatus]}",
                              field="status") from None
    return out


def _inside(path: str, root: str) -> bool:
    if "://" in root or "://" in path:
        return path.startswith(root.rstrip("/") + "/")
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)
