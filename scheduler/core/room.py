"""Making room for a blocked head: what a scheduling pass pauses or shrinks so that it can start.

In this order, each by the same victim rules (``policy.preemption``: preemptible, past its
``min_runtime_s``, fewest needed, cheapest expected lost work, node-aware where nodes are known):

- with quotas, other users' jobs borrowing idle capacity, for a head within its owner's
  guarantee (``quota.reclaim_ranked``);
- lower priorities, walking the queue from its head so room promised to one job is not counted
  for the next;
- elastic jobs give up workers above their fewest before any job is paused whole
  (``core.resizing.room_for``), and workers a job of the head's own priority grew into are a loan
  taken back once it has kept them ``lent_after_s``.

Room on its way (jobs pausing, and runs trainq just saw end while Ray's per-node view still shows
them: ``Snapshot.settling_room``) is counted before anyone else is asked to stop.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .. import policy
from ..policy import Entry, Resources, accelerators, quota
from ..states import JobStatus
from . import resizing
from .actions import Action, MakeWay, Resize, Why

if TYPE_CHECKING:
    from .scheduling import Pass

S = JobStatus


def make_room(p: Pass, head: Entry, capacity: Resources, now: float, held: set[str]) -> list[Action]:
    """For a blocked head: other users' borrowing jobs to reclaim, else lower priorities to pause;
    elastic jobs give up workers above their fewest before any job is paused whole, and the
    workers one of the head's own priority grew into once they have been lent long enough.
    ``held``: queued jobs admission held for their owner's quota (its ``max``, or room reclaimed
    for another user): they pause nobody, or a job paused for one would start again in its place
    (its owner's limit, not the room, holds it back) to be paused again, for ever."""
    reclaim = _reclaim_for(p, head, capacity, now)
    if reclaim is not None:
        return reclaim
    return _preemptions(p, capacity, now, held) if _may_preempt(p, now, held) else []


def _reclaim_for(p: Pass, head: Entry, capacity: Resources, now: float) -> list[Action] | None:
    """With quotas: other users' borrowing jobs to shrink or pause for a head within its
    owner's guarantee; None when reclaiming cannot make room (then priorities may)."""
    users, owners = p.ctx.users, p.writer.owners
    if users is None:
        return None
    user = owners.get(head.job_id, "")
    borrowing = {j.job_id: owners.get(j.job_id, "") for j in p.writer.live.values()
                 if j.borrowing and j.status in (S.PENDING, S.RUNNING, S.PAUSING)}
    if not any(owner != user for owner in borrowing.values()):
        return None
    mine = p.snapshot.used_by_user().get(user, {})
    # Only a head within its owner's guarantee reclaims: a borrowing one may pause only by priority,
    # with its limits (``_victims_for``), or it would pause another user's guaranteed job.
    theirs = users.quota(user)
    if not quota.within_guarantee(head.demand, mine, theirs, head.types):
        return None
    holders = quota.reclaim_ranked(head.demand, user, mine, theirs,
                                   p.snapshot.holders(now) + p.snapshot.settling_room(), borrowing, head)
    shrinks, decision = resizing.room_for(head, holders, resizing.sizes(p.writer, p.snapshot), p.snapshot.free(),
                                          capacity, now, p.snapshot.nodes_by_id())
    if decision is None:
        return None

    def why(job_id: str) -> Why:
        return Why.RECLAIM if job_id in borrowing and borrowing[job_id] != user else Why.PRIORITY

    if any(why(j) is Why.RECLAIM for j in [*(s.job_id for s in shrinks), *decision.victims]):
        p.snapshot.reclaims[head.job_id] = head  # other users' borrowers leave it this room

    out: list[Action] = [Resize(s.job_id, s.to_workers, head.job_id, s.expected_lost_work_s,
                                _why_text(p, head, s.job_id, why(s.job_id))) for s in shrinks]
    return out + [MakeWay(v, head.job_id, why(v), decision.lost_work_s.get(v), _priorities(p, head, v))
                  for v in decision.victims]


def _may_preempt(p: Pass, now: float, held: set[str]) -> bool:
    """Whether any queued job outranks a running one (a victim must have a lower priority), or
    may take back workers an elastic job of its priority has been lent: with thousands queued
    behind a full cluster, most passes stop here, reading no job."""
    top = next((e for e in p.writer.queue.in_order() if e.job_id not in held), None)
    if top is None:
        return False
    loan_s = lent_after_s(p)
    for job in p.writer.live.values():
        if job.status is not S.RUNNING or job.priority > top.priority:
            continue
        if job.priority < top.priority:
            return True
        spec = p.writer.spec(job)
        if spec.elastic and (job.workers or spec.min_workers) > spec.min_workers \
                and now - p.attempts.started_at(job) >= loan_s:
            return True
    return False


def _preemptions(p: Pass, capacity: Resources, now: float, held: set[str]) -> list[Action]:
    """Walk the queue from its head and choose what the preemption policy would pause.

    Room already promised to a job ahead (free now, or on its way from stopping jobs) is
    not counted again for the next one; the walk stops at the first job nothing can make
    room for, so jobs behind it wait as the queue order says.
    """
    holders = p.snapshot.holders(now) + p.snapshot.settling_room()
    left = p.snapshot.free()
    nodes = p.snapshot.nodes_by_id()
    sized = resizing.sizes(p.writer, p.snapshot)
    used = p.snapshot.used_by_user() if p.ctx.users is not None else {}
    within = {j.job_id for j in p.writer.live.values() if not j.borrowing}  # their owners' guarantee
    out: list[Action] = []
    for entry in p.writer.queue.in_order():
        if not policy.ready(entry, now) or entry.job_id in held:
            continue
        shrinks, decision = resizing.room_for(entry, _victims_for(p, entry, holders, used, within), sized, left,
                                              capacity, now, nodes, lent_after_s=lent_after_s(p))
        for shrink in shrinks:  # elastic jobs give up workers before any job is paused whole
            out.append(Resize(shrink.job_id, shrink.to_workers, entry.job_id, shrink.expected_lost_work_s,
                              _why_text(p, entry, shrink.job_id, Why.PRIORITY)))
            holders = [dataclasses.replace(h, stopping=True) if h.job_id == shrink.job_id else h for h in holders]
            sized.pop(shrink.job_id, None)
        if decision is None:
            fits_now = accelerators.choose(entry, left, None if nodes is None else list(nodes.values()))
            if fits_now is None:
                break
            if nodes is not None and fits_now.placement is not None:
                policy.placement.take(list(nodes.values()), fits_now.worker, fits_now.placement)
        else:
            for victim_id in decision.victims:
                out.append(MakeWay(victim_id, entry.job_id, Why.PRIORITY, decision.lost_work_s.get(victim_id),
                                   _priorities(p, entry, victim_id)))
                holders = [dataclasses.replace(h, stopping=True) if h.job_id == victim_id else h
                           for h in holders]
            if nodes is not None and decision.placement is not None:
                # The room made (or on its way) is promised to this job: not counted for the next.
                worker = accelerators.typed(entry.worker, decision.accelerator_type)
                for node_id, k in decision.placement.items():
                    nodes[node_id] = policy.subtract(nodes[node_id], {r: v * k for r, v in worker.items()})
        left = policy.subtract(left, entry.demand)
    return out


def _victims_for(p: Pass, entry: Entry, holders: list[policy.preemption.Candidate],
                 used: dict[str, Resources], within: set[str]) -> list[policy.preemption.Candidate]:
    """``holders``, less what a job that would borrow may not take: another user's job within its
    owner's guarantee (``within``) is never paused for it, whatever the priorities (Kueue's
    borrowWithinCohort): else the two take turns, the guarantee reclaimed and pre-empted again.
    ``used``: what each owner holds (read once per pass: the walk changes nobody's usage)."""
    users, owners = p.ctx.users, p.writer.owners
    user = owners.get(entry.job_id, "")
    if users is None or quota.check(entry.demand, used.get(user, {}), users.quota(user)).status != quota.BORROWING:
        return holders
    return [dataclasses.replace(h, preemptible=False) if h.job_id in within and owners.get(h.job_id, "") != user
            else h for h in holders]


def lent_after_s(p: Pass) -> float:
    """How long an elastic job keeps workers it grew into before a job of its priority may take
    them back: the resize interval, or the time slice when that is shorter (a slice over is a
    turn over, and a shrink gives the waiting job its turn before any job is rotated out whole)."""
    settings = p.ctx.settings
    if settings.time_slice_s > 0:
        return min(settings.resize_min_interval_s, settings.time_slice_s)
    return settings.resize_min_interval_s


def _priorities(p: Pass, head: Entry, victim_id: str) -> str:
    return f"priority {head.priority} > {p.writer.job(victim_id).priority}"


def _why_text(p: Pass, head: Entry, job_id: str, why: Why) -> str:
    """Why an elastic job shrinks for ``head``: a borrowed guarantee, a priority, or a loan."""
    priority = p.writer.job(job_id).priority
    if why is Why.RECLAIM:
        return "its owner's guarantee is reclaimed: this job borrows idle capacity"
    if head.priority > priority:
        return _priorities(p, head, job_id)
    return "workers it grew into while idle are taken back for a job of its priority"
