"""Elastic jobs, pure: the size a job starts with, when it grows, and shrinking before pausing.

An elastic job runs with any worker count in ``[min_workers, max_workers]``; each attempt has one
fixed size, and a resize is a pause at a checkpoint plus a relaunch at the new size (issue 31;
docs/design.md, "Why trainq decides the size"). Three decisions, each over a snapshot:

- ``start_size``: a job admitted at the head starts with the largest size that fits, at least
  ``min`` (``admission`` asks it once the pass has admitted the jobs behind, with the blocked
  head's demand as ``keep``): the first of its accelerator types on which ``min`` fits
  (admission's preference order), then as many workers as fit there (a job relaunched to
  resize: on the type where the most fit); the workers beyond ``min`` never take what ``keep``
  holds back. A job backfilled around a blocked head that ends or makes
  way before the head's earliest start is sized the same way, keeping back what the jobs
  backfilled after it need (``core.scheduling``).
- ``plan_grow``: a running job below ``max`` grows into capacity that nothing queued can use: the
  free room less ``keep``, and while a job waits only what backfill's reservation leaves spare
  once that head has started (``backfill.Reservation.spare``), so a grow never delays the head.
  A job ahead of the waiting head in queue order (it relaunches before the head) may also borrow
  the room the head cannot use before its earliest start: a *loan*, given back by a shrink to its
  size before the loan in time for that start, as a ``preemptible`` backfill makes way (the grow
  says when and to what size). Within the owner's ``max`` quota; not within ``min_interval_s`` of
  the job's last start (``running_for``: since its workers started), and a loan only when it
  lasts that long (the churn bound, ``TRAINQ_RESIZE_MIN_INTERVAL_S``); only by at least
  ``min_gain`` workers. Idle workers are
  dealt one at a time (higher priority first, then the job with the fewest workers: with
  sublinear speedup a worker gains most there), then each gang is checked on the nodes.
- ``plan_shrink``: when a head needs room (priority, or a reclaim with the caller's priorities as
  ``quota.reclaim_ranked`` sets them), workers above ``min`` are taken before any whole job is
  paused, by ``preemption.choose_victims`` itself: each worker above ``min`` is offered as a
  one-worker candidate with its job's priority, eligibility and expected lost work; only when
  those cannot make room are whole jobs chosen (with every eligible surplus worker counted as
  taken), and then the surplus workers are trimmed again to those still needed.

Shrinks follow preemption's rules (``min_runtime_s``, strictly lower priority), not the grow's
interval: a shrink replaces a pause that would happen anyway. With ``reclaim_after_s`` a waiting
job may also take back the workers an equal-priority job holds above its ``min`` (lent idle room,
as quota borrowing is), once that job has run the resize interval. Which nodes a shrink frees is an
assumption (Ray re-places the smaller gang): its workers on the nodes where it has fewest go first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field

from .accelerators import Choice, choose, per_type
from .backfill import Reservation
from .placement import PACK, place_gang
from .preemption import Candidate, Preemption, choose_victims, eligible, expected_loss_s, running_for
from .queue import Entry, Resources, add, fits, subtract
from .quota import BORROWING, OVER_MAX, RECLAIM_PRIORITY, Quota, check

#: ``Settings.resize_min_interval_s`` (``TRAINQ_RESIZE_MIN_INTERVAL_S``)
DEFAULT_MIN_INTERVAL_S = 300.0
_SEP = "\x00"  # joins a job id and a worker number into a surplus worker's candidate id


@dataclass(frozen=True)
class Elastic:
    """A running elastic job's size: ``workers`` now, within ``[min_workers, max_workers]``."""

    workers: int
    min_workers: int
    max_workers: int
    strategy: str = PACK
    accelerator_type: str | None = None  # the type its attempt runs on (quotas count per type)


@dataclass(frozen=True)
class Sized:
    """A start size: ``workers`` and where that gang goes (``accelerators.Choice``)."""

    workers: int
    choice: Choice


@dataclass(frozen=True)
class Loan:
    """Room a waiting ``head`` cannot use yet, lent to a job ahead of it: at ``at``, if the head
    still waits, the job shrinks back to ``to_workers`` (its size before the loan)."""

    head: str
    at: float
    to_workers: int


@dataclass(frozen=True)
class Grow:
    """Relaunch ``job_id`` from its next checkpoint with ``to_workers``; ``borrowing``: beyond its
    owner's guarantee; ``loan``: some of the workers are lent by a waiting head, to give back."""

    job_id: str
    to_workers: int
    borrowing: bool = False
    loan: Loan | None = None


@dataclass(frozen=True)
class Shrink:
    """Relaunch ``job_id`` from its next checkpoint with ``to_workers`` (never below its min)."""

    job_id: str
    to_workers: int
    expected_lost_work_s: float = 0.0
    nodes: dict[str, int] | None = None  # the workers per node id it is assumed to keep (None: unknown)


@dataclass(frozen=True)
class ShrinkPlan:
    """Shrinks first; ``preemption`` the whole-job pauses still needed (``victims``) and room on its way."""

    head: str
    shrinks: list[Shrink] = field(default_factory=list)
    preemption: Preemption | None = None


def at_size(entry: Entry, workers: int) -> Entry:
    """The queue entry of a gang of ``workers`` of the entry's worker."""
    return dataclasses.replace(entry, num_workers=workers,
                               demand={k: v * workers for k, v in entry.worker.items()})


def start_size(entry: Entry, min_workers: int, max_workers: int, free: Mapping[str, float],
               nodes: Sequence[Mapping[str, float]] | None = None, *, keep: Mapping[str, float] | None = None,
               allowed: Callable[[str | None, Resources], bool] | None = None,
               largest: bool = False) -> Sized | None:
    """The largest size in ``[min_workers, max_workers]`` to start with now, or None when ``min`` does not fit.

    ``free``, ``nodes`` and ``allowed`` (its owner's quota) as for ``accelerators.choose``; the
    workers beyond ``min`` must also fit ``free`` less ``keep``. Fit is monotone in the size for
    every strategy, so the largest size is found by bisection. On the first of the job's types
    where ``min`` fits, or with ``largest`` on the type where the most workers fit (the first in
    the job's order on a tie): a job relaunched to resize starts at the size its resize was
    planned for, which may be on another type than its first choice.
    """
    beyond = subtract(free, keep or {})
    found: Sized | None = None
    for t in entry.types or (None,):
        one = dataclasses.replace(entry, types=(t,) if t else ())
        smallest = choose(at_size(one, min_workers), free, nodes, allowed)
        if smallest is None:
            continue
        best, lo, hi = Sized(min_workers, smallest), min_workers + 1, max_workers
        while lo <= hi:
            mid = (lo + hi) // 2
            got = choose(at_size(one, mid), beyond, nodes, allowed)
            if got is None:
                hi = mid - 1
            else:
                best, lo = Sized(mid, got), mid + 1
        if not largest:
            return best
        if found is None or best.workers > found.workers:
            found = best
    return found


def plan_grow(holders: Sequence[Candidate], sizes: Mapping[str, Elastic], free: Mapping[str, float], now: float, *,
              min_interval_s: float = DEFAULT_MIN_INTERVAL_S, min_gain: int = 1, waiting: bool = False,
              reservation: Reservation | None = None, lenders: Container[str] = frozenset(),
              give_back_s: float = 0.0, keep: Mapping[str, float] | None = None,
              nodes: Mapping[str, Mapping[str, float]] | None = None, owners: Mapping[str, str] | None = None,
              used: Mapping[str, Mapping[str, float]] | None = None,
              quotas: Mapping[str, Quota] | None = None, reclaimer: str | None = None) -> list[Grow]:
    """The running elastic jobs (``holders`` named in ``sizes``) to grow now, and to what size.

    Call it after admission and backfill in a pass, with what is still ``free``. ``waiting``: a
    ready job not held by its owner's quota still waits (``reservation`` is its head's; without
    one nothing may grow). Then only ``lenders`` grow, the jobs ahead of that head in queue order
    (a job behind it would relaunch behind it, and wait for it): into its spare room, and into
    the rest of the free room when they can give it back ``give_back_s`` (their pause's bound)
    before the head's earliest start and keep it ``min_interval_s`` first. ``nodes`` free
    per node id; ``owners``, ``used`` and ``quotas`` as for ``admission.admit_with_quotas`` (a
    grow never takes its owner past ``max``). ``reclaimer``: the owner of a waiting head within
    their guarantee; no grow takes another user beyond theirs (the head would reclaim it at once,
    the whole job paused, to come back within the guarantee and grow again).
    """
    room: Resources = subtract(free, keep or {})
    lendable: Resources = {}
    give_back_at = None
    if waiting:
        spare = reservation.spare if reservation is not None else {}
        lendable, room = room, {k: min(v, spare.get(k, 0.0)) for k, v in room.items()}
        lendable = subtract(lendable, room)
        earliest = reservation.earliest_at if reservation is not None else None
        if earliest is not None and earliest - give_back_s - now >= min_interval_s:
            give_back_at = earliest - give_back_s
        else:
            lendable = {}
    owners, used, quotas = owners or {}, used or {}, quotas or {}
    holding = {u: dict(r) for u, r in used.items()}
    jobs = [c for c in holders if c.job_id in sizes and not c.stopping
            and sizes[c.job_id].workers < sizes[c.job_id].max_workers
            and running_for(c, now) >= min_interval_s]
    target = {c.job_id: sizes[c.job_id].workers for c in jobs}
    lent = dict.fromkeys(target, 0)
    borrowing: dict[str, bool] = {}
    while True:
        for c in sorted(jobs, key=lambda c: (-c.priority, target[c.job_id], c.attempt_started_at, c.job_id)):
            size, user = sizes[c.job_id], owners.get(c.job_id, "")
            if target[c.job_id] >= size.max_workers:
                continue
            if waiting and c.job_id not in lenders:
                continue  # it would relaunch behind the waiting head, and wait for it
            on_loan = not fits(c.worker, room)
            if on_loan and not fits(c.worker, lendable):
                continue
            q = quotas.get(user)
            verdict = check(per_type(c.worker, size.accelerator_type), holding.get(user, {}), q) if q else None
            if verdict is not None and (verdict.status == OVER_MAX or (
                    verdict.status == BORROWING and reclaimer is not None and reclaimer != user)):
                continue
            target[c.job_id] += 1
            if on_loan:
                lent[c.job_id] += 1
                lendable = subtract(lendable, c.worker)
            else:
                room = subtract(room, c.worker)
            mine = holding.setdefault(user, {})
            for name, amount in per_type(c.worker, size.accelerator_type).items():
                mine[name] = mine.get(name, 0.0) + amount
            borrowing[c.job_id] = verdict is not None and verdict.status == BORROWING
            break
        else:
            break
    out = []
    left = {n: dict(r) for n, r in nodes.items()} if nodes is not None else None
    for c in sorted(jobs, key=lambda c: (-c.priority, sizes[c.job_id].workers, c.attempt_started_at, c.job_id)):
        size, to = sizes[c.job_id], target[c.job_id]
        if left is not None:
            to = _placeable(c, size, to, left)
        if to - size.workers < max(1, min_gain):
            continue
        # Workers the nodes could not place count as spare ones: the loan given back is never too small.
        back = min(lent[c.job_id], to - size.workers)
        loan = Loan(reservation.job_id, give_back_at, to - back) \
            if back and reservation is not None and give_back_at is not None else None
        out.append(Grow(c.job_id, to, borrowing.get(c.job_id, False), loan))
    return out


def _placeable(c: Candidate, size: Elastic, to: int, left: dict[str, dict[str, float]]) -> int:
    """The largest size up to ``to`` whose whole gang the nodes hold once the job's own workers are
    free (its nodes unknown: its new workers on top of it); takes that gang from ``left``."""
    trial = {n: dict(r) for n, r in left.items()}
    if c.nodes is not None:
        for n, k in c.nodes.items():
            if n in trial:  # a node gone since frees nothing
                trial[n] = add(trial[n], {r: v * k for r, v in c.worker.items()})
    base = 0 if c.nodes is not None else size.workers
    ids = list(trial)
    while to > size.workers:
        placement = place_gang(c.worker, to - base, list(trial.values()), size.strategy)
        if placement is not None:
            for i, k in enumerate(placement):
                trial[ids[i]] = subtract(trial[ids[i]], {r: v * k for r, v in c.worker.items()})
            left.update(trial)
            return to
        to -= 1
    return to


def plan_shrink(head: Entry, holders: Sequence[Candidate], sizes: Mapping[str, Elastic],
                free: Mapping[str, float], capacity: Mapping[str, float], now: float, *,
                nodes: Mapping[str, Mapping[str, float]] | None = None,
                reclaim_after_s: float | None = None) -> ShrinkPlan | None:
    """Room for ``head``: shrinks of elastic jobs first, whole-job pauses only if still needed.

    ``holders`` every attempt holding resources (``snapshot.holders``; elastic ones named in
    ``sizes``), ``free``, ``capacity`` and ``nodes`` as for ``preemption.choose_victims``. None
    when the head fits now or nothing can make room (then nobody is shrunk or paused).

    ``reclaim_after_s`` (the resize interval, when given): workers above ``min`` are idle room lent
    out, as quota borrowing is, so a head of equal priority may take them back from a job whose
    attempt has run at least that long (``preemption.running_for``; by shrinks only: whole jobs are
    paused only for strictly higher priorities), after the surplus workers of lower priorities.
    """
    if _fits_now(head, free, nodes):
        return None
    spares = {c.job_id: _surplus(_lent(c, head, now, reclaim_after_s), sizes[c.job_id]) for c in holders
              if c.job_id in sizes and not c.stopping and sizes[c.job_id].workers > sizes[c.job_id].min_workers}
    whole = [c for c in holders if c.job_id not in spares]
    stopping = [c for c in holders if c.stopping]

    def choose_among(cands: Sequence[Candidate]) -> Preemption | None:
        return choose_victims(head.job_id, head.priority, head.demand, cands, free, capacity, now,
                              gang=head, nodes=nodes)

    offered = [w for ws in spares.values() for w in ws]
    first = choose_among(stopping + offered)
    if first is not None:
        return _plan(head, first, holders, sizes, now, stopping)
    taken = [dataclasses.replace(w, stopping=True) for w in offered if eligible(w, head.priority, now)]
    bases = [_base(c, sizes[c.job_id]) for c in holders if c.job_id in spares]
    pauses = choose_among(whole + bases + taken)
    if pauses is None or not pauses.victims:
        return None
    # Counting the surplus as taken first can lead the victim choice to pause more than it would
    # with every job whole (it weighs an elastic job at its min): then pausing whole jobs is cheaper.
    plain = choose_among(holders)
    if plain is not None and _share(plain.victims, holders, capacity) < _share(pauses.victims, holders, capacity):
        return ShrinkPlan(head.job_id, [], plain)
    paused = set(pauses.victims)
    gone = [dataclasses.replace(c, stopping=True) for c in holders if c.job_id in paused]
    rest = [w for job_id, ws in spares.items() if job_id not in paused for w in ws]
    trimmed = choose_among(stopping + gone + rest)
    # Never None in practice: every eligible surplus worker may be taken again, as in ``pauses``.
    shrinks = _plan(head, trimmed, holders, sizes, now, stopping).shrinks if trimmed is not None else []
    placement = trimmed or pauses
    return ShrinkPlan(head.job_id, shrinks, Preemption(
        head.job_id, victims=pauses.victims, waiting_for=[c.job_id for c in stopping],
        lost_work_s=pauses.lost_work_s, accelerator_type=placement.accelerator_type, placement=placement.placement))


def _lent(c: Candidate, head: Entry, now: float, reclaim_after_s: float | None) -> Candidate:
    """``c`` as its surplus workers are offered: below every real priority once they may be reclaimed."""
    if reclaim_after_s is None or c.priority != head.priority or running_for(c, now) < reclaim_after_s:
        return c
    return dataclasses.replace(c, priority=RECLAIM_PRIORITY + c.priority)


def _share(victims: Sequence[str], holders: Sequence[Candidate], capacity: Mapping[str, float]) -> float:
    """What pausing ``victims`` whole frees, as a sum of shares of the cluster's capacity."""
    by_id = {c.job_id: c for c in holders}
    return sum(amount / capacity[r] for v in victims for r, amount in by_id[v].demand.items() if capacity.get(r))


def _fits_now(head: Entry, free: Mapping[str, float], nodes: Mapping[str, Mapping[str, float]] | None) -> bool:
    return choose(head, free, None if nodes is None else list(nodes.values())) is not None


def _plan(head: Entry, p: Preemption, holders: Sequence[Candidate], sizes: Mapping[str, Elastic], now: float,
          stopping: Sequence[Candidate]) -> ShrinkPlan:
    """Count the surplus workers ``p`` chose per job into shrinks (plus ``p``'s room on its way)."""
    taken: dict[str, list[str]] = {}
    for victim in p.victims:
        job_id, _, rest = victim.partition(_SEP)
        taken.setdefault(job_id, []).append(rest.partition(_SEP)[2])  # the node it frees ("" unknown)
    by_id = {c.job_id: c for c in holders}
    shrinks = []
    for job_id, gone in taken.items():
        c = by_id[job_id]
        kept = dict(c.nodes) if c.nodes is not None else None
        if kept is not None:
            for node in gone:
                if node in kept:
                    kept[node] -= 1
            kept = {n: k for n, k in kept.items() if k}
        shrinks.append(Shrink(job_id, sizes[job_id].workers - len(gone), round(expected_loss_s(c, now), 3), kept))
    return ShrinkPlan(head.job_id, shrinks, Preemption(
        head.job_id, waiting_for=[c.job_id for c in stopping], accelerator_type=p.accelerator_type,
        placement=p.placement))


def _surplus(c: Candidate, size: Elastic) -> list[Candidate]:
    """One candidate per worker above ``min``, each on the node it is assumed to free: first the
    nodes where the job has fewest workers (emptying a node makes the most room for a gang)."""
    spots = [n for n, k in sorted((c.nodes or {}).items(), key=lambda nk: (nk[1], nk[0])) for _ in range(k)]
    out = []
    for i in range(size.workers - size.min_workers):
        node = spots[i] if i < len(spots) else ""
        out.append(dataclasses.replace(c, job_id=f"{c.job_id}{_SEP}{i}{_SEP}{node}", demand=dict(c.worker),
                                       nodes={node: 1} if node else None))
    return out


def _base(c: Candidate, size: Elastic) -> Candidate:
    """The job at its ``min``: what pausing it frees once its surplus workers are counted apart."""
    spare_nodes: dict[str, int] = {}
    for w in _surplus(c, size):
        for n, k in (w.nodes or {}).items():
            spare_nodes[n] = spare_nodes.get(n, 0) + k
    kept = None if c.nodes is None else \
        {n: k - spare_nodes.get(n, 0) for n, k in c.nodes.items() if k > spare_nodes.get(n, 0)}
    return dataclasses.replace(c, demand={k: v * size.min_workers for k, v in c.worker.items()}, nodes=kept)
