"""One scheduling pass: look at the snapshot, ask the policies for typed actions, apply them.

The order of a pass (docs/fairness.md, "The order of one scheduling pass"): hold the jobs whose
dependencies are unmet or whose sweep is at its limit, and cancel those whose dependencies never
can be (``policy.dependencies``); admit in fair order within quotas; pause the backfilled jobs
whose head's turn has come, and shrink back the elastic jobs whose loan from a waiting head is due
(``core.resizing.give_backs``); make room for a blocked head (``core.room``: elastic jobs give up
workers above their fewest before any job is paused whole); backfill around it what cannot delay
it; rotate out jobs whose time slice is over; grow elastic jobs into room nothing queued can use
(``core.resizing``); ask the autoscaler for what the head still lacks. Each stage decides on the
state the stages before it left (a start changes what is free), and ``Pass.apply`` is the one
place its actions are carried out.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from .. import policy
from ..config import train_run_name
from ..jobs import Attempt, iso
from ..policy import Entry, Resources, accelerators, admission, backfill, elastic, failure, quota, timeslice
from ..states import ACTIVE, JobStatus
from . import resizing, room
from .actions import Action, AskCapacity, CancelUnmet, Hold, MakeWay, MarkBorrowing, Resize, Start, Why
from .attempts import Attempts
from .dependencies import Dependencies
from .snapshot import STOP_MARGIN_S, Snapshot
from .writer import Writer

S = JobStatus
#: How many queued jobs behind the head backfill and time slicing look at (Slurm's bf_max_job_test).
BACKFILL_DEPTH = 500


class Pass:
    """Runs scheduling passes over the writer's state."""

    def __init__(self, writer: Writer, attempts: Attempts, snapshot: Snapshot, dependencies: Dependencies) -> None:
        self.writer = writer
        self.dependencies = dependencies
        self.ctx = writer.ctx
        self.attempts = attempts
        self.snapshot = snapshot
        self._requested: list[Resources] | None = None

    def run(self) -> list[str]:
        """One pass; returns the jobs started."""
        if self.attempts.shutting_down:
            return []
        snap, settings, queue = self.snapshot, self.ctx.settings, self.writer.queue
        now = self.ctx.clock()
        capacity = self.ctx.cluster.capacity()
        quotas = snap.quotas()
        holds = self.holds()
        self.apply(holds)
        while any(isinstance(a, CancelUnmet) for a in holds):  # a cancel decides its own dependents
            holds = self.holds()
            self.apply(holds)
        adm, ids = self.admission(now, capacity)
        started = self.apply([Start(a.job_id, a.borrowing, None, a.accelerator_type, a.placement, ids, a.workers)
                              for a in adm.start])
        if resizing.waits_on(self, started):  # a shrunk job waited for one of these to start first
            self.apply(self.holds())
            adm, ids = self.admission(now, capacity)
            started += self.apply([Start(a.job_id, a.borrowing, None, a.accelerator_type, a.placement, ids,
                                         a.workers) for a in adm.start])
        head = adm.head if adm.head is not None and adm.head.job_id in queue else None
        self.apply(self.borrowing())
        self.apply(self._planned_due(now))
        self.apply(resizing.give_backs(self, now))
        # Blocked on the totals, or on the nodes (its types, its strategy): room may be made for it.
        if head is not None and accelerators.choose(head, snap.free(), snap.nodes_free()) is None:
            self.apply(self.make_room(head, capacity, now, set(adm.held)))
            if settings.backfill:
                started += self.apply(self._backfills(head, capacity, now, quotas, set(adm.held)))
        if settings.time_slice_s > 0:
            self.apply(self._rotations(capacity, now, set(adm.held), head))
        head = head if head is not None and head.job_id in queue else None
        self.apply(resizing.grows(self, head, now, quotas))
        # The ask names the head's first type, so an autoscaler adds a node of that type.
        wanted = [{**head.demand, **accelerators.typed({}, head.types[0] if head.types else None)}] \
            if head is not None and not policy.fits(head.demand, snap.free()) else None
        if wanted != self._requested:  # ask the autoscaler only when the ask changes
            self._requested = wanted
            self.apply([AskCapacity(wanted or [])])
        snap.save_plans()
        return started

    # -- decisions the dry run asks too (``core.dryrun``): one rule, decided once --------------------
    def holds(self) -> list[Action]:
        """Hold the queued jobs whose dependencies are unmet or whose sweep is at its limit, let the
        others go, and cancel those whose dependencies can never be met (``policy.dependencies``)."""
        decision = self.dependencies.decide()
        out: list[Action] = [CancelUnmet(j, why) for j, why in decision.cancel.items()]
        out += [Hold(j, decision.held.get(j)) for j in sorted(self.writer.conditional) if j not in decision.cancel]
        # A job back from a resize that its dependency or sweep holds waits for that rule (the
        # resize's own hold, decided beside it, must not let it go in the same pass).
        return out + [h for h in resizing.holds(self, self.ctx.clock())
                      if h.job_id not in decision.held and h.job_id not in decision.cancel]

    def admission(self, now: float, capacity: Resources) -> tuple[admission.Admission, list[str] | None]:
        """Who starts now, in admission order within quotas; and the node ids placements refer to."""
        snap = self.snapshot
        by_id = snap.nodes_by_id()
        # A reclaim holds its room for the job while it is on its way: until the job starts or leaves
        # the queue, or its victims and the other stopped runs it counted on (a time limit's, a
        # cancel's) have released their workers and the room still does not hold it.
        stopping = self._making_room_for() if snap.reclaims else set()
        releasing = policy.add({}, *(h.demand for h in snap.holders(now) if h.stopping)) if snap.reclaims else {}
        for job_id, entry in list(snap.reclaims.items()):
            coming = job_id in stopping or (releasing and policy.fits(entry.demand, policy.add(snap.free(), releasing)))
            if job_id not in self.writer.queue or (not coming and accelerators.choose(
                    entry, snap.free(), snap.nodes_free()) is None):
                del snap.reclaims[job_id]
        adm = admission.admit_with_quotas(snap.order(now, capacity), snap.free(), now, owners=self.writer.owners,
                                          used=snap.used_by_user(), quotas=snap.quotas(),
                                          nodes_free=None if by_id is None else list(by_id.values()),
                                          reclaimed_for=snap.reclaims)
        return adm, None if by_id is None else list(by_id)

    def _making_room_for(self) -> set[str]:
        """The jobs room is on its way for: victims still pausing for them, or stopped and still
        releasing (a run stopped at its pause deadline is requeued at once, and frees its workers
        only when it exits)."""
        out = set()
        for job_id, attempt in self.writer.held:
            job = self.writer.live.get(job_id) or self.writer.find(job_id)
            if job is not None and job.preempted_by and (
                    job.status is S.PAUSING or job.status not in ACTIVE or job.attempt != attempt):
                out.add(job.preempted_by)
        return out

    def borrowing(self) -> list[Action]:
        """Active jobs whose ``borrowing`` mark no longer matches their owner's usage: reclaims and
        pre-emptions read it, so a job an older one pushed beyond the guarantee is within it once
        that one ends."""
        beyond = self.snapshot.borrowing()
        return [MarkBorrowing(j.job_id, j.job_id in beyond) for j in self.writer.live.values()
                if j.borrowing != (j.job_id in beyond)]

    def make_room(self, head: Entry, capacity: Resources, now: float, held: set[str]) -> list[Action]:
        """What to pause or shrink so that a blocked head can start (``core.room``); ``held``:
        the jobs admission held for their owner's quota, which pause nobody."""
        return room.make_room(self, head, capacity, now, held)

    # -- the one place actions are carried out ----------------------------------------------------
    def apply(self, actions: Sequence[Action]) -> list[str]:
        """Carry out a stage's actions, in order; returns the jobs started."""
        started = []
        for action in actions:
            if isinstance(action, Start):
                if self._start(action):
                    started.append(action.job_id)
            elif isinstance(action, MakeWay):
                self._make_way(action)
            elif isinstance(action, Resize):
                resizing.begin(self, action)
            elif isinstance(action, Hold):
                self.writer.set_held(action.job_id, action.held, action.max_workers, action.resized)
            elif isinstance(action, MarkBorrowing):
                self.writer.update(self.writer.job(action.job_id), borrowing=action.borrowing)
            elif isinstance(action, CancelUnmet):
                self.writer.transition(self.writer.job(action.job_id), S.CANCELLED, "cancel", action.reason,
                                       finished_at=self.ctx.clock(), error=action.reason)
            else:
                self.ctx.cluster.request(action.bundles)
        return started

    def _start(self, action: Start) -> bool:
        """queued -> pending: a new attempt, launched; False when the launch failed at once."""
        now = self.ctx.clock()
        job = self.writer.job(action.job_id)
        attempt_no = job.attempt + 1
        how = action.backfill
        on = f" on {action.accelerator_type}" if action.accelerator_type else ""
        reason = f"admitted as attempt {attempt_no}{on}" + (f" (backfill: {how})" if how else "") \
            + (" borrowing idle capacity beyond its owner's guarantee" if action.borrowing else "")
        spec = self.writer.spec(job)
        workers = action.workers or spec.min_workers
        if spec.elastic:
            reason += f" with {workers} of {spec.min_workers}-{spec.max_workers} workers"
        job = self.writer.transition(job, S.PENDING, "start", reason, attempt=attempt_no, started_at=now,
                                     not_before=None, borrowing=action.borrowing, backfill=how, workers=workers)
        attempt = Attempt(job.job_id, attempt_no, now, resumed_from=job.resume_from,
                          run_name=train_run_name(job.name, job.job_id, attempt_no),
                          accelerator_type=action.accelerator_type, workers=workers)
        self.ctx.store.save_attempt(attempt)
        # For the metrics (attempts started per accelerator type) and the event stream.
        self.writer.notify({"type": "start", "job_id": job.job_id, "attempt": attempt_no,
                            "accelerator_type": action.accelerator_type, "at": iso(now)})
        self.snapshot.record((job.job_id, attempt_no), action.accelerator_type,
                             accelerators.typed(spec.worker_resources(), action.accelerator_type),
                             action.placement, action.node_ids)
        if action.accelerator_type:  # the runner gives Ray Train the one type this attempt got
            job = dataclasses.replace(job, spec={**job.spec, "accelerator_type": action.accelerator_type})
        if spec.elastic:  # and the one size
            job = dataclasses.replace(job, spec={**job.spec, "num_workers": workers})
        try:
            self.ctx.launcher.launch(job, attempt, self.writer.job_root(job))
        except Exception as e:  # noqa: BLE001 - a launch that cannot even start fails the job, loudly
            self.attempts.launch_failed(job.job_id, attempt_no, f"{type(e).__name__}: {e}")
            return False
        return True

    def _make_way(self, action: MakeWay) -> None:
        """Pause a running job at its next checkpoint, within the preemption grace, for another."""
        now, grace_s = self.ctx.clock(), self.ctx.settings.preempt_grace_s
        job = self.writer.job(action.job_id)
        plan = self.attempts.plan_pause(job, now, cap_s=grace_s)
        for_job = action.for_job
        event: dict[str, object]
        if action.why is Why.TIME_SLICE:
            intent = failure.ROTATE
            reason = (f"time slice of {self.ctx.settings.time_slice_s:g}s over; making way for {for_job};"
                      f" pausing at its next checkpoint ({plan.message})")
            event = {"time_slice": True}
        elif action.why is Why.BACKFILL:
            intent = failure.PREEMPT
            reason = (f"preempted by {for_job}: it was backfilled on the condition that it makes way before"
                      f" {for_job} may start; pausing at its next checkpoint ({plan.message})")
            event = {"backfill": True}
        else:
            intent = failure.PREEMPT
            why = (f"its owner's guarantee is reclaimed for {for_job} (this job borrows idle capacity)"
                   if action.why is Why.RECLAIM else action.detail)
            reason = f"preempted by {for_job} ({why}); pausing at its next checkpoint ({plan.message})"
            event = {"expected_lost_work_s": action.expected_lost_work_s}
        self.attempts.begin_pause(job, plan, intent, reason, preempted_by=for_job, preemptions=job.preemptions + 1)
        self.writer.notify({"type": "preemption", "job_id": job.job_id, "preempted_by": for_job, **event,
                            "at": iso(now)})

    # -- the stages: each decides, ``apply`` acts ---------------------------------------------------
    def _planned_due(self, now: float) -> list[Action]:
        """The ``preemptible`` backfills whose time has come (their head still waits); plans whose
        head has gone are forgotten."""
        planned = self.snapshot.planned
        if not planned:
            return []
        due = backfill.due_preemptions(list(planned.values()), self.writer.queue, now)
        for job_id in due.dropped:
            planned.pop(job_id, None)
        out: list[Action] = []
        for job_id in due.due:
            job = self.writer.live.get(job_id)
            if job is None or job.status is S.PAUSING:
                planned.pop(job_id, None)
                continue
            if job.status is not S.RUNNING:
                continue  # still starting: paused once it runs (its pause time counts from then)
            out.append(MakeWay(job_id, planned.pop(job_id).head, Why.BACKFILL))
        return out

    def _backfills(self, head: Entry, capacity: Resources, now: float, quotas: Mapping[str, quota.Quota],
                   held: set[str]) -> list[Action]:
        """Jobs behind the blocked head that cannot delay it (``policy.backfill``)."""
        snap = self.snapshot
        free = snap.free()
        if not any(amount > 1e-9 for amount in free.values()):
            return []  # nothing is free: nothing can start now (the common case of a full cluster)
        holders = snap.releases(now)
        reservation = backfill.reserve(head.job_id, head.demand, free, holders, now)
        if reservation.earliest_at is None or (reservation.earliest_at <= now and not reservation.spare):
            return []  # the head might start any moment (a running job's end is unknown): nothing may go first
        rest = [e for e in itertools.islice(snap.order(now, capacity), BACKFILL_DEPTH) if e.job_id not in held]
        at = next((i for i, e in enumerate(rest) if e.job_id == head.job_id), None)
        if at is None or at + 1 >= len(rest):
            return []
        rest = rest[at:]  # jobs ahead of the head are in their backoff: not ready, they keep their place
        spec_of = self.writer.spec_of
        run_s = {e.job_id: t for e in rest if (t := spec_of(e.job_id).time_limit_s) is not None}
        # A preemption's pause is stopped at its grace at the latest, so that bounds the pause.
        pause_s = self.ctx.settings.preempt_grace_s + STOP_MARGIN_S
        # A job known to ignore its checkpoint would start over after that pause: all its work lost.
        blind = self.writer.ignores_checkpoint
        preemptible = {e.job_id: pause_s for e in rest if spec_of(e.job_id).preemptible and e.job_id not in blind}
        plan = backfill.plan_backfill(rest, free, holders, now, run_s=run_s, preemptible=preemptible)
        by_id = snap.nodes_by_id()
        ids = None if by_id is None else list(by_id)
        walk = admission.Walk(free, None if by_id is None else list(by_id.values()), snap.used_by_user(),
                              self.writer.owners, quotas)
        out: list[Action] = []
        entries = {e.job_id: e for e in rest}
        later = policy.add({}, *(entries[b.job_id].demand for b in plan.start))
        for b in plan.start:
            entry = entries[b.job_id]
            later = policy.subtract(later, entry.demand)
            verdicts: dict[str | None, quota.QuotaCheck] = {}
            within = walk.within(b.job_id, verdicts)
            workers = None
            if entry.max_workers is None or b.why == backfill.SPARE:
                choice = accelerators.choose(entry, walk.left, walk.nodes, within)
            else:
                # Out of the head's way by its earliest start at any size (it ends or is paused by
                # then), so an elastic job takes what is free once the jobs backfilled after it
                # have their fewest workers, as admission's start size does.
                sized = elastic.start_size(entry, entry.num_workers, entry.max_workers, walk.left, walk.nodes,
                                           keep=later, allowed=within)
                choice, workers = (sized.choice, sized.workers) if sized is not None else (None, None)
            if choice is None:
                continue
            walk.take(b.job_id, choice)
            out.append(Start(b.job_id, verdicts[choice.accelerator_type].status == quota.BORROWING, b.why,
                             choice.accelerator_type, choice.placement, ids, workers))
            if b.why == backfill.PREEMPTIBLE and b.preempt_at is not None:
                snap.planned[b.job_id] = backfill.PlannedPause(b.job_id, head.job_id, b.preempt_at)
        return out

    def _rotations(self, capacity: Resources, now: float, held: set[str], head: Entry | None) -> list[Action]:
        """Time slicing: running jobs whose slice is over, to pause (at a checkpoint) for waiting ones
        that would then start: in admission order up to the blocked ``head`` (the jobs behind it wait
        for it), not one admission ``held`` for its owner's quota, and only jobs whose places hold
        its gang on the nodes (``_holds``). Else the job rotated out starts again in its place
        (backfilled, or in its turn), to be rotated out again at its next slice, for ever."""
        snap = self.snapshot
        waiting = []
        for e in itertools.islice(snap.order(now, capacity), BACKFILL_DEPTH):
            if policy.ready(e, now) and e.job_id not in held:
                waiting.append(e)
                if head is not None and e.job_id == head.job_id:
                    break
        if not waiting:
            return []
        running = []
        for job in self.writer.live.values():
            if job.status is S.RUNNING:
                spec = self.writer.spec(job)
                running.append(timeslice.Sliced(job.job_id, job.priority, spec.demand(job.workers),
                                                self.attempts.running_since(job, now),
                                                snap.attained(job.job_id, capacity, now), spec.preemptible,
                                                resumable=job.resumable))
        attained = {e.job_id: snap.attained(e.job_id, capacity, now) for e in waiting}
        # Room on its way (a pause or a shrink this pass or an earlier one asked for) is counted as
        # free: the waiting job it is for is not given a second job's place as well.
        free = policy.add(snap.free(), *(h.demand for h in snap.holders(now) if h.stopping))
        rotations = timeslice.rotate_out(waiting, attained, running, free, now, self.ctx.settings.time_slice_s,
                                         self._holds(now))
        return [MakeWay(r.job_id, r.for_jobs[0] if r.for_jobs else None, Why.TIME_SLICE) for r in rotations]

    def _holds(self, now: float) -> timeslice.Holds | None:
        """Whether running jobs' places, where admission put them, with what is free, hold a
        waiting job's gang on the nodes (its types, its strategy); None when nodes are unknown
        (the totals decide), and True for a job whose place is unknown."""
        snap = self.snapshot
        nodes = snap.nodes_by_id()
        if nodes is None:
            return None
        placed = {h.job_id: h for h in snap.holders(now) if not h.stopping}
        free = snap.free()

        def holds(entry: Entry, chosen: Sequence[timeslice.Sliced]) -> bool:
            trial, room = {n: dict(r) for n, r in nodes.items()}, free
            for r in chosen:
                h = placed.get(r.job_id)
                if h is None or h.nodes is None:
                    return True  # where it runs is unknown: the totals decide
                room = policy.add(room, h.demand)
                for node_id, k in h.nodes.items():
                    if node_id in trial:
                        trial[node_id] = policy.add(trial[node_id], {x: v * k for x, v in h.worker.items()})
            return accelerators.choose(entry, room, list(trial.values())) is not None

        return holds
