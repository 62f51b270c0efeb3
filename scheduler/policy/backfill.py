"""Backfill that never delays the head, pure (Slurm's EASY backfill, plus checkpoint preemption).

When the head of the queue does not fit, it gets a *reservation*: ``start_at``, the earliest
time at which what is free now, plus what running jobs release by their estimated ends, holds
its demand; and ``earliest_at``, the same walk when every running job whose end is unknown
might end right now (the head might start that early). A job behind the head may start now if
it fits now and one of these holds:

- ``ends_before``: its run time is known (``time_limit_s``, or an estimate) and it ends by
  ``earliest_at``, so its resources are back before the head could use them;
- ``spare``: it fits in what will be left over at ``start_at`` once the head has started, so it
  may run on however long it likes (only when no running job's end is unknown: such an end could
  change what is left over);
- ``preemptible``: it may be paused at a checkpoint; it is asked to pause its expected pause
  time before ``earliest_at``, so its resources are back in time. The shell does this when
  ``due_preemptions`` names it, as long as that head still waits.

The guarantees, checked by ``tests/policy/test_backfill.py`` on random job mixes in ``simulate``:
- with known run times exact (unknown ones arbitrary) and pauses as fast as expected, the head
  starts no later than it would without backfill;
- with known run times only upper bounds (time limits enforced, jobs may end early), every head
  starts no later than the start reserved for it when it became the head, unless a paused job
  from ahead of it in the queue comes back in front of it (a paused job keeps its place).
  Slurm promises the same; nothing stronger is possible when jobs end earlier than declared,
  since any job started meanwhile might hold what the head could then have had.
Totals only: node fragmentation at the reservation is not modelled (the shell may still check
that a backfilled gang is placeable on the nodes now).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field

from .queue import Entry, Resources, add, fits, ready, subtract

ENDS_BEFORE, SPARE, PREEMPTIBLE = "ends_before", "spare", "preemptible"


@dataclass(frozen=True)
class Holder:
    """A job holding resources, with when it is expected to release them (None: unknown).

    ``backfilled``: started as ``spare`` backfill, so no reservation counts on its release
    (the shell remembers this for the attempt).
    """

    job_id: str
    demand: Mapping[str, float]
    end_at: float | None
    backfilled: bool = False


@dataclass(frozen=True)
class Reservation:
    """The head's reserved start (None: unknown), the earliest it could start, and what is spare.

    ``start_at`` counts only on releases with a known end. ``earliest_at`` also lets every job
    whose end is unknown end right now: the head might start that early, so a backfilled job
    must be out of its way by then. ``spare`` is what is left at ``start_at`` once the head has
    started (empty while jobs of unknown end could change that).
    """

    job_id: str
    start_at: float | None
    earliest_at: float | None = None
    spare: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Backfill:
    """A job to start now behind a blocked head, and why that cannot delay the head."""

    job_id: str
    why: str
    preempt_at: float | None = None  # for ``preemptible``: ask it to pause at this time


@dataclass(frozen=True)
class BackfillPlan:
    """The head's reservation and the jobs to start now around it."""

    reservation: Reservation | None
    start: list[Backfill] = field(default_factory=list)


def reserve(head_id: str, head_demand: Mapping[str, float], free: Mapping[str, float],
            holders: Sequence[Holder], now: float) -> Reservation:
    """When the head fits, walking running jobs' releases in order of their estimated ends."""
    known = [(h.end_at, h.demand) for h in holders if h.end_at is not None]
    unknown = [h for h in holders if h.end_at is None and not h.backfilled]
    start_at = _first_fit(head_demand, free, known, now)
    earliest_at = _first_fit(head_demand, free, known + [(now, h.demand) for h in unknown], now)
    spare: Resources = {}
    if start_at is not None and not unknown:
        # Jobs ending at that very moment release together: all of them count toward what is spare.
        room = add(free, *(d for end, d in known if end <= start_at))
        spare = subtract(room, head_demand)
    return Reservation(head_id, start_at, earliest_at, spare)


def plan_backfill(queue: Sequence[Entry], free: Mapping[str, float], holders: Sequence[Holder], now: float, *,
                  run_s: Mapping[str, float] | None = None, preemptible: Mapping[str, float] | None = None
                  ) -> BackfillPlan:
    """The jobs behind a blocked head that may start now.

    ``queue`` is in admission order, after this pass's normal admission (so its first ready job
    is the blocked head); ``free`` is what is free now; ``holders`` every job holding resources,
    with its estimated release (a pausing job: its expected pause; a job backfilled as
    ``preemptible``: its ``preempt_at`` plus its pause). ``run_s`` gives queued jobs' known run
    times (time limits or estimates); ``preemptible`` maps the queued jobs that may be paused at a
    checkpoint to their expected pause time in seconds.
    """
    run_s, preemptible = run_s or {}, preemptible or {}
    ready_jobs = [e for e in queue if ready(e, now)]
    if not ready_jobs or fits(ready_jobs[0].demand, free):
        return BackfillPlan(None)
    head = ready_jobs[0]
    reservation = reserve(head.job_id, head.demand, free, holders, now)
    by = reservation.earliest_at  # every backfilled job is out of the head's way by then
    if by is None:
        return BackfillPlan(reservation)
    left, spare = dict(free), dict(reservation.spare)
    start: list[Backfill] = []
    for e in ready_jobs[1:]:
        if not fits(e.demand, left):
            continue
        if e.job_id in run_s and now + run_s[e.job_id] <= by:
            start.append(Backfill(e.job_id, ENDS_BEFORE))
        elif spare and fits(e.demand, spare):
            start.append(Backfill(e.job_id, SPARE))
            spare = subtract(spare, e.demand)
        elif e.job_id in preemptible and now + preemptible[e.job_id] < by:
            start.append(Backfill(e.job_id, PREEMPTIBLE, by - preemptible[e.job_id]))
        else:
            continue
        left = subtract(left, e.demand)
    return BackfillPlan(reservation, start)


def _first_fit(demand: Mapping[str, float], free: Mapping[str, float],
               releases: Sequence[tuple[float, Mapping[str, float]]], now: float) -> float | None:
    room: Resources = dict(free)
    at = now
    for end, released in sorted(releases, key=lambda r: r[0]):
        if fits(demand, room):
            return at
        at = max(at, end)
        room = add(room, released)
    return at if fits(demand, room) else None


@dataclass(frozen=True)
class PlannedPause:
    """A ``preemptible`` backfill's pause: ask ``job_id`` to pause at ``at`` to make way for ``head``."""

    job_id: str
    head: str
    at: float


@dataclass(frozen=True)
class DuePauses:
    """Pauses to ask for now, and planned pauses to forget (their head no longer waits)."""

    due: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def due_preemptions(planned: Sequence[PlannedPause], waiting: Container[str], now: float) -> DuePauses:
    """Which backfilled jobs to pause now. ``waiting`` holds the ids of the jobs still queued.

    A pause planned for a head that has started (or left the queue) is dropped: it would only
    cost work, and the job, requeued ahead of later heads, would stand in their way.
    """
    due = sorted((p for p in planned if p.head in waiting and p.at <= now), key=lambda p: (p.at, p.job_id))
    return DuePauses([p.job_id for p in due], [p.job_id for p in planned if p.head not in waiting])


