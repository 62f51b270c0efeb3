"""Elastic jobs in a scheduling pass: their sizes, when they grow, and shrinks before pauses.

``policy.elastic`` decides; this module reads the pass's state for it and carries out a
``Resize``. A resize is a pause at the job's next checkpoint (at once with the cooperative hook)
with the intent ``resize``: the job goes back to the queue in its place and admission starts it
again from that checkpoint with as many workers as fit (``elastic.start_size``). Each attempt has
one fixed size; trainq, not Ray Train's elastic policy, chooses it (docs/design.md, "Why trainq
decides the size").
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..jobs import iso
from ..policy import Entry, Resources, admission, backfill, elastic, failure, preemption, quota
from ..states import JobStatus
from .actions import Hold, Resize
from .snapshot import STOP_MARGIN_S, Resizing, Snapshot

if TYPE_CHECKING:
    from .scheduling import Pass
    from .writer import Writer

S = JobStatus


def sizes(writer: Writer, snapshot: Snapshot) -> dict[str, elastic.Elastic]:
    """The size of every elastic job holding resources (starting, running or pausing)."""
    out = {}
    for job in writer.live.values():
        spec = writer.spec(job)
        if spec.elastic and job.status in (S.PENDING, S.RUNNING, S.PAUSING):
            placed = snapshot.placed_of((job.job_id, job.attempt))
            out[job.job_id] = elastic.Elastic(job.workers or spec.min_workers, spec.min_workers, spec.max_workers,
                                              spec.placement_strategy, placed.accelerator_type)
    return out


def room_for(entry: Entry, holders: Sequence[preemption.Candidate], sized: Mapping[str, elastic.Elastic],
             free: Resources, capacity: Resources, now: float, nodes: Mapping[str, Resources] | None,
             lent_after_s: float | None = None) -> tuple[list[elastic.Shrink], preemption.Preemption | None]:
    """What makes room for ``entry``: elastic jobs' workers above their fewest first, whole jobs
    only when those are not enough (``elastic.plan_shrink``); plain preemption without elastic jobs.

    ``lent_after_s`` (the resize interval): workers an elastic job of the entry's own priority grew
    into count as lent once its attempt has run that long, and are taken back by shrinks (whole
    jobs are paused only for strictly higher priorities): a grow is a loan of idle room, not a
    claim on it.
    """
    if not any(s.workers > s.min_workers for s in sized.values()):
        return [], preemption.choose_victims(entry.job_id, entry.priority, entry.demand, holders, free, capacity,
                                             now, gang=entry, nodes=nodes)
    plan = elastic.plan_shrink(entry, holders, sized, free, capacity, now, nodes=nodes, reclaim_after_s=lent_after_s)
    return ([], None) if plan is None else (plan.shrinks, plan.preemption)


def grows(p: Pass, head: Entry | None, now: float, quotas: Mapping[str, quota.Quota]) -> list[Resize]:
    """Running elastic jobs to grow into room nothing queued can use (``elastic.plan_grow``): never
    what a job in its requeue backoff will need, and not within ``TRAINQ_RESIZE_MIN_INTERVAL_S`` of
    a job's start.

    While a job that could start waits (``head``), only jobs ahead of it in admission order grow: a
    job behind it would relaunch behind it, and wait for it. They grow into what the head's
    reservation leaves spare, and borrow what the head cannot use before its earliest start, given
    back in time (``give_backs``). Both count on running jobs' time limits, as backfill does: with
    an end unknown, the head might start any moment and nothing grows while it waits.
    """
    sized = sizes(p.writer, p.snapshot)
    if not any(s.workers < s.max_workers for s in sized.values()):
        return []
    snap, settings = p.snapshot, p.ctx.settings
    free = snap.free()
    reservation, lenders, reclaimer = None, set(), None
    if head is not None:
        lenders = {job_id for job_id in sized if _ahead(p, job_id, head)}
        if not lenders:
            return []
        reservation = backfill.reserve(head.job_id, head.demand, free, snap.releases(now), now)
        owner = p.writer.owners.get(head.job_id, "")
        if p.ctx.users is not None and quota.within_guarantee(
                head.demand, snap.used_by_user().get(owner, {}), quotas[owner], head.types):
            reclaimer = owner
    keep: Resources = {}
    for entry in itertools.islice(p.writer.queue.in_order(), 500):  # jobs waiting out a backoff keep their room
        if entry.not_before is not None and entry.not_before > now:
            keep = {k: keep.get(k, 0.0) + entry.demand.get(k, 0.0) for k in {*keep, *entry.demand}}
    plans = elastic.plan_grow(snap.holders(now), sized, free, now, min_interval_s=settings.resize_min_interval_s,
                              waiting=head is not None, reservation=reservation, lenders=lenders,
                              give_back_s=settings.preempt_grace_s + STOP_MARGIN_S, keep=keep,
                              nodes=snap.nodes_by_id(), owners=p.writer.owners, used=snap.used_by_user(),
                              quotas=quotas, reclaimer=reclaimer)
    return [Resize(g.job_id, g.to_workers, loan=g.loan) for g in plans]


def _ahead(p: Pass, job_id: str, head: Entry) -> bool:
    """Whether ``job_id``, requeued now, comes before ``head`` in admission order. A users file
    orders a priority's jobs by their owners' usage: there only the head owner's own earlier jobs."""
    job = p.writer.live[job_id]
    if job.priority != head.priority:
        return job.priority > head.priority
    owners = p.writer.owners
    return job.seq < head.seq and (p.ctx.users is None or owners.get(job_id) == owners.get(head.job_id))


def give_backs(p: Pass, now: float) -> list[Resize]:
    """Loans due while their head still waits: shrink back to the size before the loan. A loan
    whose head no longer waits, or whose attempt has ended, is forgotten: its workers are then an
    ordinary grow's (a job of their priority may take them back once they are lent long enough)."""
    out = []
    for job_id, (loan, attempt) in list(p.snapshot.loans.items()):
        job = p.writer.live.get(job_id)  # active jobs only: None while it is queued between attempts
        if loan.head not in p.writer.queue or (job is None and job_id not in p.writer.queue) \
                or (job is not None and job.attempt > attempt):
            p.snapshot.loans.pop(job_id)
        elif job is not None and job.attempt == attempt and job.status is S.RUNNING and loan.at <= now:
            if (job.workers or 0) > loan.to_workers:
                out.append(Resize(job_id, loan.to_workers, repays=loan.head))
            else:  # it started again smaller than planned: nothing is lent
                p.snapshot.loans.pop(job_id)
    return out


#: how long a job relaunching after a resize waits for the room of its new size before it starts
#: with what fits: its previous attempt releases its workers, and Ray's view of the nodes catches up
RESIZE_WAIT_S = 30.0
RESIZING = "resizing"


def holds(p: Pass, now: float) -> list[Hold]:
    """Hold a job relaunching after a resize (it keeps its place, holding up nobody) until the room
    of its new size is free, so that it does not start again smaller than planned (a grow, or a
    shrink by one after the job it made way for has started); after ``RESIZE_WAIT_S`` it starts
    with what fits (counted from its return to the queue: a pause may take minutes, and a run
    stopped at its pause deadline is still releasing its workers then). Only a job it made room
    for, ahead of it in the queue, starts first.

    Decides only (the dry run asks it too): the one thing it changes is the resizes' own records,
    forgetting those of jobs that have started again or gone, and noting when a job came back."""
    out: list[Hold] = []
    growing, snap = p.snapshot.resizing, p.snapshot
    for job_id, resize in list(growing.items()):
        to, for_job, capped, back_at = resize
        job = p.writer.live.get(job_id)
        entry = p.writer.queue.get(job_id)
        if entry is None:
            if job is None or job.status is not S.PAUSING:  # started again, or gone
                growing.pop(job_id)
            continue
        if back_at is None:
            back_at = now
            growing[job_id] = resize._replace(queued_at=now)
        if entry.held is not None and entry.held[0] != RESIZING:
            continue  # a dependency or its sweep holds it: that rule decides
        waited = now - back_at > RESIZE_WAIT_S
        # A shrunk job lets the job it shrank for start first, wherever that job is in the queue:
        # Ray's view of the nodes may not show its room yet, and the two must not split it.
        first = for_job is not None and p.writer.queue.get(for_job) is not None
        by_id = snap.nodes_by_id()
        nodes = None if by_id is None else list(by_id.values())
        # Within its owner's quota too: its previous attempt still counts there while it releases.
        within = admission.Walk(snap.free(), nodes, snap.used_by_user(), p.writer.owners, snap.quotas()).within
        room = not first and entry.max_workers is not None and elastic.start_size(
            dataclasses.replace(entry, held=None), to, entry.max_workers, snap.free(), nodes,
            allowed=within(job_id, {})) is not None
        if waited or room:  # kept until it starts (above): a pass that does not start it holds it again
            # A shrunk job starts again at the size planned, not with all it finds free: the room
            # it gave up is for the job it shrank for, which may be behind it in the queue; a job
            # on a loan takes no more than the loan covers, and one giving it back no more than before.
            cap = to if capped else None
            loan = snap.loans.get(job_id)
            if loan is not None and loan[0].at <= now and loan[0].head in p.writer.queue:
                cap = loan[0].to_workers  # its pause took until the loan was due: it starts without it
            out.append(Hold(job_id, None, cap, resized=True))
        elif first:
            why = f"shrinking to {to} workers: {for_job}, which it makes room for, starts first"
            out.append(Hold(job_id, (RESIZING, why)))
        else:
            why = f"waiting for the room of its resize to {to} workers: its previous attempt is releasing its workers"
            out.append(Hold(job_id, (RESIZING, why)))
    return out


def waits_on(p: Pass, started: Sequence[str]) -> bool:
    """Whether a shrunk job is held until one of ``started`` (the job it shrank for) has started."""
    return any(r.for_job in started for r in p.snapshot.resizing.values())


def begin(p: Pass, action: Resize) -> None:
    """Pause the job at its next checkpoint to start again at ``to_workers`` (a shrink counts as a
    preemption by ``for_job``: its lost work is recorded as one)."""
    now = p.ctx.clock()
    job = p.writer.job(action.job_id)
    if job.status is not S.RUNNING:
        return  # still starting: resized on a later pass, once it runs
    plan = p.attempts.plan_pause(job, now, cap_s=p.ctx.settings.preempt_grace_s)
    workers = job.workers or p.writer.spec(job).min_workers
    changes: dict[str, Any] = {"preempted_by": None}
    loan = action.loan
    if action.repays is not None:
        p.snapshot.loans.pop(job.job_id, None)
        reason = (f"giving back the workers {action.repays} lent it: shrinking from {workers} to {action.to_workers}"
                  f" workers before {action.repays} may start; pausing at its next checkpoint ({plan.message})")
    elif action.for_job is None:
        lent = "" if loan is None else (f" ({action.to_workers - loan.to_workers} of them lent by {loan.head},"
                                        f" which waits, until {iso(loan.at)})")
        reason = (f"growing from {workers} to {action.to_workers} workers into idle capacity{lent}; pausing at its"
                  f" next checkpoint ({plan.message})")
        if loan is not None:
            p.snapshot.loans[job.job_id] = (loan, job.attempt + 1)  # the attempt it relaunches as holds it
    else:
        reason = (f"shrinking from {workers} to {action.to_workers} workers for {action.for_job} ({action.detail});"
                  f" pausing at its next checkpoint ({plan.message})")
        changes = {"preempted_by": action.for_job, "preemptions": job.preemptions + 1}
    capped = action.for_job is not None or loan is not None or action.repays is not None
    p.snapshot.resizing[job.job_id] = Resizing(action.to_workers, action.for_job, capped)
    p.attempts.begin_pause(job, plan, failure.RESIZE, reason, **changes)
    p.writer.notify({"type": "resize", "job_id": job.job_id, "from_workers": workers,
                     "to_workers": action.to_workers, "for_job": action.for_job,
                     "expected_lost_work_s": action.expected_lost_work_s, "at": iso(now),
                     "lent_by": None if loan is None else loan.head, "repays": action.repays})
