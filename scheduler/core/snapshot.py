"""What the policies are shown: the queue in admission order, who holds what, when it frees up.

Read from the writer's indexes (no row per job where it can be helped); the scheduling pass and
the queue view both look through this, so they see the cluster the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import policy
from ..jobs import Job, step_of, total_steps_of
from ..policy import Entry, Resources, accelerators, backfill, elastic, fairshare, pending, preemption, quota
from ..states import ACTIVE, JobStatus
from .attempts import Attempts
from .checkpoints import Checkpoints
from .usage import Usage
from .writer import Writer

S = JobStatus
#: Allowance for a stopped run to release its resources after its pause deadline.
STOP_MARGIN_S = 30.0
#: How long an attempt's room counts as on its way after trainq saw it released: Ray's per-node
#: view shows the room only once the raylets report (about 100 ms; seconds on a loaded head), and
#: a preemption decided from the stale view would pause a second job for room already coming.
SETTLE_S = 5.0
#: The registry's meta key of the plans a pass makes for later passes (``Snapshot.save_plans``).
PLANS_KEY = "scheduling_plans"


@dataclass(frozen=True)
class Placed:
    """Where admission put an attempt: its accelerator type, one worker's resources (with the
    type's marker) and workers per node id. ``nodes`` None: unknown (admitted before a restart, or
    while node sizes were unknown); such an attempt frees room on no node a preemption can count on."""

    accelerator_type: str | None
    worker: Resources
    nodes: dict[str, int] | None = None


class Resizing(NamedTuple):
    """An elastic job pausing to change size (``core.resizing``)."""

    to: int  # the size planned
    for_job: str | None  # a shrink: the job it makes room for (None: a grow, or a loan given back)
    capped: bool  # it starts again with at most ``to`` (a shrink, a grow on a loan, a loan given back)
    queued_at: float | None = None  # when it came back to the queue (None: still pausing)


class Snapshot:
    """The scheduling state as the pure policies take it."""

    def __init__(self, writer: Writer, attempts: Attempts, checkpoints: Checkpoints, usage: Usage) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        self.attempts = attempts
        self.checkpoints = checkpoints
        self.usage = usage
        # The plans a pass makes for later ones, kept in the registry (``save_plans``) so that a
        # restarted scheduler keeps the promises they carry (a head's reserved start above all).
        #: backfilled ``preemptible`` jobs to pause before their head may start
        self.planned: dict[str, backfill.PlannedPause] = {}
        #: elastic jobs pausing to change size; a job relaunching waits for that room
        #: (``core.resizing.holds``)
        self.resizing: dict[str, Resizing] = {}
        #: elastic jobs grown on a loan from a waiting head, with the attempt that holds it: given
        #: back at its time (``core.resizing.give_backs``)
        self.loans: dict[str, tuple[elastic.Loan, int]] = {}
        self._saved_plans: dict[str, Any] = {}
        self._load_plans()
        #: each attempt holding resources: the type and nodes admission chose (the core's model of
        #: where it runs, not a Ray lookup), dropped once the attempt releases what it held
        self.placed: dict[tuple[str, int], Placed] = {}
        #: queued jobs within their owner's guarantee that room is being taken back from borrowers
        #: for: other users' borrowing jobs leave them that room (``admission.admit_with_quotas``)
        self.reclaims: dict[str, Entry] = {}
        #: the nodes Ray is draining, as the last drain notices described them (for why-pending)
        self.draining: tuple[str, ...] = ()
        #: attempts released lately, with known nodes: where they were, and when trainq saw them go
        self.settling: dict[tuple[str, int], tuple[Placed, float]] = {}

    def save_plans(self) -> None:
        """Write the plans to the registry when they changed since they were last written (one
        meta row; the end of every pass calls this). A plan whose job or head has gone meanwhile
        is dropped by the rule that reads it, after a restart as before one."""
        plans = self._plans()
        if plans != self._saved_plans:
            self.ctx.store.set_meta(PLANS_KEY, plans)
            self._saved_plans = plans

    def _plans(self) -> dict[str, Any]:
        """The plans as JSON (lists, so that they compare equal to what the registry gives back)."""
        return {"planned": {j: [p.head, p.at] for j, p in self.planned.items()},
                "resizing": {j: list(r) for j, r in self.resizing.items()},
                "loans": {j: [loan.head, loan.at, loan.to_workers, attempt]
                          for j, (loan, attempt) in self.loans.items()}}

    def _load_plans(self) -> None:
        saved = self.ctx.store.get_meta(PLANS_KEY) or {}
        self.planned = {j: backfill.PlannedPause(j, head, at) for j, (head, at) in saved.get("planned", {}).items()}
        self.resizing = {j: Resizing(*r) for j, r in saved.get("resizing", {}).items()}
        self.loans = {j: (elastic.Loan(head, at, to), attempt)
                      for j, (head, at, to, attempt) in saved.get("loans", {}).items()}
        self._saved_plans = self._plans()

    def record(self, key: tuple[str, int], accelerator_type: str | None, worker: Resources,
               placement: Sequence[int] | None, node_ids: Sequence[str] | None) -> None:
        """Remember where admission put an attempt (``placement`` in ``node_ids`` order)."""
        nodes = None if placement is None or node_ids is None else \
            {n: k for n, k in zip(node_ids, placement, strict=True) if k}
        self.placed[key] = Placed(accelerator_type, dict(worker), nodes)

    def placed_of(self, key: tuple[str, int]) -> Placed:
        """Where an attempt runs as far as the core knows; after a restart its type comes from its
        stored attempt and its nodes are unknown."""
        found = self.placed.get(key)
        if found is None:
            stored = self.ctx.store.get_attempt(*key)
            t = stored.accelerator_type if stored is not None else None
            found = self.placed[key] = Placed(t, accelerators.typed(self.writer.spec_of(key[0]).worker_resources(), t))
        return found

    def _forget_released(self) -> None:
        now = self.ctx.clock()
        for key in [k for k in self.placed if k not in self.writer.held]:
            placed = self.placed.pop(key)
            if placed.nodes:
                self.settling[key] = (placed, now)
        for key in [k for k, (_, at) in self.settling.items() if now - at > SETTLE_S]:
            del self.settling[key]

    def settling_room(self) -> list[preemption.Candidate]:
        """Attempts released in the last ``SETTLE_S``, as stopping holders of room on their nodes
        only (trainq's totals already count it free): making room counts it as on its way rather
        than pausing another job while Ray's per-node view still shows it taken."""
        self._forget_released()
        return [preemption.Candidate(job_id=key[0], priority=0, demand={}, attempt_started_at=at, stopping=True,
                                     preemptible=False, worker=placed.worker, nodes=placed.nodes)
                for key, (placed, at) in self.settling.items()]

    def free(self) -> Resources:
        """The cluster's resources less what trainq has handed out."""
        return policy.subtract(self.ctx.cluster.capacity(), *self.writer.allocated)

    def order(self, now: float, capacity: Resources) -> Iterable[Entry]:
        """The queue in admission order: fair order within a priority with a users file, else the
        plain order, lazily (a pass then reads only the jobs it starts)."""
        users = self.ctx.users
        if users is None:
            return self.writer.queue.in_order()
        # Lazy all the way: a pass that starts k jobs pays for k of them (plus one grouping walk).
        return fairshare.fair_iter(list(self.writer.queue.in_order()), self.writer.owners,
                                   self.usage.ledger.snapshot(now), PerUser(users.weight),
                                   self.usage.share_base(capacity), expected_s=PerUser(self._time_limit))

    def _time_limit(self, job_id: str) -> float | None:
        return self.writer.spec_of(job_id).time_limit_s

    def quotas(self) -> Mapping[str, quota.Quota]:
        """Every owner's quota (a user missing from it is unlimited: so with no users file, all)."""
        users = self.ctx.users
        return {} if users is None else PerUser(users.quota)

    def used_by_user(self) -> dict[str, Resources]:
        """What each owner's attempts hold now (attempts still releasing included)."""
        owners = self.writer.owners
        return quota.usage_by_user(
            (owners.get(key[0], ""), accelerators.per_type(demand, self.placed_of(key).accelerator_type))
            for key, demand in self.writer.held.items())

    def borrowing(self) -> set[str]:
        """The live jobs whose attempt runs beyond its owner's guarantee now (``quota.beyond_guarantee``:
        attempts counted in the order they started, those still releasing first)."""
        if self.ctx.users is None:
            return set()
        owners, live, held = self.writer.owners, self.writer.live, self.writer.held

        def current(key: tuple[str, int]) -> Job | None:
            job = live.get(key[0])
            return job if job is not None and job.attempt == key[1] else None

        def age(key: tuple[str, int]) -> tuple[bool, float, tuple[str, int]]:
            job = current(key)
            return job is not None, 0.0 if job is None else self.attempts.started_at(job), key

        beyond = quota.beyond_guarantee(((key, owners.get(key[0], ""), accelerators.per_type(
            held[key], self.placed_of(key).accelerator_type)) for key in sorted(held, key=age)), self.quotas())
        return {key[0] for key in beyond if current(key) is not None}

    def nodes_free(self) -> list[Resources] | None:
        """Free resources per node, less what pending jobs will take once Ray places them."""
        nodes = self.nodes_by_id()
        return None if nodes is None else list(nodes.values())

    def nodes_by_id(self) -> dict[str, Resources] | None:
        """``nodes_free`` by node id: pending gangs taken where admission put them (else where they fit)."""
        self._forget_released()
        by_id = self.ctx.cluster.nodes_free_by_id()
        if by_id is None:
            return None
        for job_id, attempt in self.writer.held:
            job = self.writer.live.get(job_id)
            if job is None or job.status is not S.PENDING or job.attempt != attempt:
                continue
            # Conservative: Ray may have placed it already, and then it is counted twice for a moment.
            placed = self.placed_of((job_id, attempt))
            if placed.nodes is not None and set(placed.nodes) <= set(by_id):
                for node_id, count in placed.nodes.items():
                    by_id[node_id] = policy.subtract(by_id[node_id], {k: v * count for k, v in placed.worker.items()})
                continue
            spec, nodes = self.writer.spec(job), list(by_id.values())
            guess = policy.place_gang(placed.worker, job.workers or spec.min_workers, nodes, spec.placement_strategy)
            if guess is not None:
                policy.placement.take(nodes, placed.worker, guess)
        return by_id

    def holders(self, now: float) -> list[preemption.Candidate]:
        """Every attempt holding resources, as the preemption policy sees it."""
        settings = self.ctx.settings
        holders = []
        for (job_id, attempt), demand in self.writer.held.items():
            job = self.writer.live.get(job_id) or self.writer.find(job_id)
            if job is None:
                continue
            current = job.attempt == attempt and job.status in ACTIVE
            spec = self.writer.spec(job)
            placed = self.placed_of((job_id, attempt))
            holders.append(preemption.Candidate(
                job_id=job_id, priority=job.priority, demand=demand, worker=placed.worker, nodes=placed.nodes,
                attempt_started_at=self.attempts.started_at(job),
                running_since=self.attempts.running_since(job, now),
                stopping=not current or job.status is S.PAUSING,
                preemptible=spec.preemptible and current and job.status is S.RUNNING,
                min_runtime_s=settings.min_runtime_s if spec.min_runtime_s is None else spec.min_runtime_s,
                last_checkpoint_at=self.checkpoints.last_at(job), resumable=job.resumable))
        return holders

    def releases(self, now: float) -> list[backfill.Holder]:
        """Every attempt holding resources, with when it is expected to release them."""
        return [backfill.Holder(r.job_id, r.demand, r.end_at, backfilled=spare)
                for r, spare in self.running_ends(now)]

    def running_ends(self, now: float, by_rate: bool = False) -> list[tuple[pending.RunningEnd, bool]]:
        """Every attempt holding resources: its expected release (and what that rests on), and
        whether it started as ``spare`` backfill. ``by_rate``: also from its steps to go at its
        recent step rate (for ETAs; backfill counts on time limits only, which are promises)."""
        grace_s = self.ctx.settings.preempt_grace_s
        out: list[tuple[pending.RunningEnd, bool]] = []
        for (job_id, attempt), demand in self.writer.held.items():
            job = self.writer.live.get(job_id)
            end = pending.EndEstimate(None, "releasing")
            if job is not None and job.attempt == attempt:
                if job.status is S.PAUSING:
                    end = pending.EndEstimate(job.expected_paused_by, "pausing at its next checkpoint")
                elif job_id in self.planned:
                    at = self.planned[job_id].at + grace_s + STOP_MARGIN_S
                    end = pending.EndEstimate(at, "backfilled: paused before the head it runs beside")
                else:
                    end = self._end_estimate(job, now, by_rate and job.status is S.RUNNING)
                    demand = self._lent_part(job, demand, out)
            out.append((pending.RunningEnd(job_id, demand, end.end_at, end.basis),
                        job is not None and job.backfill == "spare"))
        return out

    def _lent_part(self, job: Job, demand: Resources, out: list[tuple[pending.RunningEnd, bool]]) -> Resources:
        """A running job's loan comes back at its time (plus the pause's bound): counted apart in
        ``out``; returns the rest of ``demand``, which it holds until its own end."""
        loan, attempt = self.loans.get(job.job_id, (None, 0))
        workers = job.workers or 0
        if loan is None or attempt != job.attempt or workers <= loan.to_workers:
            return demand
        lent = {k: v * (workers - loan.to_workers) / workers for k, v in demand.items()}
        at = loan.at + self.ctx.settings.preempt_grace_s + STOP_MARGIN_S
        out.append((pending.RunningEnd(job.job_id, lent, at, f"lent by {loan.head}: given back before it may start"),
                    False))
        return policy.subtract(demand, lent)

    def _end_estimate(self, job: Job, now: float, by_rate: bool = False) -> pending.EndEstimate:
        spec = self.writer.spec(job)
        total = total_steps_of(spec.config) if by_rate else None
        step = rate = None
        if total is not None:
            recent = [(r.at, s) for r in self.ctx.store.last_reports(job.job_id, job.attempt, 20)
                      if (s := step_of(r.metrics)) is not None]
            rate = pending.step_rate(recent)
            step = recent[-1][1] if recent else None
        return pending.estimate_end(now, self.attempts.started_at(job), time_limit_s=spec.time_limit_s,
                                    total_steps=total, step=step, rate=rate)

    def attained(self, job_id: str, capacity: Resources, now: float) -> float:
        """Service a job has had over all its attempts: dominant share × seconds."""
        spec = self.writer.spec_of(job_id)
        # Each attempt at the size it ran with: an elastic job that ran wide has had that much more.
        return sum(fairshare.resource_seconds(spec.demand(a.workers or spec.min_workers),
                                              max(0.0, (a.ended_at or now) - a.started_at), capacity)
                   for a in self.ctx.store.attempts(job_id))


class PerUser(Mapping[str, Any]):
    """A mapping computed per key on first use (every user of a users file has a quota); a key
    whose value computes to None is missing (``get`` gives the default)."""

    def __init__(self, compute: Callable[[str], Any]) -> None:
        self._compute: Callable[[str], Any] = compute
        self._seen: dict[str, Any] = {}

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

    def __bool__(self) -> bool:
        # Never empty, though ``len`` counts only the keys computed so far: a fresh one is falsy by
        # ``__len__``, and a policy's ``quotas or {}`` then dropped every quota (grows past a max).
        return True
