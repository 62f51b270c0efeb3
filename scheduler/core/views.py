"""Views: jobs in their public form (dicts, or JSON bytes for HTTP), the queue view, why-pending.

Read-only: nothing here writes a row. The queue view (order, positions, reasons, ETAs) is worked
out once per change of the queue (or once a second, for ETAs that move with the clock).
"""

from __future__ import annotations

import builtins
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..errors import InvalidSpec
from ..jobs import Job, iso, step_of
from ..policy import Entry, Resources, accelerators, dependencies, failure, pending, preemption, quota
from ..states import JobStatus
from . import resizing
from .snapshot import Snapshot
from .writer import Writer

S = JobStatus
#: How many queued jobs get a full why-pending and ETA; the ones behind show their place only
#: (keeps ``list``/``queue`` fast at 10,000 queued jobs: issue 14).
EXPLAIN_DEPTH = 500
#: how many future moments a blocked head's pending reason tries for room made by a preemption
ROOM_LATER_TRIES = 8
#: what a held queued job waits for, by its hold's code (``eta_basis``)
HELD_FOR = {dependencies.DEPENDENCY: "its dependencies", dependencies.SWEEP_LIMIT: "a slot in its sweep",
            "resizing": "the room of its new size"}


class PublicForms:
    """Each job's unchanging public fields, formatted and JSON-encoded once (``Job.to_dict`` less
    ``queue_position``): a page of unchanged jobs is joined, not formatted and encoded again.

    Keyed by the row as read (a ``Job`` is never changed in place; a change is a new row, read
    again), kept with it so an id is never reused while cached; beyond ``size`` the oldest entry
    goes (the store keeps the rows it read recently, so those are the ones read again).
    """

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        # Ordered: dropping the oldest is O(1) (a plain dict's first key, after many deletions,
        # is found by scanning the deleted slots).
        self._forms: OrderedDict[int, tuple[Job, dict[str, Any], bytes]] = OrderedDict()

    def of(self, job: Job) -> tuple[dict[str, Any], bytes]:
        """The job's public dict (shared: copy before changing it) and its JSON bytes."""
        key = id(job)
        found = self._forms.get(key)
        if found is not None and found[0] is job:
            return found[1], found[2]
        d = job.to_dict()
        del d["queue_position"]
        form = (job, d, wire.dumps_bytes(d))
        self._forms[key] = form
        if len(self._forms) > self._size:
            self._forms.popitem(last=False)
        return form[1], form[2]

    def __len__(self) -> int:
        return len(self._forms)


@dataclass(frozen=True)
class QueueView:
    """The queue as users see it: order, 1-based positions, and why each job waits."""

    order: builtins.list[Entry]
    positions: dict[str, int]
    explained: dict[str, pending.Pending]  # the first EXPLAIN_DEPTH jobs
    behind: Callable[[str], pending.Pending | None]  # the others, computed when read

    def why(self, job_id: str) -> pending.Pending | None:
        """Why ``job_id`` waits (None: it is not queued)."""
        found = self.explained.get(job_id)
        return found if found is not None else self.behind(job_id)


class Views:
    """Public forms of jobs and of the queue."""

    def __init__(self, writer: Writer, snapshot: Snapshot) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.snapshot = snapshot
        self._view: tuple[tuple[int, int], QueueView] | None = None  # (version, second) -> view
        self.forms = PublicForms()

    # -- jobs -------------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any]:
        """One job as a dict; a queued one with its ``pending_reason``, ``eta`` and ``eta_basis``."""
        return self._public_many(*self._one(job_id))[0]

    def get_json(self, job_id: str) -> bytes:
        """``get`` as the HTTP API sends it (JSON bytes; the job's unchanging fields encoded once)."""
        return self._encoded_many(*self._one(job_id))[0]

    def list(self, status: str | Iterable[str] | None = None, limit: int | None = None,
             offset: int = 0) -> builtins.list[dict[str, Any]]:
        """Jobs newest first, optionally filtered by status (one or several)."""
        return self._public_many(*self._listed(status, limit, offset))

    def page_json(self, status: str | Iterable[str] | None, limit: int, offset: int) -> bytes:
        """``{"jobs": list(...), "total": count(...), "limit", "offset"}`` as JSON bytes (the HTTP page)."""
        jobs = b",".join(self._encoded_many(*self._listed(status, limit, offset)))
        rest = wire.dumps_bytes({"total": self.count(status), "limit": limit, "offset": offset})
        return wire.merge(b'{"jobs":[' + jobs + b"]}", rest)

    def count(self, status: str | Iterable[str] | None = None) -> int:
        """How many jobs (in ``status``) there are (counted as they change, not by a scan)."""
        statuses = statuses_of(status)
        return sum(n for s, n in self.writer.counts.items() if statuses is None or s in statuses)

    def queue_jobs(self, limit: int | None = None, offset: int = 0) -> builtins.list[dict[str, Any]]:
        """The queued jobs in start order, each with ``pending_reason``, ``eta`` and ``eta_basis``."""
        return self._public_many(*self._queued(limit, offset))

    def queue_json(self, limit: int | None = None, offset: int = 0) -> bytes:
        """``queue_jobs`` as a JSON array (bytes)."""
        return b"[" + b",".join(self._encoded_many(*self._queued(limit, offset))) + b"]"

    def public(self, job: Job) -> dict[str, Any]:
        """One job as the verbs answer it: its place in the queue, no pending reason (working one
        out walks the whole queue; ``get`` has it)."""
        return self._public_many([job])[0]

    def encoded(self, jobs: builtins.list[Job]) -> builtins.list[bytes]:
        """Jobs as the verbs answer them, as JSON bytes."""
        return self._encoded_many(jobs)

    def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """The job's metrics reports, oldest first."""
        self.writer.job(job_id)
        return [r.to_dict() for r in self.ctx.store.reports(job_id, after_id=after_id, limit=limit)]

    def history(self, job_id: str) -> dict[str, Any]:
        """The job's transitions and attempts."""
        self.writer.job(job_id)
        return {"transitions": [t.to_dict() for t in self.ctx.store.transitions(job_id)],
                "attempts": [a.to_dict() for a in self.ctx.store.attempts(job_id)]}

    def holding(self) -> builtins.list[dict[str, Any]]:
        """Every job whose run still holds resources (what a shutdown waits for)."""
        out = []
        for job_id in sorted({job_id for job_id, _ in self.writer.held}):
            job = self.writer.find(job_id)
            if job is not None:
                out.append({"job_id": job_id, "name": job.name, "status": job.status.value,
                            "step": step_of(job.metrics), "deadline_at": iso(job.pause_deadline_at)})
        return out

    def cluster(self) -> dict[str, Any]:
        """Capacity used and free per resource, running and queued counts, and use per owner.

        ``used`` is what trainq handed out: active jobs and attempts still releasing it.
        """
        capacity = self.ctx.cluster.capacity()
        used: dict[str, float] = {}
        by_user: dict[str, dict[str, float]] = {}
        for (job_id, _attempt), demand in self.writer.held.items():
            job = self.writer.find(job_id)
            owner = job.owner if job is not None else None
            for key, amount in demand.items():
                used[key] = used.get(key, 0.0) + amount
                if owner:
                    mine = by_user.setdefault(owner, {})
                    mine[key] = mine.get(key, 0.0) + amount
        resources = {key: {"total": capacity.get(key, 0.0), "used": used.get(key, 0.0),
                           "free": max(0.0, capacity.get(key, 0.0) - used.get(key, 0.0))}
                     for key in sorted(set(capacity) | set(used))}
        return {"resources": resources, "running": self.count(["running", "pausing"]),
                "starting": self.count(["pending"]), "queued": len(self.writer.queue),
                "paused": self.count(["paused"]), "by_user": by_user,
                "max_capacity": self.ctx.cluster.max_capacity()}

    def _one(self, job_id: str) -> tuple[builtins.list[Job], QueueView | None]:
        job = self.writer.job(job_id)
        return [job], self.queue_view() if job.status is S.QUEUED else None

    def _listed(self, status: str | Iterable[str] | None, limit: int | None,
                offset: int) -> tuple[builtins.list[Job], QueueView | None]:
        jobs = self.ctx.store.list_jobs(statuses_of(status), limit, offset)
        return jobs, self.queue_view() if any(j.status is S.QUEUED for j in jobs) else None

    def _queued(self, limit: int | None, offset: int) -> tuple[builtins.list[Job], QueueView]:
        view = self.queue_view()
        end = None if limit is None else offset + limit
        page = view.order[offset:end]
        jobs = self.ctx.store.get_jobs([e.job_id for e in page])
        return [jobs[e.job_id] for e in page if e.job_id in jobs], view

    def _public_many(self, jobs: builtins.list[Job], view: QueueView | None = None) -> builtins.list[dict[str, Any]]:
        """A page of jobs as the API shows them, with one query for all their checkpoint sizes;
        with the queue ``view``, queued jobs carry their position in it and why they wait."""
        out = []
        for job, extra in zip(jobs, self._current(jobs, view), strict=True):
            d = dict(self.forms.of(job)[0])
            d.update(extra)
            out.append(d)
        return out

    def _encoded_many(self, jobs: builtins.list[Job], view: QueueView | None = None) -> builtins.list[bytes]:
        """``_public_many`` as JSON, each job's unchanging part encoded once (``PublicForms``)."""
        return [wire.merge(self.forms.of(job)[1], wire.dumps_bytes(extra))
                for job, extra in zip(jobs, self._current(jobs, view), strict=True)]

    def _current(self, jobs: builtins.list[Job], view: QueueView | None) -> builtins.list[dict[str, Any]]:
        """What a job's public form adds to its row: its place in the queue and why it waits
        (from ``view``), and the bytes its checkpoints hold (one query for the page)."""
        # A job that never ran has no checkpoints (they come from its attempts' reports): a
        # submit's answer, or a page of the queue, asks for none.
        sizes = self.ctx.store.checkpoint_bytes_of([j.job_id for j in jobs if j.attempt > 0])
        out = []
        for job in jobs:
            queued = job.status is S.QUEUED
            position = None
            if queued:
                position = view.positions.get(job.job_id) if view is not None else self.position(job.job_id)
            why = view.why(job.job_id) if view is not None and queued else None
            out.append({"queue_position": position, "checkpoint_bytes": sizes.get(job.job_id, 0),
                        "pending_reason": why.reason() if why else None, "eta": iso(why.eta) if why else None,
                        "eta_basis": why.eta_basis if why else None})
        return out

    # -- the queue as users see it ----------------------------------------------------------------
    def queue_view(self) -> QueueView:
        """The queue's order, each job's position and why it waits (O(n)); kept until the next
        change, or for a second (pages polling it cost one walk a second)."""
        now = self.ctx.clock()
        key = (self.writer.version, math.floor(now))
        if self._view is not None and self._view[0] == key:
            return self._view[1]
        view = self._compute(now)
        self._view = (key, view)
        return view

    def fresh(self, now: float) -> QueueView:
        """The queue view worked out now and kept nowhere (the dry run's, whose queue holds a job
        that is not stored)."""
        return self._compute(now)

    def _compute(self, now: float) -> QueueView:
        snap, owners = self.snapshot, self.writer.owners
        capacity = self.ctx.cluster.capacity()
        free = snap.free()
        order = list(snap.order(now, capacity))
        used, quotas = snap.used_by_user(), snap.quotas()
        preempting: dict[str, builtins.list[str]] = {}
        for job in self.writer.live.values():
            # A shrink (``resize`` with the job it makes room for) makes room as a preemption does.
            making_room = (failure.PREEMPT, failure.ROTATE, failure.RESIZE)
            if job.status is S.PAUSING and job.pause_reason in making_room and job.preempted_by:
                preempting.setdefault(job.preempted_by, []).append(job.job_id)

        def over_max(e: Entry) -> str | None:
            q = quotas.get(owners.get(e.job_id, ""))
            if q is None:
                return None
            mine = used.get(owners.get(e.job_id, ""), {})
            verdicts = [quota.check(accelerators.per_type(e.demand, t), mine, q) for t in e.types or (None,)]
            over = [v.message for v in verdicts if v.status == quota.OVER_MAX]
            return "; ".join(over) if len(over) == len(verdicts) else None

        # The head as ``pending`` sees it; room already being made for it is room on its way.
        first = next((e for e in order[:EXPLAIN_DEPTH] if e.held is None and over_max(e) is None
                      and (e.not_before is None or e.not_before <= now)), None)
        room_at = self._room_later(first, capacity, now) if first is not None and first.job_id not in preempting \
            else None

        def waiting(e: Entry) -> pending.Waiting:
            return pending.Waiting(e, self.writer.spec_of(e.job_id).time_limit_s, over_max(e),
                                   tuple(preempting.get(e.job_id, ())), room_at if e is first else None)

        # The first EXPLAIN_DEPTH jobs in full (reasons, ETAs); the ones behind, when read. A job
        # its dependencies or its sweep's limit hold says so, and takes no room in the ETA walk.
        near = order[:EXPLAIN_DEPTH]
        held = {e.job_id: pending.Pending(e.job_id, *e.held, None, "no estimate: it waits for " + (
            HELD_FOR.get(e.held[0], e.held[0])))
            for e in near if e.held is not None}
        near = [e for e in near if e.held is None]
        running = [r for r, _ in snap.running_ends(now, by_rate=True)]
        explained = held | {p.job_id: p for p in pending.explain([waiting(e) for e in near], running, free, now,
                                                          snap.nodes_free(), snap.draining)}
        positions = {e.job_id: i + 1 for i, e in enumerate(order)}
        head = next((p.job_id for p in explained.values() if p.code not in (
            pending.QUOTA, pending.BACKOFF, dependencies.DEPENDENCY, dependencies.SWEEP_LIMIT)), None)

        def behind(job_id: str) -> pending.Pending | None:
            at = positions.get(job_id)
            if at is None:
                return None
            e = order[at - 1]
            if e.held is not None:
                return pending.Pending(job_id, *e.held, None, None, ahead=at - 1)
            return pending.beyond(job_id, at, EXPLAIN_DEPTH, head, over_max(e))

        return QueueView(order, positions, explained, behind)

    def _room_later(self, head: Entry, capacity: Resources, now: float) -> tuple[float, builtins.list[str]] | None:
        """When a blocked head's room can be made by pausing or shrinking lower priorities that
        only their minimum runtime protects now, and which (the first ``ROOM_LATER_TRIES`` moments
        one becomes eligible are tried): ``pending.Waiting.room_at``. None when it fits, or no
        preemption would make room."""
        snap = self.snapshot
        nodes = snap.nodes_by_id()
        free = snap.free()
        if accelerators.choose(head, free, None if nodes is None else list(nodes.values())) is not None:
            return None
        holders = snap.holders(now) + snap.settling_room()
        sized = resizing.sizes(self.writer, snap)
        for at in preemption.eligible_from(holders, head.priority, now)[:ROOM_LATER_TRIES]:
            shrinks, decision = resizing.room_for(head, holders, sized, free, capacity, at, nodes)
            if decision is not None and (shrinks or decision.victims):
                return at, [s.job_id for s in shrinks] + decision.victims
        return None

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue users see (fair order with a users file): O(position)."""
        queue = self.writer.queue
        if self.ctx.users is None or job_id not in queue:
            return queue.position(job_id)
        if self._view is not None and self._view[0] == (self.writer.version, math.floor(self.ctx.clock())):
            return self._view[1].positions.get(job_id)
        now = self.ctx.clock()
        return next(i for i, e in enumerate(self.snapshot.order(now, self.ctx.cluster.capacity()), 1)
                    if e.job_id == job_id)


def statuses_of(status: str | Iterable[str] | None) -> builtins.list[JobStatus] | None:
    """Job states from one name or several, with an error naming an unknown one."""
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
