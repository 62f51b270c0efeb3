"""The one writer of job rows, and the in-memory indexes it keeps in step with them.

Every change of a job's state goes through ``Writer.transition`` (check the table, compare-and-set
in the store, re-index, notify); every other change of a job's row through ``Writer.update``.
Nothing else in the core writes a job row (``tests/core/test_layers.py`` checks it), so the queue,
the allocations, the deadlines and the counts can never drift from the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..checkpoint_fs import CheckpointFS
from ..config import Settings, join_path
from ..errors import IllegalTransition, JobNotFound
from ..jobs import Job, Transition, iso
from ..policy import Entry, QueueIndex, Resources
from ..spec import JobSpec
from ..states import ACTIVE, JobStatus, allowed
from ..store import Request, Store
from ..users import Users
from .ports import Cluster, Launcher

S = JobStatus
Event = dict[str, Any]


@dataclass
class Context:
    """What every part of the core shares: its seams and its settings (tests may swap the last two)."""

    store: Store
    launcher: Launcher
    cluster: Cluster
    storage_root: str
    clock: Callable[[], float]
    settings: Settings
    checkpoint_fs: CheckpointFS
    #: who may do what, quotas and fair-share weights; None: one user, no quotas
    users: Users | None


class NewJob(NamedTuple):
    """A submitted job checked and not yet stored: its row, first transition, request key and spec."""

    job: Job
    transition: Transition
    request: Request | None
    spec: JobSpec


class Writer:
    """Writes job rows and keeps the indexes that scheduling and the views read."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.listeners: list[Callable[[Event], None]] = []
        self.queue = QueueIndex()
        #: (job_id, attempt) -> resources, from launch until its runner stopped or is gone
        self.held: dict[tuple[str, int], Resources] = {}
        #: pausing job -> when its pause must end at the latest
        self.deadlines: dict[str, float] = {}
        #: queued and active job (and any still holding resources) -> owner ("" when none)
        self.owners: dict[str, str] = {}
        #: Queued and active jobs known to ignore their checkpoint (``resumable`` False): a pause
        #: loses their whole attempt, so the policies that pause running jobs choose them last.
        self.ignores_checkpoint: set[str] = set()
        #: active jobs as last written: a scheduling pass reads no row per running job
        self.live: dict[str, Job] = {}
        #: bumped on every change a scheduling pass or the queue view depends on
        self.version = 0
        #: queued jobs with dependencies or in a sweep (what ``core.dependencies`` looks at each pass)
        self.conditional: set[str] = set()
        #: queued job -> (code, message) while a dependency or its sweep's limit holds it
        self.holds: dict[str, tuple[str, str]] = {}
        self.counts: dict[JobStatus, int] = dict(ctx.store.count_by_status())
        #: Specs never change after submit: kept parsed for queued and active jobs only (what a
        #: pass reads), so the cache is bounded by the queue, and dropped when a job leaves it.
        self._specs: dict[str, JobSpec] = {}
        for job in ctx.store.jobs_in([S.QUEUED, *ACTIVE]):
            if job.status in ACTIVE:
                self.live[job.job_id] = job
                self.held[(job.job_id, job.attempt)] = self.demand(job)
            self.index(job)

    # -- reading --------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        """The stored job, or ``JobNotFound``."""
        job = self.ctx.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def find(self, job_id: str) -> Job | None:
        """The stored job, or None."""
        return self.ctx.store.get_job(job_id)

    def spec(self, job: Job) -> JobSpec:
        """The job's validated spec (parsed once)."""
        spec = self._specs.get(job.job_id)
        if spec is None:
            spec = JobSpec.model_validate(job.spec)
            if job.status is S.QUEUED or job.status in ACTIVE:
                self._specs[job.job_id] = spec
        return spec

    def spec_of(self, job_id: str) -> JobSpec:
        """``spec`` by id, reading the row only when the spec is not at hand."""
        spec = self._specs.get(job_id)
        return spec if spec is not None else self.spec(self.job(job_id))

    def demand(self, job: Job) -> Resources:
        """What the job's gang holds while it runs."""
        return self.spec(job).demand(job.workers)

    def job_root(self, job: Job) -> str:
        """Where the job's runs (checkpoints, logs) live: ``<storage root>/<job_id>``."""
        root = job.spec.get("storage_path") or self.ctx.storage_root
        return join_path(root, job.job_id)

    @property
    def allocated(self) -> list[Resources]:
        """What trainq has handed out (including attempts still releasing it)."""
        return list(self.held.values())

    # -- writing --------------------------------------------------------------------------------
    def insert(self, new: Sequence[NewJob]) -> None:
        """Store submitted jobs as ``queued`` with one commit, then index and announce them."""
        stored = self.ctx.store.insert_jobs([(n.job, n.transition, n.request) for n in new])
        for n, job in zip(new, stored, strict=True):
            self._specs[job.job_id] = n.spec  # what its stored spec validates to, already at hand
            self.counts[S.QUEUED] = self.counts.get(S.QUEUED, 0) + 1
            self.index(job)
            self.notify_status(job, None, "submitted")

    def transition(self, job: Job, target: JobStatus, action: str, reason: str, *,
                   request: Request | None = None, **changes: Any) -> Job:
        """The only writer of job state: check the table, compare-and-set, index, notify.

        ``request``: an idempotency key committed in the same transaction as the change.
        """
        if not allowed(job.status, target):
            raise IllegalTransition(job.job_id, job.status.value, target.value, action)
        transition = Transition(job.job_id, job.status, target, self.ctx.clock(), reason,
                                changes.get("attempt", job.attempt))
        updated = self.ctx.store.transition(job.job_id, job.status, transition, changes, request)
        if updated is None:
            current = self.job(job.job_id)
            raise IllegalTransition(job.job_id, current.status.value, target.value, action)
        self.counts[job.status] = self.counts.get(job.status, 1) - 1
        self.counts[target] = self.counts.get(target, 0) + 1
        if target in ACTIVE:
            self.live[updated.job_id] = updated
        else:
            self.live.pop(updated.job_id, None)
        if target is S.PENDING:
            self.held[(updated.job_id, updated.attempt)] = self.demand(updated)
        self.index(updated)
        self.notify_status(updated, job.status, reason)
        return updated

    def update(self, job: Job, **changes: Any) -> Job:
        """Change fields other than the state (priority, pause intent, flags) and re-index."""
        self.ctx.store.update_job(job.job_id, changes)
        updated = self.job(job.job_id)
        if updated.job_id in self.live:
            self.live[updated.job_id] = updated
        self.index(updated)
        return updated

    def requeue(self, job: Job, action: str, reason: str, start_from: str | None, *,
                warning: str | None = None, keep_reason: bool = False, request: Request | None = None,
                **changes: Any) -> Job:
        """Back to the queue (keeping its submission order), to start from ``start_from``."""
        return self.transition(
            job, S.QUEUED, action, reason, request=request, resume_from=start_from, paused_at=None,
            finished_at=None, error=None, warning=warning, pause_requested_at=None, pause_deadline_at=None,
            expected_paused_by=None, checkpoint_requested_at=None,
            pause_reason=job.pause_reason if keep_reason else None, **changes)

    @staticmethod
    def entry(job: Job, spec: JobSpec, held: tuple[str, str] | None) -> Entry:
        """The job as the queue policies see it (an elastic job at its fewest workers, with its most)."""
        return Entry(job.job_id, job.priority, job.seq, spec.demand(), spec.worker_resources(), spec.min_workers,
                     job.not_before, spec.accelerator_types(), spec.placement_strategy,
                     max_workers=spec.max_workers if spec.elastic else None, held=held)

    @contextlib.contextmanager
    def imagined(self, job: Job, spec: JobSpec) -> Iterator[None]:
        """A job that is not stored, in the queue and the indexes for the length of the block (the
        dry run's): nothing is written or announced, and the version is as before (no view is kept)."""
        version, job_id = self.version, job.job_id
        self._specs[job_id] = spec
        self.owners[job_id] = job.owner or ""
        if spec.depends_on or spec.sweep_id:
            self.conditional.add(job_id)
        self.queue.add(self.entry(job, spec, held=None))
        try:
            yield
        finally:
            self.queue.remove(job_id)
            self.conditional.discard(job_id)
            self.holds.pop(job_id, None)
            self.owners.pop(job_id, None)
            self._specs.pop(job_id, None)
            self.version = version

    def set_held(self, job_id: str, held: tuple[str, str] | None, max_workers: int | None = None,
                 resized: bool = False) -> None:
        """Hold a queued job (a dependency, its sweep's limit, its resize) or let it go: its queue
        entry only, not its row (the rule is worked out again at every pass, and after a restart).
        ``max_workers`` caps an elastic job's next start (the size a shrink left it); ``resized``
        marks it let go after a resize (``Entry.resized``)."""
        entry = self.queue.get(job_id)
        if entry is None:
            return
        cap = entry.max_workers if max_workers is None or entry.max_workers is None \
            else max(entry.num_workers, min(entry.max_workers, max_workers))
        if entry.held == held and entry.max_workers == cap and entry.resized == resized:
            return
        if held is None:
            self.holds.pop(job_id, None)
        else:
            self.holds[job_id] = held
        self.queue.add(dataclasses.replace(entry, held=held, max_workers=cap, resized=resized))
        self.version += 1

    def hold(self, job: Job, attempt: int) -> None:
        """Count resources as held by an attempt found running that no active job owns (an
        orphan being stopped): released when its runner ends. It holds what it was started with,
        which for an elastic job need not be what the job's current attempt has."""
        record = self.ctx.store.get_attempt(job.job_id, attempt)
        workers = record.workers if record is not None and record.workers else job.workers
        self.held[(job.job_id, attempt)] = self.spec(job).demand(workers)

    def release(self, job_id: str, attempt: int) -> None:
        """The attempt's runner has stopped (or is gone): what it held is free again."""
        self.held.pop((job_id, attempt), None)
        self.version += 1

    def index(self, job: Job) -> None:
        """Keep the queue, deadlines, owners and ``ignores_checkpoint`` in step with a job's stored state."""
        self.version += 1
        if job.status is S.QUEUED or job.status in ACTIVE:
            self.owners[job.job_id] = job.owner or ""
        else:
            self._specs.pop(job.job_id, None)
            if not any(key[0] == job.job_id for key in self.held):
                self.owners.pop(job.job_id, None)
        if job.resumable is False and (job.status is S.QUEUED or job.status in ACTIVE):
            self.ignores_checkpoint.add(job.job_id)
        else:
            self.ignores_checkpoint.discard(job.job_id)
        if job.status is S.QUEUED:
            spec = self.spec(job)
            if spec.depends_on or spec.sweep_id:
                self.conditional.add(job.job_id)
            self.queue.add(self.entry(job, spec, held=self.holds.get(job.job_id)))
        else:
            self.queue.remove(job.job_id)
            self.conditional.discard(job.job_id)
            self.holds.pop(job.job_id, None)
        if job.status is S.PAUSING and job.pause_deadline_at is not None:
            self.deadlines[job.job_id] = job.pause_deadline_at
        else:
            self.deadlines.pop(job.job_id, None)

    # -- telling listeners (the event log, metrics) -----------------------------------------------
    def notify_status(self, job: Job, previous: JobStatus | None, reason: str) -> None:
        """Announce a job's new state."""
        self.notify({"type": "status", "job_id": job.job_id, "status": job.status.value,
                     "previous_status": previous.value if previous else None, "reason": reason,
                     "attempt": job.attempt, "at": iso(job.updated_at)})

    def notify(self, event: Event) -> None:
        """Hand an event to every listener, in order."""
        for listener in self.listeners:
            listener(event)
