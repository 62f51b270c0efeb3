"""The scheduler core: decides and records, never touches Ray.

Glossary
- job: what a user submitted; keeps its ``job_id`` across pauses, failures and resumes.
- attempt: one run of a job (a runner actor and a Ray Train run named ``<name>-<job_id>-attempt-<n>``,
  readable in the Ray dashboard).
- runner: the actor that runs one attempt; the ``Launcher`` starts, pauses and stops runners.
- allocation: what trainq handed out to a job in ``pending``/``running``/``pausing``.
- lost work: how far an attempt got beyond its last checkpoint when it stopped.
- held: what an attempt holds from its launch until its runner has said it stopped (or is
  gone): a cancelled or preempted job's resources are not handed out again before that.
- pause intent: who asked a pause (a user, a preemption, a shutdown); it decides whether the
  job ends ``paused`` or goes back to the queue by itself.
- preemption: pausing lower-priority jobs right after a checkpoint so the head can start.
- requeue: an attempt ended by the infrastructure (a node, a worker, the runner) goes back to
  the queue from its last checkpoint, up to the job's ``max_retries``.
- owner: the user who submitted a job (users file); only they or an admin act on it.
- borrowing: an attempt beyond its owner's guaranteed resources; the first to be reclaimed.
- backfill: a job started behind a blocked head because it cannot delay it (docs/fairness.md).
- time slice: with ``time_slice_s``, a job that has run a slice makes way for equal-priority
  waiting jobs and is requeued behind them.

``Scheduler._transition`` is the only writer of job state: it checks the table, writes with
compare-and-set, keeps the in-memory queue and allocations in step, then notifies listeners.
Everything reaches the caller only after the store has committed it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from . import policy, security, wire, workloads
from .checkpoint_fs import CheckpointFS, StorageFS
from .config import Settings, join_path, packages_root, train_run_name
from .errors import (
    CheckpointMissing,
    CheckpointRefused,
    DoesNotFit,
    Forbidden,
    IdempotencyConflict,
    IllegalTransition,
    InvalidSpec,
    JobNotFound,
    MissingOnServer,
    NotCooperative,
    OverQuota,
    TrainqError,
)
from .jobs import Attempt, Job, Report, Transition, iso, new_job_id, step_of, total_steps_of
from .policy import (
    Entry,
    QueueIndex,
    Resources,
    admission,
    backfill,
    failure,
    fairshare,
    pending,
    preemption,
    quota,
    retention,
    timeslice,
)
from .policy.pausing import PausePlan, plan_pause
from .spec import JobSpec, parse_spec
from .states import ACTIVE, RESUMABLE, JobStatus, allowed
from .store import Request, Store
from .users import Users, load_users

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

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        """Ask the attempt's runner to have the loop checkpoint at its next step and go on."""


class Cluster(Protocol):
    """The cluster's size as Ray reports it."""

    def capacity(self) -> Resources:
        """Total resources now."""

    def max_capacity(self) -> Resources:
        """The most the cluster can grow to (equal to ``capacity`` without an autoscaler)."""

    def nodes(self) -> list[Resources]:
        """Per-node totals of the nodes the cluster can have (may be empty when unknown)."""

    def nodes_free(self) -> list[Resources] | None:
        """What each live node has free right now, or None when unknown (then totals decide)."""

    def request(self, bundles: list[Resources]) -> None:
        """Ask the autoscaler for these bundles (no-op without one)."""


class Scheduler:
    """The job registry and queue. One instance lives inside the scheduler actor."""

    def __init__(self, store: Store, launcher: Launcher, cluster: Cluster, *, storage_root: str,
                 clock: Callable[[], float] = time.time, settings: Settings | None = None,
                 checkpoint_fs: CheckpointFS | None = None, users: Users | None = None) -> None:
        self.store = store
        #: where checkpoints are checked, measured and deleted (retention, resume)
        self.checkpoint_fs: CheckpointFS = checkpoint_fs or StorageFS()
        self.launcher = launcher
        self.cluster = cluster
        self.storage_root = storage_root
        self.clock = clock
        self.settings = settings or Settings(storage_root=storage_root)
        self.listeners: list[Callable[[Event], None]] = []
        #: who may do what, quotas and fair-share weights; None: one user, no quotas (as before)
        self.users: Users | None = users
        if users is None and self.settings.users_file:
            self.users = load_users(self.settings.users_file)
        self._owners: dict[str, str] = {}  # queued and active job -> owner ("" when none)
        saved = store.get_meta(_LEDGER_KEY) or {}
        self.ledger = fairshare.UsageLedger.from_dict(saved, self.settings.fairshare_half_life_s)
        self._charged_at: float | None = None  # when running jobs were last charged to the ledger
        self._ledger_saved_at = 0.0
        #: backfilled ``preemptible`` jobs to pause before their head may start (lost on a restart:
        #: such a job then runs on, and only the head's start may be later than reserved)
        self._planned: dict[str, backfill.PlannedPause] = {}
        self._version = 0  # bumped on every change the queue view depends on
        self._view: tuple[tuple[int, int], _QueueView] | None = None
        self.queue = QueueIndex()
        #: (job_id, attempt) -> resources, from launch until its runner stopped or is gone
        self.held: dict[tuple[str, int], Resources] = {}
        self.deadlines: dict[str, float] = {}
        self.draining = False  # a shutdown is in progress: nothing new starts
        self._last_checkpoint: dict[str, tuple[int, float | None]] = {}  # job_id -> (attempt, at)
        self._requested: list[Resources] | None = None
        self._request: Request | None = None  # the key the verb in progress writes with its change
        self._request_job: str | None = None
        #: Read-mostly caches, so a scheduling pass or a page of a list reads no row per job:
        #: specs never change after submit; active jobs change only through ``_transition``/``_set``
        #: (reports write metrics, which the scheduling decisions do not read from here).
        self._specs: dict[str, JobSpec] = {}
        self._reach: tuple[Settings, list[str] | None, list[str], list[str]] | None = None
        self._live: dict[str, Job] = {}
        self._counts: dict[JobStatus, int] = dict(self.store.count_by_status())
        for job in self.store.jobs_in([S.QUEUED, *ACTIVE]):
            if job.status in ACTIVE:
                self._live[job.job_id] = job
                self.held[(job.job_id, job.attempt)] = self._demand(job)
            self._index(job)

    @property
    def allocated(self) -> list[Resources]:
        """What trainq has handed out (including attempts still releasing it)."""
        return list(self.held.values())

    # -- the verbs ------------------------------------------------------------------------------
    def submit(self, data: Any, idempotency_key: str | None = None, owner: str | None = None) -> dict[str, Any]:
        """Validate a spec, store the job as ``queued`` and start whatever fits now.

        With an ``idempotency_key``, the same key (and spec) returns the job it created the first
        time instead of a new one: a client, or Ray retrying the call after a restart, may resend.
        ``owner`` is the submitting user (the HTTP layer passes the token's; a Ray caller is
        trusted and may name anyone in the users file).
        """
        (answer,) = self.submit_many([(data, idempotency_key, owner)])
        if isinstance(answer, TrainqError):
            raise answer
        return self._public(answer)

    def submit_many(self, items: Sequence[tuple[Any, str | None, str | None]]) -> list[Job | TrainqError]:
        """``submit`` for several ``(spec, idempotency_key, owner)`` at once, with one commit.

        Each item is checked on its own and gets its own answer: its job (new, or the one its key
        made before), or the error that refused it. The new jobs are stored in one transaction
        (one fsync for all: the HTTP API's group commit), in the given order, and only then
        indexed, announced and scheduled (one pass). A key used twice in one call acts once.
        """
        answers: list[Job | TrainqError | int] = []
        new: list[_NewJob] = []
        keys: dict[str, tuple[int, str, str]] = {}  # this call's new keys: answer, fingerprint, job
        # What the batch's keys did before, in one query (the HTTP API gives every submit a key).
        known = self.store.find_requests([key for _, key, _ in items if isinstance(key, str)])
        for data, idempotency_key, owner in items:
            try:
                prepared = self._prepare_submit(data, idempotency_key, owner, keys, known)
            except TrainqError as e:
                answers.append(e)
                continue
            if isinstance(prepared, _NewJob):
                if prepared.request is not None:
                    keys[prepared.request.key] = (len(answers), prepared.request.fingerprint or "",
                                                  prepared.job.job_id)
                answers.append(prepared.job)
                new.append(prepared)
            else:
                answers.append(prepared)
        self.store.insert_jobs([(n.job, n.transition, n.request) for n in new])
        for n in new:
            self._specs[n.job.job_id] = n.spec  # what its stored spec validates to, already at hand
            self._counts[S.QUEUED] = self._counts.get(S.QUEUED, 0) + 1
            self._index(n.job)
            self._notify_status(n.job, None, "submitted")
        if new:
            self.schedule()
        # The jobs as they are now (scheduling may have started some), without their
        # pending_reason/eta (GET the job for them): working them out walks the whole queue, and a
        # submit must not cost more the longer the queue is.
        out: list[Job | TrainqError] = []
        for answer in answers:
            if isinstance(answer, int):  # the same key as an earlier item of this call
                answer = answers[answer]
            out.append(answer if isinstance(answer, TrainqError) else self._job(answer.job_id))
        return out

    def submit_json(self, items: Sequence[tuple[Any, str | None, str | None]]) -> list[bytes | TrainqError]:
        """``submit_many`` as the HTTP API sends it: each job as JSON bytes, or the error that refused it."""
        answers = self.submit_many(items)
        encoded = iter(self._encoded_many([a for a in answers if isinstance(a, Job)]))
        return [a if isinstance(a, TrainqError) else next(encoded) for a in answers]

    def _prepare_submit(self, data: Any, idempotency_key: str | None, owner: str | None,
                        keys: Mapping[str, tuple[int, str, str]],
                        known: Mapping[str, dict[str, Any]]) -> _NewJob | Job | int:
        """A submit checked, not yet stored (``_NewJob``), or what its key did before: a stored
        job, or the answer index of an earlier item of the same call (in ``keys``)."""
        key = _idempotency_key(idempotency_key)
        spec = parse_spec(data)
        self._check_owner(owner)
        dumped = spec.model_dump(mode="json")
        fingerprint = hashlib.sha256(_sorted_json(dumped if owner is None else {**dumped, "owner": owner})
                                     .encode()).hexdigest()
        if key is not None and key in keys:
            index, first, job_id = keys[key]
            if first != fingerprint:
                raise IdempotencyConflict(key, "submit", job_id, "with a different spec")
            return index
        if key is not None and (found := self._replay(key, "submit", None, fingerprint, known)) is not None:
            return self._job(found["job_id"])
        stored: dict[str, Any] | None = dumped  # the spec as stored: the dump, unless the workload changes it
        if spec.workload is not None:
            config = workloads.validate(spec.workload, spec.config, self.storage_root)
            spec, stored = spec.model_copy(update={"config": config}), None
        if "keep_checkpoints" not in spec.model_fields_set:
            # Resolved now and stored with the job: a later change of the setting never makes
            # trainq delete checkpoints of a job that was submitted under another rule.
            keep = self.settings.keep_checkpoints
            spec = spec.model_copy(update={"keep_checkpoints": keep})
            stored = None if stored is None else {**stored, "keep_checkpoints": keep}
        self._check_fits(spec)
        self._check_quota(spec, owner)
        self._check_reach(spec)
        now = self.clock()
        job = Job(job_id=new_job_id(), name=spec.display_name,
                  spec=spec.model_dump(mode="json") if stored is None else stored,
                  priority=spec.priority, seq=0, created_at=now, updated_at=now, owner=owner)
        request = Request(key, "submit", fingerprint) if key is not None else None
        return _NewJob(job, Transition(job.job_id, None, S.QUEUED, now, "submitted", 0), request, spec)

    def get(self, job_id: str) -> dict[str, Any]:
        """One job as a dict; a queued one with its ``pending_reason``, ``eta`` and ``eta_basis``."""
        return self._public_many(*self._one(job_id))[0]

    def get_json(self, job_id: str) -> bytes:
        """``get`` as the HTTP API sends it (JSON bytes; the job's unchanging fields encoded once)."""
        return self._encoded_many(*self._one(job_id))[0]

    def list(self, status: str | Iterable[str] | None = None, limit: int | None = None,
             offset: int = 0) -> list[dict[str, Any]]:
        """Jobs newest first, optionally filtered by status (one or several). Everyone sees every
        job (as ``squeue`` shows them); only acting on one is limited to its owner and admins."""
        return self._public_many(*self._listed(status, limit, offset))

    def page_json(self, status: str | Iterable[str] | None, limit: int, offset: int) -> bytes:
        """``{"jobs": list(...), "total": count(...), "limit", "offset"}`` as JSON bytes (the HTTP page)."""
        jobs = b",".join(self._encoded_many(*self._listed(status, limit, offset)))
        rest = wire.dumps_bytes({"total": self.count(status), "limit": limit, "offset": offset})
        return wire.merge(b'{"jobs":[' + jobs + b"]}", rest)

    def count(self, status: str | Iterable[str] | None = None) -> int:
        """How many jobs (in ``status``) there are (counted as they change, not by a scan)."""
        statuses = _statuses(status)
        return sum(n for s, n in self._counts.items() if statuses is None or s in statuses)

    def queue_jobs(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """The queued jobs in the order they will start (fair-share order with a users file), each
        with why it waits (``pending_reason``) and when it should start (``eta``, ``eta_basis``)."""
        return self._public_many(*self._queued(limit, offset))

    def queue_json(self, limit: int | None = None, offset: int = 0) -> bytes:
        """``queue_jobs`` as a JSON array (bytes)."""
        return b"[" + b",".join(self._encoded_many(*self._queued(limit, offset))) + b"]"

    def _one(self, job_id: str) -> tuple[list[Job], _QueueView | None]:
        job = self._job(job_id)
        return [job], self._queue_view() if job.status is S.QUEUED else None

    def _listed(self, status: str | Iterable[str] | None, limit: int | None,
                offset: int) -> tuple[list[Job], _QueueView | None]:
        jobs = self.store.list_jobs(_statuses(status), limit, offset)
        return jobs, self._queue_view() if any(j.status is S.QUEUED for j in jobs) else None

    def _queued(self, limit: int | None, offset: int) -> tuple[list[Job], _QueueView]:
        view = self._queue_view()
        end = None if limit is None else offset + limit
        page = view.order[offset:end]
        jobs = self.store.get_jobs([e.job_id for e in page])
        return [jobs[e.job_id] for e in page if e.job_id in jobs], view

    def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False,
              idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        """Pause a job; see ``_pause``. A repeated ``idempotency_key`` gets the first answer again."""
        self._authorize(job_id, as_user, "pause")
        return self._idempotent(idempotency_key, "pause", job_id, lambda: self._pause(job_id, deadline_s, no_deadline))

    def _pause(self, job_id: str, deadline_s: float | None, no_deadline: bool) -> dict[str, Any]:
        """Pause a job (DESIGN.md, "Pause and resume, precisely").

        A running job stops right after its next checkpoint report, or at ``deadline_s``; without
        one the deadline comes from its checkpoint cadence (``policy.pausing``), unless
        ``no_deadline`` says to wait for the checkpoint however long it takes (an explicit
        ``deadline_s`` given with it still applies).
        """
        if deadline_s is not None and (not math.isfinite(deadline_s) or deadline_s <= 0):
            raise InvalidSpec(f"deadline_s must be a positive number of seconds, got {deadline_s}",
                              field="deadline_s")
        job = self._job(job_id)
        previous = job.status
        if previous is S.PAUSING and job.pause_reason != failure.USER:
            # Being preempted (or drained): the user's pause wins, so it ends paused, not requeued.
            why = f"preempted by {job.preempted_by}" if job.pause_reason == failure.PREEMPT else job.pause_reason
            job = self._set(job, pause_reason=failure.USER)
            return self._pause_result(job, previous, f"job was already pausing ({why}); it will now stay"
                                      " paused when it stops, instead of going back to the queue")
        if previous in (S.PAUSING, S.PAUSED):
            return self._pause_result(job, previous, f"job is already {previous.value}; nothing changed")
        now = self.clock()
        if previous is S.QUEUED:
            job = self._transition(job, S.PAUSED, "pause", "paused while queued", paused_at=now,
                                   pause_reason=failure.USER)
            message = "Job paused (was queued); it left the queue"
        elif previous is S.PENDING:
            # Persist first: if we crash before the stop, recovery stops the orphaned runner.
            job = self._transition(job, S.PAUSED, "pause", "paused while starting", paused_at=now,
                                   pause_reason=failure.USER)
            self.launcher.stop(job.job_id, job.attempt)
            self._end_attempt(job, "paused", now)
            message = "Job paused (was pending); its start was abandoned"
        elif previous is S.RUNNING:
            # no_deadline turns off the *default* deadline; an explicit one still applies (HTTP
            # query parameters cannot say "not both", so the pair must mean something).
            plan = self._plan_pause(job, now, deadline_s=deadline_s, wait_forever=no_deadline and deadline_s is None)
            job = self._begin_pause(job, plan, failure.USER, "pause requested"
                                    + (f" with a {deadline_s:g}s deadline" if deadline_s else ""))
            message = f"Job is pausing: it stops right after its next checkpoint report ({plan.message})"
        else:
            raise IllegalTransition(job_id, previous.value, S.PAUSED.value, "pause")
        if job.resumable is False:
            message += ". " + NOT_RESUMABLE
        self.schedule()
        return self._pause_result(job, previous, message)

    def resume(self, job_id: str, checkpoint_path: str | None = None,
               idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        """Queue a paused, failed or cancelled job again, to start from a recorded checkpoint.

        A repeated ``idempotency_key`` gets the first answer again instead of a conflict.
        """
        self._authorize(job_id, as_user, "resume")
        return self._idempotent(idempotency_key, "resume", job_id, lambda: self._resume(job_id, checkpoint_path))

    def _resume(self, job_id: str, checkpoint_path: str | None) -> dict[str, Any]:
        job = self._job(job_id)
        previous = job.status
        if previous not in RESUMABLE:
            raise IllegalTransition(job_id, previous.value, S.QUEUED.value, "resume")
        start_from = job.checkpoint_path
        if checkpoint_path is not None:
            start_from = self._recorded_checkpoint(job, checkpoint_path)
        start_from, fallback = self._existing_start(job, start_from, named=checkpoint_path is not None)
        warning = NOT_RESUMABLE if job.resumable is False else None
        job = self._requeue(job, "resume", f"resumed from {start_from or 'the start (no checkpoint)'}",
                            start_from, warning=warning)
        position = self._position(job_id)
        message = (f"Job resumed from checkpoint and queued at position {position}" if start_from
                   else f"Job has no checkpoint; it starts over, queued at position {position}")
        if fallback:
            message += ". " + fallback
        if warning:
            message += ". " + warning
        result = {
            "success": True, "job_id": job_id, "previous_status": previous.value,
            "status": job.status.value, "checkpoint_path": start_from, "queue_position": position,
            "message": message,
        }
        self.schedule()
        return result

    def cancel(self, job_id: str, idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        """Cancel a job; a running one is stopped now (its resources free once it has stopped)."""
        self._authorize(job_id, as_user, "cancel")
        return self._idempotent(idempotency_key, "cancel", job_id, lambda: self._cancel(job_id))

    def _cancel(self, job_id: str) -> dict[str, Any]:
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

    def set_priority(self, job_id: str, priority: Any, as_user: str | None = None) -> dict[str, Any]:
        """Change a job's priority; its queue position changes at once and a raise may preempt."""
        self._authorize(job_id, as_user, "reprioritize")
        if isinstance(priority, bool) or not isinstance(priority, int) or not -1_000_000 <= priority <= 1_000_000:
            raise InvalidSpec(f"priority must be an integer from -1000000 to 1000000, got {priority!r}",
                              field="priority")
        job = self._job(job_id)
        if job.status is S.COMPLETED:
            raise IllegalTransition(job_id, job.status.value, job.status.value, "reprioritize",
                                    "a completed job never runs again")
        if job.priority != priority:
            previous = job.priority
            job = self._set(job, priority=priority)
            self._notify({"type": "priority", "job_id": job_id, "priority": priority,
                          "previous_priority": previous, "at": iso(self.clock())})
            self.schedule()
        return self._public(self._job(job_id))

    def checkpoint(self, job_id: str, as_user: str | None = None) -> dict[str, Any]:
        """Have a running job save a checkpoint at its next step and go on (checkpoint-now)."""
        job = self._authorize(job_id, as_user, "checkpoint")
        if job.status is not S.RUNNING:
            raise IllegalTransition(job_id, job.status.value, job.status.value, "checkpoint",
                                    "only a running job can save a checkpoint on request")
        if not job.cooperative:
            raise NotCooperative(job_id, "its train function has not called scheduler.train.should_checkpoint()"
                                 " (or pause_requested()) in this job, so it cannot save on request; it"
                                 " checkpoints only on its own schedule")
        now = self.clock()
        if job.checkpoint_requested_at is None:
            job = self._set(job, checkpoint_requested_at=now)
            self.launcher.request_checkpoint(job_id, job.attempt)
        return {"success": True, "job_id": job_id, "status": job.status.value,
                "requested_at": iso(job.checkpoint_requested_at), "checkpoint_path": job.checkpoint_path,
                "message": "checkpoint requested: the loop saves it at its next step and goes on; it is"
                           " recorded when reported (a 'checkpoint' event; the job's checkpoint_requested_at"
                           " clears)"}

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the job recorded (path, metrics, time, attempt), newest first, each
        with its retention ``state`` (``kept``, ``pinned``, ``deleted``) and ``bytes`` on storage."""
        self._job(job_id)
        return [self._checkpoint_public(c) for c in self.store.checkpoints(job_id)]

    def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True,
                       as_user: str | None = None) -> dict[str, Any]:
        """Pin a recorded checkpoint (kept whatever the retention rule says) or unpin it.

        Unpinning applies the rule at once, so an old checkpoint may be deleted right away.
        """
        job = self._authorize(job_id, as_user, "pin" if pinned else "unpin")
        candidate = self._recorded_checkpoint(job, path)
        record = self.store.find_checkpoint(job_id, candidate)
        assert record is not None  # _recorded_checkpoint checked it
        if pinned and record["deleted_at"] is not None:
            raise CheckpointRefused(job_id, path, f"it was deleted at {iso(record['deleted_at'])} under the"
                                    " job's keep_checkpoints rule; only a checkpoint that still exists can be pinned")
        if record["pinned"] != pinned:
            self.store.update_checkpoint(job_id, candidate, {"pinned": pinned})
            self._notify({"type": "checkpoint_pin", "job_id": job_id, "checkpoint_path": candidate,
                          "pinned": pinned, "at": iso(self.clock())})
        if not pinned:
            self._apply_retention(job_id)
        found = self.store.find_checkpoint(job_id, candidate)
        assert found is not None
        return self._checkpoint_public(found)

    def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The job's metrics reports, oldest first."""
        self._job(job_id)
        return [r.to_dict() for r in self.store.reports(job_id, after_id=after_id, limit=limit)]

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        self._job(job_id)
        return {"transitions": [t.to_dict() for t in self.store.transitions(job_id)],
                "attempts": [a.to_dict() for a in self.store.attempts(job_id)]}

    def drain(self, grace_s: float) -> list[str]:
        """A shutdown: stop starting jobs and pause every active one, to resume at the next start.

        Running jobs pause right after their next checkpoint (at once with the cooperative hook),
        within their derived deadline and ``grace_s``; a pending start is abandoned. Returns the
        jobs still holding resources (what the caller waits for).
        """
        self.draining = True
        now = self.clock()
        for job in self.store.jobs_in(ACTIVE):
            if job.status is S.RUNNING:
                plan = self._plan_pause(job, now, cap_s=grace_s)
                self._begin_pause(job, plan, failure.SHUTDOWN, "trainq is shutting down")
            elif job.status is S.PAUSING:
                deadline = min(job.pause_deadline_at or now + grace_s, now + grace_s)
                job = self._set(job, pause_deadline_at=deadline,
                                pause_reason=failure.SHUTDOWN if job.pause_reason != failure.USER else job.pause_reason)
            elif job.status is S.PENDING:
                job = self._transition(job, S.PAUSED, "pause", "trainq is shutting down; start abandoned",
                                       paused_at=now, pause_reason=failure.SHUTDOWN)
                self.launcher.stop(job.job_id, job.attempt)
                self._end_attempt(job, "paused (shutdown)", now)
        return sorted({job_id for job_id, _ in self.held})

    # -- what runners report ------------------------------------------------------------------------
    def on_runner_event(self, event: Mapping[str, Any]) -> None:
        """Apply one event a runner sent: ``started``, ``hook``, ``report`` or ``exit``. Idempotent."""
        job = self.store.get_job(event["job_id"])
        if job is None:
            return
        kind, attempt = event["kind"], int(event["attempt"])
        if kind == "report":
            self._on_report(job, attempt, event)
        elif kind == "started":
            if job.attempt == attempt and job.status is S.PENDING:
                self._transition(job, S.RUNNING, "start", "workers started")
        elif kind == "hook":
            if not job.cooperative:
                self._set(job, cooperative=True)
        elif kind == "exit":
            self._on_exit(job, attempt, event)
        else:
            raise ValueError(f"unknown runner event kind {kind!r}")

    def on_launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        """No runner could be started for the attempt (e.g. its working_dir failed to upload)."""
        self._launch_failed(job_id, attempt, error)
        self.schedule()

    def _launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        self._release(job_id, attempt)
        job = self.store.get_job(job_id)
        if job is not None and job.attempt == attempt and job.status in ACTIVE:
            job = self._transition(job, S.FAILED, "fail", "could not start a runner",
                                   finished_at=self.clock(), error=error)
            self._end_attempt(job, "failed", self.clock())

    def on_runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        """A runner is gone without saying how its attempt ended (and its run with it)."""
        self._release(job_id, attempt)
        job = self.store.get_job(job_id)
        if job is None or job.attempt != attempt or job.status not in ACTIVE:
            self.schedule()
            return
        now = self.clock()
        if job.status is S.PENDING:
            job = self._requeue(job, "requeue", f"runner gone before training started ({why}); requeued",
                                job.resume_from)
        else:
            decision = failure.on_runner_lost(job.status.value, job.pause_reason, why, job.retries,
                                              self._spec(job).max_retries, self.settings.retry_backoff_s)
            job = self._settle(job, decision, now,
                               error=f"RunnerLost: the runner of attempt {attempt} is gone ({why})")
        self._end_attempt(job, "lost", now, attempt=attempt)
        self.schedule()

    def recover(self, alive: set[tuple[str, int]]) -> None:
        """After a restart: keep live runners, settle jobs whose runner is gone, stop orphans.

        Jobs paused by a shutdown go back to the queue: trainq is running again.
        """
        active = {(j.job_id, j.attempt): j for j in self.store.jobs_in(ACTIVE)}
        for (job_id, attempt), job in active.items():
            if (job_id, attempt) not in alive:
                self.on_runner_lost(job_id, attempt, "not found after a scheduler restart")
            elif job.status is S.PAUSING:
                # The request may have been lost with the old actor; asking again is harmless.
                self.launcher.request_pause(job_id, attempt)
        for job_id, attempt in alive - set(active):
            job = self.store.get_job(job_id)
            if job is not None:
                self.held[(job_id, attempt)] = self._demand(job)  # released when its runner ends
            self.launcher.stop(job_id, attempt)
        for job in self.store.jobs_in([S.PAUSED]):
            if job.pause_reason == failure.SHUTDOWN:
                self._requeue(job, "requeue", "trainq started again after a shutdown; requeued",
                              job.checkpoint_path)
        self.schedule()

    def reconcile(self, alive: set[tuple[str, int]], watched: set[tuple[str, int]]) -> list[str]:
        """Compare the runners alive now with the store and settle whatever drifted apart.

        ``alive``: attempts whose runner actor exists (a snapshot); ``watched``: attempts whose
        runner the shell is launching or watching (their end reaches the core anyway). An active
        attempt in neither lost its runner without a word (an event dropped, a watcher gone); a
        live runner of no active attempt is an orphan; resources held for an attempt that is
        neither active nor alive were never released. Returns what it did, in words.
        """
        done = []
        active = {(j.job_id, j.attempt): j for j in self.store.jobs_in(ACTIVE)}
        for key in sorted(set(active) - alive - watched):
            done.append(f"{key[0]} attempt {key[1]}: {active[key].status.value} with no runner; settled")
            self.on_runner_lost(*key, "reconciliation found no runner for this attempt")
        for key in sorted(alive - set(active) - watched):
            done.append(f"{key[0]} attempt {key[1]}: a runner of no active attempt; stopped")
            self.launcher.stop(*key)
        for key in sorted(set(self.held) - set(active) - alive - watched):
            done.append(f"{key[0]} attempt {key[1]}: resources held by no runner; released")
            self._release(*key)
        if done:
            self.schedule()
        return done

    def tick(self) -> None:
        """Periodic work: pause deadlines, time limits, start timeouts, usage; then start what fits."""
        now = self.clock()
        self._charge_usage(now)
        self._enforce_time_limits(now)
        for job_id, deadline in list(self.deadlines.items()):
            if deadline <= now:
                job = self._job(job_id)
                decision = failure.after_pause(job.pause_reason, "pause deadline passed; stopped at the"
                                               " last recorded checkpoint")
                job = self._settle(job, decision, now)
                self.launcher.stop(job.job_id, job.attempt)
                self._end_attempt(job, "paused (deadline)", now)
        limit = self.settings.start_timeout_s
        for job_id, attempt in list(self.held):
            job = self.store.get_job(job_id)
            if job is not None and job.attempt == attempt and job.status is S.PENDING and job.started_at is not None \
                    and now - job.started_at > limit:
                job = self._requeue(job, "requeue", f"its workers could not be placed within {limit:g}s"
                                    " (start timeout); back in the queue", job.resume_from)
                self.launcher.stop(job.job_id, job.attempt)
                self._end_attempt(job, "start timeout", now)
        self.schedule()

    def schedule(self) -> list[str]:
        """One scheduling pass (docs/fairness.md, "The order of one scheduling pass").

        Admit in fair order within quotas; make room for a blocked head (other users' borrowing
        jobs first, then lower priorities); backfill around it what cannot delay it; rotate out
        jobs whose time slice is over. Returns the jobs started.
        """
        if self.draining:
            return []
        now = self.clock()
        capacity = self.cluster.capacity()
        free = policy.subtract(capacity, *self.allocated)
        used = self._used_by_user()
        quotas = self._quotas()
        adm = admission.admit_with_quotas(self._order(now, capacity), free, now, owners=self._owners, used=used,
                                          quotas=quotas, nodes_free=self._nodes_free())
        started = [job_id for a in adm.start if (job_id := self._start(a.job_id, now, a.borrowing)) is not None]
        free = policy.subtract(capacity, *self.allocated)
        head = adm.head if adm.head is not None and adm.head.job_id in self.queue else None
        self._pause_planned(now)
        if head is not None and not policy.fits(head.demand, free):
            if not self._reclaim_for(head, free, capacity, now) and self._may_preempt():
                self._preempt_for_queue(free, capacity, now)
            if self.settings.backfill:
                started += self._backfill(head, capacity, now, quotas, set(adm.held))
            free = policy.subtract(capacity, *self.allocated)
        if self.settings.time_slice_s > 0:
            self._rotate(free, capacity, now)
        head = head if head is not None and head.job_id in self.queue else None
        wanted = [dict(head.demand)] if head is not None and not policy.fits(head.demand, free) else None
        if wanted != self._requested:  # ask the autoscaler only when the ask changes
            self._requested = wanted
            self.cluster.request(wanted or [])
        return started

    def _start(self, job_id: str, now: float, borrowing: bool = False, how: str | None = None) -> str | None:
        """queued -> pending: a new attempt, launched; None when the launch failed at once."""
        job = self._job(job_id)
        attempt_no = job.attempt + 1
        reason = f"admitted as attempt {attempt_no}" + (f" (backfill: {how})" if how else "") \
            + (" borrowing idle capacity beyond its owner's guarantee" if borrowing else "")
        job = self._transition(job, S.PENDING, "start", reason, attempt=attempt_no, started_at=now,
                               not_before=None, borrowing=borrowing, backfill=how)
        attempt = Attempt(job.job_id, attempt_no, now, resumed_from=job.resume_from,
                          run_name=train_run_name(job.name, job.job_id, attempt_no))
        self.store.save_attempt(attempt)
        try:
            self.launcher.launch(job, attempt, self.job_root(job))
        except Exception as e:  # noqa: BLE001 - a launch that cannot even start fails the job, loudly
            self._launch_failed(job.job_id, attempt_no, f"{type(e).__name__}: {e}")
            return None
        return job.job_id

    # -- users, quotas, fair share --------------------------------------------------------------------
    def _order(self, now: float, capacity: Resources) -> Iterable[Entry]:
        """The queue in admission order: fair order within a priority with a users file, else the
        plain order, lazily (a pass then reads only the jobs it starts)."""
        if self.users is None:
            return self.queue.in_order()
        # Lazy all the way: a pass that starts k jobs pays for k of them (plus one grouping walk).
        return fairshare.fair_iter(list(self.queue.in_order()), self._owners, self.ledger.snapshot(now),
                                   _PerUser(self.users.weight), self._share_base(capacity),
                                   expected_s=_PerUser(self._time_limit_or_none))

    def _time_limit_or_none(self, job_id: str) -> float | None:
        return self._spec_of(job_id).time_limit_s

    def _share_base(self, capacity: Resources) -> Resources:
        """What shares of the cluster are measured against: its size, or its largest size when an
        autoscaler has shrunk it (a cluster scaled to zero still compares GPUs with CPUs)."""
        most = self.cluster.max_capacity()
        return {k: max(capacity.get(k, 0.0), most.get(k, 0.0)) for k in set(capacity) | set(most)}

    def _quotas(self) -> Mapping[str, quota.Quota]:
        """Every owner's quota (a user missing from it is unlimited: so with no users file, all)."""
        return {} if self.users is None else _PerUser(self.users.quota)

    def _used_by_user(self) -> dict[str, Resources]:
        """What each owner's attempts hold now (attempts still releasing included)."""
        return quota.usage_by_user((self._owners.get(job_id, ""), demand) for (job_id, _), demand in self.held.items())

    def _check_owner(self, owner: str | None) -> None:
        if owner is None or self.users is None:
            return
        if self.users.get(owner) is None:
            raise InvalidSpec(f"unknown user {owner!r}: owner must be a user of the users file", field="owner")

    def _check_quota(self, spec: JobSpec, owner: str | None) -> None:
        """Refuse a job its owner's max can never hold, with the numbers."""
        if self.users is None:
            return
        why = quota.never_fits_quota(spec.demand(), self.users.quota(owner or ""), owner or "")
        if why is not None:
            raise OverQuota(why, field="num_workers", owner=owner)

    def _authorize(self, job_id: str, as_user: str | None, action: str) -> Job:
        """The job, if ``as_user`` may act on it: its owner or an admin. ``as_user`` None is a
        trusted caller (through Ray, or no users file)."""
        job = self._job(job_id)
        if as_user is None or self.users is None:
            return job
        user = self.users.get(as_user)
        if user is None:
            raise Forbidden(f"unknown user {as_user!r} may not {action} jobs", user=as_user, action=action,
                            job_id=job_id)
        if not user.is_admin and job.owner != user.name:
            raise Forbidden(f"user {user.name!r} may not {action} job {job_id!r}: it belongs to"
                            f" {job.owner or 'no user'!r}; only its owner or an admin may", user=user.name,
                            owner=job.owner, action=action, job_id=job_id)
        return job

    def _reclaim_for(self, head: Entry, free: Resources, capacity: Resources, now: float) -> bool:
        """With quotas: pause other users' borrowing jobs for a head within its owner's guarantee.

        True when room is being made for it (victims chosen now or already stopping)."""
        if self.users is None:
            return False
        user = self._owners.get(head.job_id, "")
        borrowing = {j.job_id: self._owners.get(j.job_id, "") for j in self._live.values()
                     if j.borrowing and j.status in (S.PENDING, S.RUNNING, S.PAUSING)}
        if not any(owner != user for owner in borrowing.values()):
            return False
        mine = self._used_by_user().get(user, {})
        decision = quota.reclaim_victims(head.job_id, head.priority, head.demand, user, mine, self.users.quota(user),
                                         self._holders(now), borrowing, free, capacity, now)
        if decision is None:
            return False
        for victim_id in decision.victims:
            why = ("reclaimed" if victim_id in borrowing and borrowing[victim_id] != user else "preempted")
            self._preempt(victim_id, head, now, decision.lost_work_s.get(victim_id), reclaim=why == "reclaimed")
        return True

    # -- backfill and time slicing --------------------------------------------------------------------
    def _backfill(self, head: Entry, capacity: Resources, now: float, quotas: Mapping[str, quota.Quota],
                  held: set[str]) -> list[str]:
        """Start jobs behind the blocked head that cannot delay it (policy.backfill)."""
        free = policy.subtract(capacity, *self.allocated)
        if not any(amount > 1e-9 for amount in free.values()):
            return []  # nothing is free: nothing can start now (the common case of a full cluster)
        holders = self._releases(now)
        reservation = backfill.reserve(head.job_id, head.demand, free, holders, now)
        if reservation.earliest_at is None or (reservation.earliest_at <= now and not reservation.spare):
            return []  # the head might start any moment (a running job's end is unknown): nothing may go first
        order = itertools.islice(self._order(now, capacity), _BACKFILL_DEPTH)
        rest = [e for e in order if e.job_id not in held]
        at = next((i for i, e in enumerate(rest) if e.job_id == head.job_id), None)
        if at is None or at + 1 >= len(rest):
            return []
        rest = rest[at:]  # jobs ahead of the head are in their backoff: not ready, they keep their place
        run_s = {e.job_id: t for e in rest if (t := self._spec_of(e.job_id).time_limit_s) is not None}
        # A preemption's pause is stopped at its grace at the latest, so that bounds the pause.
        pause_s = self.settings.preempt_grace_s + _STOP_MARGIN_S
        preemptible = {e.job_id: pause_s for e in rest if self._spec_of(e.job_id).preemptible}
        plan = backfill.plan_backfill(rest, free, holders, now, run_s=run_s, preemptible=preemptible)
        used = self._used_by_user()
        nodes = self._nodes_free()
        started = []
        for b in plan.start:
            entry = next(e for e in rest if e.job_id == b.job_id)
            user = self._owners.get(b.job_id, "")
            q = quotas.get(user)
            verdict = quota.check(entry.demand, used.get(user, {}), q) if q is not None else None
            if verdict is not None and verdict.status == quota.OVER_MAX:
                continue
            if nodes is not None and entry.worker:
                placed = policy.place_gang(entry.worker, entry.num_workers, nodes)
                if placed is None:
                    continue
                policy.placement.take(nodes, entry.worker, placed)
            if self._start(b.job_id, now, verdict is not None and verdict.status == quota.BORROWING, b.why):
                started.append(b.job_id)
                if b.why == backfill.PREEMPTIBLE and b.preempt_at is not None:
                    self._planned[b.job_id] = backfill.PlannedPause(b.job_id, head.job_id, b.preempt_at)
                mine = used.setdefault(user, {})
                for name, amount in entry.demand.items():
                    mine[name] = mine.get(name, 0.0) + amount
        return started

    def _pause_planned(self, now: float) -> None:
        """Pause the ``preemptible`` backfills whose time has come (their head still waits), at a
        checkpoint and within the preemption grace; forget the plans whose head has gone."""
        if not self._planned:
            return
        due = backfill.due_preemptions(list(self._planned.values()), self.queue, now)
        for job_id in due.dropped:
            self._planned.pop(job_id, None)
        for job_id in due.due:
            job = self._live.get(job_id)
            if job is None or job.status in (S.PAUSING,):
                self._planned.pop(job_id, None)
                continue
            if job.status is not S.RUNNING:
                continue  # still starting: paused once it runs (its pause time counts from then)
            planned = self._planned.pop(job_id)
            plan = self._plan_pause(job, now, cap_s=self.settings.preempt_grace_s)
            self._begin_pause(job, plan, failure.PREEMPT, f"preempted by {planned.head}: it was backfilled on the"
                              f" condition that it makes way before {planned.head} may start; pausing at its next"
                              f" checkpoint ({plan.message})", preempted_by=planned.head,
                              preemptions=job.preemptions + 1)
            self._notify({"type": "preemption", "job_id": job_id, "preempted_by": planned.head, "backfill": True,
                          "at": iso(now)})

    def _releases(self, now: float) -> list[backfill.Holder]:
        """Every attempt holding resources, with when it is expected to release them."""
        return [backfill.Holder(r.job_id, r.demand, r.end_at, backfilled=spare)
                for r, spare in self._running_ends(now)]

    def _running_ends(self, now: float, by_rate: bool = False) -> list[tuple[pending.RunningEnd, bool]]:
        """Every attempt holding resources: its expected release (and what that rests on), and
        whether it started as ``spare`` backfill. ``by_rate``: also from its steps to go at its
        recent step rate (for ETAs; backfill counts on time limits only, which are promises)."""
        out = []
        for (job_id, attempt), demand in self.held.items():
            job = self._live.get(job_id)
            end = pending.EndEstimate(None, "releasing")
            if job is not None and job.attempt == attempt:
                if job.status is S.PAUSING:
                    end = pending.EndEstimate(job.expected_paused_by, "pausing at its next checkpoint")
                elif job_id in self._planned:
                    at = self._planned[job_id].at + self.settings.preempt_grace_s + _STOP_MARGIN_S
                    end = pending.EndEstimate(at, "backfilled: paused before the head it runs beside")
                else:
                    end = self._end_estimate(job, now, by_rate and job.status is S.RUNNING)
            out.append((pending.RunningEnd(job_id, demand, end.end_at, end.basis),
                        job is not None and job.backfill == "spare"))
        return out

    def _end_estimate(self, job: Job, now: float, by_rate: bool = False) -> pending.EndEstimate:
        spec = self._spec(job)
        total = total_steps_of(spec.config) if by_rate else None
        step = rate = None
        if total is not None:
            recent = [(r.at, s) for r in self.store.last_reports(job.job_id, job.attempt, 20)
                      if (s := step_of(r.metrics)) is not None]
            rate = pending.step_rate(recent)
            step = recent[-1][1] if recent else None
        return pending.estimate_end(now, self._attempt_started(job), time_limit_s=spec.time_limit_s,
                                    total_steps=total, step=step, rate=rate)

    def _rotate(self, free: Resources, capacity: Resources, now: float) -> None:
        """Time slicing: pause (at a checkpoint) running jobs whose slice is over, for waiting ones."""
        waiting = [e for e in itertools.islice(self.queue.in_order(), _BACKFILL_DEPTH) if policy.ready(e, now)]
        if not waiting:
            return
        running = []
        for job in self._live.values():
            if job.status is S.RUNNING:
                spec = self._spec(job)
                running.append(timeslice.Sliced(job.job_id, job.priority, self._demand(job), self._attempt_started(job),
                                                self._attained(job.job_id, capacity, now), spec.preemptible))
        attained = {e.job_id: self._attained(e.job_id, capacity, now) for e in waiting}
        for rotation in timeslice.rotate_out(waiting, attained, running, free, now, self.settings.time_slice_s):
            job = self._job(rotation.job_id)
            plan = self._plan_pause(job, now, cap_s=self.settings.preempt_grace_s)
            for_job = rotation.for_jobs[0] if rotation.for_jobs else None
            self._begin_pause(job, plan, failure.ROTATE, f"time slice of {self.settings.time_slice_s:g}s over;"
                              f" making way for {for_job}; pausing at its next checkpoint ({plan.message})",
                              preempted_by=for_job, preemptions=job.preemptions + 1)
            self._notify({"type": "preemption", "job_id": job.job_id, "preempted_by": for_job,
                          "time_slice": True, "at": iso(now)})

    def _attained(self, job_id: str, capacity: Resources, now: float) -> float:
        """Service a job has had over all its attempts: dominant share × seconds."""
        spec = self._spec_of(job_id)
        seconds = sum(max(0.0, (a.ended_at or now) - a.started_at) for a in self.store.attempts(job_id))
        return fairshare.resource_seconds(spec.demand(), seconds, capacity)

    # -- time limits and usage ---------------------------------------------------------------------------
    def _enforce_time_limits(self, now: float) -> None:
        """Stop an attempt that has run its ``time_limit_s``: the job fails with a time-limit error."""
        for job in list(self._live.values()):
            limit = self._spec(job).time_limit_s
            if limit is None or job.status not in (S.PENDING, S.RUNNING) or job.started_at is None \
                    or now - job.started_at < limit:
                continue
            job = self._transition(job, S.FAILED, "fail", f"time limit of {limit:g}s reached; stopped",
                                   finished_at=now, error=f"TimeLimit: attempt {job.attempt} ran for its time limit"
                                   f" of {limit:g} s (time_limit_s) and was stopped; resume it to go on from its"
                                   " last checkpoint")
            self.launcher.stop(job.job_id, job.attempt)
            self._end_attempt(job, "time limit", now)

    def _charge_usage(self, now: float) -> None:
        """Charge what each owner's attempts held since the last tick to the fair-share ledger."""
        since, self._charged_at = self._charged_at, now
        if since is None or now <= since:
            return
        capacity = self._share_base(self.cluster.capacity())
        for (job_id, _), demand in self.held.items():
            self.ledger.charge(self._owners.get(job_id, ""), demand, now - since, now, capacity)
        if now - self._ledger_saved_at >= _LEDGER_SAVE_S:
            self._ledger_saved_at = now
            self.store.set_meta(_LEDGER_KEY, self.ledger.to_dict())

    def usage(self, by: str = "user", since: float | None = None) -> dict[str, Any]:
        """Resource use per user or per job since ``since`` (epoch seconds; None: all time).

        Each row: ``resource_seconds`` per resource, ``gpu_hours``, ``cpu_hours``, ``lost_work_s``
        (work redone after pauses and failures), ``preemptions`` and ``attempts``; per user also
        ``jobs`` and ``fair_share_usage`` (the decayed usage fair share orders by).
        """
        if by not in ("user", "job"):
            raise InvalidSpec(f"by must be 'user' or 'job', got {by!r}", field="by")
        if since is not None and (not math.isfinite(since)):
            raise InvalidSpec("since must be a time", field="since")
        now = self.clock()
        attempts = self.store.attempts_since(since)
        jobs = self.store.get_jobs(sorted({a.job_id for a in attempts}))
        rows: dict[str, dict[str, Any]] = {}
        for a in attempts:
            job = jobs.get(a.job_id)
            if job is None:
                continue
            owner = job.owner or ""
            key = owner if by == "user" else a.job_id
            row = rows.setdefault(key, _usage_row(by, key, job))
            seconds = max(0.0, (a.ended_at if a.ended_at is not None else now) - max(a.started_at, since or 0.0))
            for name, amount in self._spec(job).demand().items():
                row["resource_seconds"][name] = row["resource_seconds"].get(name, 0.0) + amount * seconds
            row["lost_work_s"] += float((a.lost_work or {}).get("seconds") or 0.0)
            row["attempts"] += 1
            if a.job_id not in row["_jobs"]:
                row["_jobs"].add(a.job_id)
                row["preemptions"] += job.preemptions
        out = []
        for key, row in sorted(rows.items()):
            rs = row["resource_seconds"]
            row["resource_seconds"] = {k: round(v, 3) for k, v in sorted(rs.items())}
            row["gpu_hours"], row["cpu_hours"] = round(rs.get("GPU", 0.0) / 3600, 6), round(rs.get("CPU", 0.0) / 3600, 6)
            row["lost_work_s"] = round(row["lost_work_s"], 3)
            n = len(row.pop("_jobs"))
            if by == "user":
                row["jobs"] = n
                row["fair_share_usage"] = round(self.ledger.of(key, now), 6)
            out.append(row)
        return {"by": by, "since": iso(since), "until": iso(now), "rows": out}

    # -- why pending, and when ---------------------------------------------------------------------------
    def _queue_view(self) -> _QueueView:
        """The queue as users see it: its order, each job's position and why it waits (O(n));
        kept until the next change, or for a second (pages polling it cost one walk a second)."""
        now = self.clock()
        key = (self._version, math.floor(now))
        if self._view is not None and self._view[0] == key:
            return self._view[1]
        view = self._compute_queue_view(now)
        self._view = (key, view)
        return view

    def _compute_queue_view(self, now: float) -> _QueueView:
        capacity = self.cluster.capacity()
        free = policy.subtract(capacity, *self.allocated)
        order = list(self._order(now, capacity))
        used, quotas = self._used_by_user(), self._quotas()
        preempting: dict[str, list[str]] = {}
        for job in self._live.values():
            if job.status is S.PAUSING and job.pause_reason in (failure.PREEMPT, failure.ROTATE) and job.preempted_by:
                preempting.setdefault(job.preempted_by, []).append(job.job_id)

        def waiting(e: Entry) -> pending.Waiting:
            return pending.Waiting(e, self._spec_of(e.job_id).time_limit_s, over_max(e),
                                   tuple(preempting.get(e.job_id, ())))

        def over_max(e: Entry) -> str | None:
            user = self._owners.get(e.job_id, "")
            q = quotas.get(user)
            verdict = quota.check(e.demand, used.get(user, {}), q) if q is not None else None
            return verdict.message if verdict and verdict.status == quota.OVER_MAX else None

        # The first _EXPLAIN_DEPTH jobs in full (reasons, ETAs); the ones behind, when read.
        near = order[:_EXPLAIN_DEPTH]
        running = [r for r, _ in self._running_ends(now, by_rate=True)]
        explained = {p.job_id: p for p in pending.explain([waiting(e) for e in near], running, free, now)}
        positions = {e.job_id: i + 1 for i, e in enumerate(order)}
        head = next((p.job_id for p in explained.values() if p.code not in (pending.QUOTA, pending.BACKOFF)), None)

        def behind(job_id: str) -> pending.Pending | None:
            at = positions.get(job_id)
            if at is None:
                return None
            return pending.beyond(job_id, at, _EXPLAIN_DEPTH, head, over_max(order[at - 1]))

        return _QueueView(order, positions, explained, behind)

    def _position(self, job_id: str) -> int | None:
        """1-based place in the queue users see (fair order with a users file): O(position)."""
        if self.users is None or job_id not in self.queue:
            return self.queue.position(job_id)
        if self._view is not None and self._view[0] == (self._version, math.floor(self.clock())):
            return self._view[1].positions.get(job_id)
        now = self.clock()
        return next(i for i, e in enumerate(self._order(now, self.cluster.capacity()), 1) if e.job_id == job_id)

    def _spec_of(self, job_id: str) -> JobSpec:
        spec = self._specs.get(job_id)
        return spec if spec is not None else self._spec(self._job(job_id))

    def _check_reach(self, spec: JobSpec) -> None:
        """Refuse a spec that reaches head-node folders or storage an admin did not allow."""
        allowed, own, roots = self._reach_rules()
        security.check_package_paths(spec.runtime_env, allowed, own)
        _check_local_dirs(spec.runtime_env)
        security.check_storage_path(spec.storage_path, roots)

    def _reach_rules(self) -> tuple[list[str] | None, list[str], list[str]]:
        """The allowed folders, trainq's own package folder and the storage roots, parsed once per
        ``settings`` (a submit checks them every time)."""
        if self._reach is None or self._reach[0] is not self.settings:
            roots = [self.storage_root, *(security.parse_list(self.settings.storage_roots) or [])]
            self._reach = (self.settings, self.settings.allowed_dir_list(), [packages_root(self.storage_root)], roots)
        return self._reach[1], self._reach[2], self._reach[3]

    def job_root(self, job: Job) -> str:
        """Where the job's runs (checkpoints, logs) live: ``<storage root>/<job_id>``."""
        root = job.spec.get("storage_path") or self.storage_root
        return join_path(root, job.job_id)

    # -- internals: decisions applied through the one transition ------------------------------------
    def _transition(self, job: Job, target: JobStatus, action: str, reason: str, **changes: Any) -> Job:
        """The only writer of job state: check the table, compare-and-set, index, notify."""
        if not allowed(job.status, target):
            raise IllegalTransition(job.job_id, job.status.value, target.value, action)
        at = self.clock()
        transition = Transition(job.job_id, job.status, target, at, reason, changes.get("attempt", job.attempt))
        request = self._request if self._request is not None and self._request_job == job.job_id else None
        updated = self.store.transition(job.job_id, job.status, transition, changes, request)
        if request is not None and updated is not None:
            self._request = None  # written with the verb's first change, and only that one
        if updated is None:
            current = self._job(job.job_id)
            raise IllegalTransition(job.job_id, current.status.value, target.value, action)
        self._counts[job.status] = self._counts.get(job.status, 1) - 1
        self._counts[target] = self._counts.get(target, 0) + 1
        if target in ACTIVE:
            self._live[updated.job_id] = updated
        else:
            self._live.pop(updated.job_id, None)
        if target is S.PENDING:
            self.held[(updated.job_id, updated.attempt)] = self._demand(updated)
        self._index(updated)
        self._notify_status(updated, job.status, reason)
        return updated

    def _idempotent(self, key: str | None, verb: str, job_id: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run a verb once per key: the key is committed with the verb's change of state, and a
        key seen before gets the recorded answer (Ray re-runs a call that was in flight when the
        actor restarted; the first run may have committed)."""
        key = _idempotency_key(key)
        if key is None:
            return run()
        found = self._replay(key, verb, job_id, None)
        if found is not None:
            return found["response"] or {**self.get(job_id), "success": True, "job_id": job_id,
                                         "message": f"{verb} was already done for this idempotency key"}
        self._request, self._request_job = Request(key, verb), job_id
        try:
            result = run()
        finally:
            recorded, self._request = self._request is None, None
        if recorded:
            self.store.set_request_response(key, result)
        return result

    def _replay(self, key: str, verb: str, job_id: str | None, fingerprint: str | None,
                known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """What ``key`` did before, or None; a key reused for something else is a conflict.
        ``known``: the stored keys among a batch's, read at once (``Store.find_requests``)."""
        found = self.store.find_request(key) if known is None else known.get(key)
        if found is None:
            return None
        if found["verb"] != verb:
            raise IdempotencyConflict(key, found["verb"], found["job_id"], f"(not to {verb} it)")
        if job_id is not None and found["job_id"] != job_id:
            raise IdempotencyConflict(key, verb, found["job_id"], f"(not job {job_id!r})")
        if fingerprint is not None and found["fingerprint"] != fingerprint:
            raise IdempotencyConflict(key, verb, found["job_id"], "with a different spec")
        return found

    def _set(self, job: Job, **changes: Any) -> Job:
        """Change fields other than the state (priority, pause intent, flags) and re-index."""
        self.store.update_job(job.job_id, changes)
        updated = self._job(job.job_id)
        if updated.job_id in self._live:
            self._live[updated.job_id] = updated
        self._index(updated)
        return updated

    def _settle(self, job: Job, decision: failure.Decision, at: float, error: str | None = None,
                final_checkpoint: str | None = None) -> Job:
        """Apply a failure-policy decision to an active job whose attempt has ended."""
        if decision.status == "completed":
            return self._transition(job, S.COMPLETED, "complete", decision.reason, finished_at=at,
                                    checkpoint_path=final_checkpoint or job.checkpoint_path)
        if decision.status == "paused":
            return self._transition(job, S.PAUSED, "pause", decision.reason, paused_at=at)
        if decision.status == "queued":
            reason = decision.reason
            if job.pause_reason == failure.PREEMPT and job.preempted_by:
                reason = f"preempted by {job.preempted_by}: " + reason.removeprefix("preempted: ")
            # A job whose time slice is over, or a borrowing job preempted (its owner's guarantee did
            # not cover it), goes behind the jobs waiting: back in its old place it would start
            # again at once on the room just made, ahead of the job it was paused for.
            behind = {"seq": self.store.next_seq()} if job.pause_reason == failure.ROTATE or (
                job.pause_reason == failure.PREEMPT and job.borrowing) else {}
            return self._requeue(job, "requeue", reason, job.checkpoint_path,
                                 retries=job.retries + (1 if decision.retry else 0),
                                 not_before=at + decision.backoff_s if decision.backoff_s else None,
                                 keep_reason=job.pause_reason in (failure.PREEMPT, failure.ROTATE), **behind)
        return self._transition(job, S.FAILED, "fail", decision.reason, finished_at=at,
                                error=error or "the run failed without an error message")

    def _requeue(self, job: Job, action: str, reason: str, start_from: str | None, *,
                 warning: str | None = None, keep_reason: bool = False, **changes: Any) -> Job:
        """Back to the queue (keeping its submission order), to start from ``start_from``."""
        return self._transition(
            job, S.QUEUED, action, reason, resume_from=start_from, paused_at=None, finished_at=None,
            error=None, warning=warning, pause_requested_at=None, pause_deadline_at=None,
            expected_paused_by=None, checkpoint_requested_at=None,
            pause_reason=job.pause_reason if keep_reason else None, **changes)

    def _begin_pause(self, job: Job, plan: PausePlan, intent: str, reason: str, **changes: Any) -> Job:
        """running -> pausing: ask the runner to stop right after its next checkpoint report."""
        job = self._transition(job, S.PAUSING, "pause", reason, pause_requested_at=self.clock(),
                               pause_deadline_at=plan.deadline_at, expected_paused_by=plan.expected_at,
                               pause_reason=intent, checkpoint_requested_at=None, **changes)
        self.launcher.request_pause(job.job_id, job.attempt)
        return job

    def _plan_pause(self, job: Job, now: float, deadline_s: float | None = None, wait_forever: bool = False,
                    cap_s: float | None = None) -> PausePlan:
        """When a pause of this running job must end at the latest, and when it likely will.

        ``cap_s`` bounds a derived deadline further (a preemption's grace, a shutdown's limit).
        """
        reports = self.store.reports(job.job_id, attempt=job.attempt)
        steps = [b.at - a.at for a, b in zip(reports, reports[1:])]
        attempt = self.store.get_attempt(job.job_id, job.attempt)
        limit = self.settings.pause_max_wait_s if cap_s is None else min(cap_s, self.settings.pause_max_wait_s)
        return plan_pause(now, attempt.started_at if attempt else now, [r.at for r in reports if r.checkpoint_path],
                          step_s=_median(steps), cooperative=job.cooperative, deadline_s=deadline_s,
                          wait_forever=wait_forever, max_wait_s=limit, floor_s=min(30.0, limit),
                          default_s=min(self.settings.pause_default_deadline_s, limit))

    def _preempt_for_queue(self, free: Resources, capacity: Resources, now: float) -> None:
        """Walk the queue from its head and pause (at a checkpoint) what the preemption policy picks.

        Room already promised to a job ahead (free now, or on its way from stopping jobs) is
        not counted again for the next one; the walk stops at the first job nothing can make
        room for, so jobs behind it wait as the queue order says.
        """
        holders = self._holders(now)
        left = dict(free)
        for entry in self.queue.in_order():
            if not policy.ready(entry, now):
                continue
            decision = preemption.choose_victims(entry.job_id, entry.priority, entry.demand, holders, left,
                                                 capacity, now)
            if decision is None and not policy.fits(entry.demand, left):
                return
            for victim_id in decision.victims if decision else []:
                self._preempt(victim_id, entry, now, decision.lost_work_s.get(victim_id))
                holders = [dataclasses.replace(h, stopping=True) if h.job_id == victim_id else h for h in holders]
            left = policy.subtract(left, entry.demand)

    def _may_preempt(self) -> bool:
        """Whether any queued job outranks a running one (a victim must have a lower priority):
        with thousands queued behind a full cluster, most passes stop here, reading no job."""
        top = next(iter(self.queue.in_order()), None)
        return top is not None and any(j.priority < top.priority for j in self._live.values() if j.status is S.RUNNING)

    def _holders(self, now: float) -> list[preemption.Candidate]:
        """Every attempt holding resources, as the preemption policy sees it."""
        holders = []
        for (job_id, attempt), demand in self.held.items():
            job = self._live.get(job_id) or self.store.get_job(job_id)
            if job is None:
                continue
            current = job.attempt == attempt and job.status in ACTIVE
            spec = self._spec(job)
            holders.append(preemption.Candidate(
                job_id=job_id, priority=job.priority, demand=demand,
                attempt_started_at=self._attempt_started(job),
                stopping=not current or job.status is S.PAUSING,
                preemptible=spec.preemptible and current and job.status is S.RUNNING,
                min_runtime_s=self.settings.min_runtime_s if spec.min_runtime_s is None else spec.min_runtime_s,
                last_checkpoint_at=self._last_checkpoint_at(job), resumable=job.resumable))
        return holders

    def _preempt(self, victim_id: str, head: Entry, now: float, expected_loss_s: float | None,
                 reclaim: bool = False) -> None:
        job = self._job(victim_id)
        plan = self._plan_pause(job, now, cap_s=self.settings.preempt_grace_s)
        why = (f"its owner's guarantee is reclaimed for {head.job_id} (this job borrows idle capacity)" if reclaim
               else f"priority {head.priority} > {job.priority}")
        self._begin_pause(job, plan, failure.PREEMPT,
                          f"preempted by {head.job_id} ({why});"
                          f" pausing at its next checkpoint ({plan.message})",
                          preempted_by=head.job_id, preemptions=job.preemptions + 1)
        self._notify({"type": "preemption", "job_id": victim_id, "preempted_by": head.job_id,
                      "expected_lost_work_s": expected_loss_s, "at": iso(now)})

    def _index(self, job: Job) -> None:
        """Keep the queue, deadlines and owners in step with a job's stored state."""
        self._version += 1
        if job.status is S.QUEUED or job.status in ACTIVE:
            self._owners[job.job_id] = job.owner or ""
        elif not any(key[0] == job.job_id for key in self.held):
            self._owners.pop(job.job_id, None)
        if job.status is S.QUEUED:
            spec = self._spec(job)
            self.queue.add(Entry(job.job_id, job.priority, job.seq, spec.demand(), spec.worker_resources(),
                                 spec.num_workers, job.not_before))
        else:
            self.queue.remove(job.job_id)
        if job.status is S.PAUSING and job.pause_deadline_at is not None:
            self.deadlines[job.job_id] = job.pause_deadline_at
        else:
            self.deadlines.pop(job.job_id, None)

    def _release(self, job_id: str, attempt: int) -> None:
        """The attempt's runner has stopped (or is gone): what it held is free again."""
        self.held.pop((job_id, attempt), None)
        self._version += 1

    def _nodes_free(self) -> list[Resources] | None:
        """Free resources per node, less what pending jobs will take once Ray places them."""
        nodes = self.cluster.nodes_free()
        if nodes is None:
            return None
        nodes = [dict(n) for n in nodes]
        for job_id, attempt in self.held:
            job = self._live.get(job_id)
            if job is not None and job.status is S.PENDING and job.attempt == attempt:
                spec = self._spec(job)
                placed = policy.place_gang(spec.worker_resources(), spec.num_workers, nodes)
                if placed is not None:  # conservative: it may already be placed and counted twice
                    policy.placement.take(nodes, spec.worker_resources(), placed)
        return nodes

    def _on_report(self, job: Job, attempt: int, event: Mapping[str, Any]) -> None:
        report = Report(job.job_id, attempt, int(event["seq"]), float(event["at"]),
                        dict(event.get("metrics") or {}), event.get("checkpoint_path"))
        if job.attempt != attempt or not self.store.record_report(report):
            return  # a stale attempt, or a resend of a report already recorded
        if report.checkpoint_path:
            self._last_checkpoint[job.job_id] = (attempt, report.at)
            self._on_checkpoint_recorded(job.job_id, report.checkpoint_path)
        if job.status is S.PENDING:
            job = self._transition(job, S.RUNNING, "start", "first report received")
        if report.seq == 1 and event.get("read_checkpoint") is not None:
            self._learn_resumable(job, bool(event["read_checkpoint"]))
            job = self._job(job.job_id)
        self._verify_resume(job, report)
        if report.checkpoint_path and job.checkpoint_requested_at is not None \
                and report.at >= job.checkpoint_requested_at:
            self._set(job, checkpoint_requested_at=None)
            self._notify({"type": "checkpoint", "job_id": job.job_id, "attempt": attempt,
                          "checkpoint_path": report.checkpoint_path, "requested": True,
                          "at": iso(report.at)})
        event = {"type": "report", **report.to_dict()}
        event["report_seq"] = event.pop("seq")  # "seq" is the event log's own numbering
        self._notify(event)

    def _learn_resumable(self, job: Job, read_checkpoint: bool) -> None:
        """The first report of an attempt says whether its function asked for its checkpoint."""
        changes: dict[str, Any] = {"resumable": read_checkpoint}
        if not read_checkpoint:
            changes["warning"] = (IGNORED_CHECKPOINT if job.resume_from else NOT_RESUMABLE)
        self._set(job, **changes)
        if not read_checkpoint:
            self._notify({"type": "warning", "job_id": job.job_id, "warning": changes["warning"]})

    def _on_exit(self, job: Job, attempt: int, event: Mapping[str, Any]) -> None:
        outcome, at = event["outcome"], float(event.get("at") or self.clock())
        self._release(job.job_id, attempt)
        if job.attempt != attempt or job.status not in ACTIVE:
            # The scheduler already settled this attempt (cancel, deadline); keep its accounting.
            self._end_attempt(job, None, at, attempt=attempt)
            self.schedule()
            return
        if job.status is S.PENDING and outcome != "failed":
            # It trained, so it ran, even if its "started" word never arrived.
            job = self._transition(job, S.RUNNING, "start", "finished before its start was reported")
        if job.status is S.PENDING:  # failed before training: the runner could not start the run
            decision = failure.Decision("failed", "the run failed before training started")
        else:
            decision = failure.on_exit(job.status.value, job.pause_reason, outcome, event.get("failure"),
                                       job.retries, self._spec(job).max_retries, self.settings.retry_backoff_s)
        job = self._settle(job, decision, at, error=event.get("error"), final_checkpoint=event.get("checkpoint_path"))
        self._end_attempt(job, outcome, at)
        self._apply_retention(job.job_id)  # what the ended attempt still needed is free now
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
        first_end = record.lost_work is None
        record.lost_work = self._lost_work(record, at=record.ended_at, resumable=job.resumable)
        self.store.save_attempt(record)
        if record.attempt == job.attempt:
            self.store.update_job(job.job_id, {"lost_work": record.lost_work})
        if first_end:
            self._notify({"type": "attempt", "job_id": job.job_id, "attempt": record.attempt,
                          "outcome": record.outcome, "lost_work": record.lost_work, "at": iso(record.ended_at)})

    def _lost_work(self, attempt: Attempt, at: float, resumable: bool | None = None) -> dict[str, Any]:
        """Reports, seconds and (when reported) steps an attempt made beyond its last checkpoint.

        A job whose function never reads its checkpoint redoes its whole attempt on resume.
        """
        reports = self.store.reports(attempt.job_id, attempt=attempt.attempt)
        last_ckpt = max((i for i, r in enumerate(reports) if r.checkpoint_path), default=None)
        if resumable is False:
            base_at, checkpoint, after, base_step = attempt.started_at, None, reports, None
        elif last_ckpt is not None:
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
        lost = {"reports": len(after), "seconds": round(max(0.0, at - base_at), 3), "steps": steps,
                "since_checkpoint": checkpoint}
        if resumable is False:
            lost["note"] = "its train function never reads its checkpoint: the whole attempt is redone"
        return lost

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
            self._notify({"type": "warning", "job_id": job.job_id, "warning": warning})

    def _recorded_checkpoint(self, job: Job, path: str) -> str:
        root = self.job_root(job)
        if "\x00" in path:  # no path holds one, and os.path refuses to look at it
            raise CheckpointRefused(job.job_id, path, "a path cannot contain a NUL byte")
        candidate = path if "://" in path else os.path.normpath(path)
        if not _inside(candidate, root):
            raise CheckpointRefused(job.job_id, path, f"it is outside the job's storage {root}")
        if self.store.find_checkpoint(job.job_id, candidate) is None:
            raise CheckpointRefused(job.job_id, path, "this job never recorded that checkpoint"
                                    " (see its checkpoints list)")
        return candidate

    # -- checkpoint retention (policy.retention decides; the checkpoint storage deletes) ---------------
    def _on_checkpoint_recorded(self, job_id: str, path: str) -> None:
        """A new checkpoint was recorded: measure it, then apply the job's retention rule."""
        # A listing of the folder, not a read of its contents; measured once, when recorded.
        self.store.update_checkpoint(job_id, path, {"bytes": self.checkpoint_fs.size(path)})
        self._apply_retention(job_id)

    def _apply_retention(self, job_id: str) -> list[str]:
        """Delete the job's checkpoints its ``keep_checkpoints`` rule no longer keeps.

        Each one is recorded as deleted before the storage is asked to delete it, so it is never
        offered for a resume again even while its folder is still being removed.
        """
        job = self.store.get_job(job_id)
        if job is None:
            return []
        keep = self._spec(job).keep_checkpoints
        if keep is None:
            return []
        stored = [retention.Stored(c["path"], c["attempt"], c["pinned"], c["deleted_at"] is not None)
                  for c in self.store.checkpoints(job_id)]
        protected = retention.protected_paths(job.status.value, job.checkpoint_path, job.resume_from)
        doomed = retention.choose_deletions(stored, keep, protected)
        now = self.clock()
        for path in doomed:
            self.store.update_checkpoint(job_id, path, {"deleted_at": now})
            self.checkpoint_fs.delete(path)
        if doomed:
            self._notify({"type": "checkpoints_deleted", "job_id": job_id, "paths": doomed,
                          "keep_checkpoints": keep, "at": iso(now)})
        return doomed

    def _existing_start(self, job: Job, start_from: str | None, named: bool) -> tuple[str | None, str | None]:
        """Check that the checkpoint a resume would start from still exists and is complete.

        A named checkpoint that is gone is refused (``CheckpointMissing``, naming the newest one
        that exists); the job's latest one that is gone falls back to the newest that exists,
        and the second value says so for the resume's message.
        """
        if start_from is None:
            return None, None
        record = self.store.find_checkpoint(job.job_id, start_from)
        if record is not None and record["deleted_at"] is not None:
            why = f"trainq deleted it at {iso(record['deleted_at'])} under the job's keep_checkpoints rule"
        elif not self.checkpoint_fs.complete(start_from):
            why = "its folder is missing or empty on storage (removed outside trainq?)"
        else:
            return start_from, None
        newest = self._newest_existing(job.job_id, skip=start_from)
        if named or newest is None:
            raise CheckpointMissing(job.job_id, start_from, newest, why)
        return newest, (f"its latest checkpoint {start_from} is gone ({why}), so it resumes from {newest},"
                        " the newest recorded checkpoint that still exists")

    def _newest_existing(self, job_id: str, skip: str) -> str | None:
        for c in self.store.checkpoints(job_id):
            if c["path"] != skip and c["deleted_at"] is None and self.checkpoint_fs.complete(c["path"]):
                return str(c["path"])
        return None

    def _checkpoint_public(self, c: dict[str, Any]) -> dict[str, Any]:
        stored = retention.Stored(c["path"], c["attempt"], c["pinned"], c["deleted_at"] is not None)
        return {**c, "at": iso(c["at"]), "deleted_at": iso(c["deleted_at"]), "state": retention.state_of(stored)}

    def _check_fits(self, spec: JobSpec) -> None:
        demand, worker = spec.demand(), spec.worker_resources()
        if policy.never_fits(demand, worker, self.cluster.max_capacity(), self.cluster.nodes()):
            raise DoesNotFit(demand, self.cluster.max_capacity())

    def _last_checkpoint_at(self, job: Job) -> float | None:
        """When the job's current attempt last reported a checkpoint (None: not yet)."""
        cached = self._last_checkpoint.get(job.job_id)
        if cached is None or cached[0] != job.attempt:
            mine = [c["at"] for c in self.store.checkpoints(job.job_id) if c["attempt"] == job.attempt]
            cached = (job.attempt, max(mine) if mine else None)
            self._last_checkpoint[job.job_id] = cached
        return cached[1]

    def _attempt_started(self, job: Job) -> float:
        return job.started_at if job.started_at is not None else job.updated_at

    def _spec(self, job: Job) -> JobSpec:
        spec = self._specs.get(job.job_id)
        if spec is None:
            spec = self._specs[job.job_id] = JobSpec.model_validate(job.spec)
        return spec

    def _demand(self, job: Job) -> Resources:
        return self._spec(job).demand()

    def _job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _public(self, job: Job) -> dict[str, Any]:
        """One job as the verbs answer it: its place in the queue, no pending reason (working one
        out walks the whole queue; ``get`` has it)."""
        return self._public_many([job])[0]

    def _public_many(self, jobs: list[Job], view: _QueueView | None = None) -> list[dict[str, Any]]:
        """A page of jobs as the API shows them, with one query for all their checkpoint sizes;
        with the queue ``view``, queued jobs carry their position in it and why they wait."""
        out = []
        for job, extra in zip(jobs, self._current(jobs, view), strict=True):
            d = job.to_dict()
            d.update(extra)
            out.append(d)
        return out

    def _encoded_many(self, jobs: list[Job], view: _QueueView | None = None) -> list[bytes]:
        """``_public_many`` as JSON, each job's unchanging part encoded once (``Job.public_json``)."""
        return [wire.merge(job.public_json(), wire.dumps_bytes(extra))
                for job, extra in zip(jobs, self._current(jobs, view), strict=True)]

    def _current(self, jobs: list[Job], view: _QueueView | None) -> list[dict[str, Any]]:
        """What a job's public form adds to its row: its place in the queue and why it waits
        (from ``view``), and the bytes its checkpoints hold (one query for the page)."""
        # A job that never ran has no checkpoints (they come from its attempts' reports): a
        # submit's answer, or a page of the queue, asks for none.
        sizes = self.store.checkpoint_bytes_of([j.job_id for j in jobs if j.attempt > 0])
        out = []
        for job in jobs:
            queued = job.status is S.QUEUED
            position = None
            if queued:
                position = view.positions.get(job.job_id) if view is not None else self._position(job.job_id)
            why = view.why(job.job_id) if view is not None and queued else None
            out.append({"queue_position": position, "checkpoint_bytes": sizes.get(job.job_id, 0),
                        "pending_reason": why.reason() if why else None, "eta": iso(why.eta) if why else None,
                        "eta_basis": why.eta_basis if why else None})
        return out

    def _pause_result(self, job: Job, previous: JobStatus, message: str) -> dict[str, Any]:
        return {"success": True, "job_id": job.job_id, "previous_status": previous.value,
                "status": job.status.value, "paused_at": iso(job.paused_at), "message": message,
                "expected_paused_by": iso(job.expected_paused_by) if job.status is S.PAUSING else None,
                "deadline_at": iso(job.pause_deadline_at) if job.status is S.PAUSING else None}

    def _notify_status(self, job: Job, previous: JobStatus | None, reason: str) -> None:
        self._notify({"type": "status", "job_id": job.job_id, "status": job.status.value,
                      "previous_status": previous.value if previous else None, "reason": reason,
                      "attempt": job.attempt, "at": iso(job.updated_at)})

    def _notify(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)


#: ``json.dumps(value, sort_keys=True)`` (a submit's fingerprint) with its encoder made once.
_sorted_json = json.JSONEncoder(sort_keys=True).encode
#: How many queued jobs behind the head backfill and time slicing look at (Slurm's bf_max_job_test).
_BACKFILL_DEPTH = 500
#: How many queued jobs get a full why-pending and ETA; the ones behind show their place only
#: (keeps ``list``/``queue`` fast at 10,000 queued jobs: issue 14).
_EXPLAIN_DEPTH = 500
#: Allowance for a stopped run to release its resources after its pause deadline.
_STOP_MARGIN_S = 30.0
#: Where the fair-share ledger is kept in the store, and how often it is saved.
_LEDGER_KEY, _LEDGER_SAVE_S = "fairshare_ledger", 60.0


class _NewJob(NamedTuple):
    """A submitted job checked and not yet stored: its row, first transition, request key and spec."""

    job: Job
    transition: Transition
    request: Request | None
    spec: JobSpec


@dataclasses.dataclass(frozen=True)
class _QueueView:
    """The queue as users see it: order, 1-based positions, and why each job waits."""

    order: list[Entry]
    positions: dict[str, int]
    explained: dict[str, pending.Pending]  # the first _EXPLAIN_DEPTH jobs
    behind: Callable[[str], pending.Pending | None]  # the others, computed when read

    def why(self, job_id: str) -> pending.Pending | None:
        """Why ``job_id`` waits (None: it is not queued)."""
        found = self.explained.get(job_id)
        return found if found is not None else self.behind(job_id)


class _PerUser(Mapping[str, Any]):
    """A mapping computed per key on first use (every user of a users file has a quota); a key
    whose value computes to None is missing (``get`` gives the default)."""

    def __init__(self, compute: Callable[[str], Any]) -> None:
        self._compute, self._seen = compute, {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._seen:
            self._seen[key] = self._compute(key)
        if self._seen[key] is None:
            raise KeyError(key)
        return self._seen[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seen)

    def __len__(self) -> int:
        return len(self._seen)


def _usage_row(by: str, key: str, job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {"user": key} if by == "user" else {"job_id": key, "name": job.name, "user": job.owner}
    row.update(resource_seconds={}, gpu_hours=0.0, cpu_hours=0.0, lost_work_s=0.0, preemptions=0, attempts=0,
               _jobs=set())
    return row


#: What a pause, resume or the job says when its train function never reads its checkpoint.
NOT_RESUMABLE = ("its train function never calls ray.train.get_checkpoint(), so a resume starts it over"
                 " from the beginning: everything since its attempt started would be redone")
IGNORED_CHECKPOINT = ("the train function ignored its checkpoint: it was resumed from one but never called"
                      " ray.train.get_checkpoint(), so it started over")


def _idempotency_key(key: str | None) -> str | None:
    """A usable key or None; a key is 1-200 printable characters (an HTTP header's worth)."""
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= 200 or not key.isprintable():
        raise InvalidSpec("idempotency_key must be 1 to 200 printable characters", field="idempotency_key")
    return key


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _check_local_dirs(runtime_env: Mapping[str, Any]) -> None:
    """A local working_dir/py_modules is uploaded from the scheduler's machine: it must exist there."""
    entries = [("runtime_env.working_dir", runtime_env.get("working_dir"))]
    entries += [(f"runtime_env.py_modules.{i}", p) for i, p in enumerate(runtime_env.get("py_modules") or [])]
    for field, value in entries:
        path = security.local_path_of(value) if isinstance(value, str) else None
        if path is not None and not os.path.exists(path):
            raise MissingOnServer(
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
        return path.startswith(root.rstrip("/") + "/") and "/../" not in path
    # Resolved: a symlink (or "..") inside the job's folder must not lead into another job's.
    return security.is_under(path, [root])
