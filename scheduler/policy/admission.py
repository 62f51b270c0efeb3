"""One admission pass with quotas, pure: gang admission in the given order, owners' quotas applied.

The order comes from ``fairshare.fair_order`` (or the plain queue order). Walking it from the
head, as ``queue.admit`` does:
- a job in its requeue backoff is skipped (it keeps its place);
- a job that would take its owner past their ``max`` is held (reason ``quota``) and skipped: it
  is its owner's limit, not the cluster, that holds it, so it must not hold up other users;
- otherwise the job starts on the first of its accelerator types (``accelerators.choose``) that its
  owner's quota allows and where its whole gang fits (on the nodes too, when they are known, with
  its placement strategy), and is marked ``borrowing`` when it takes its owner beyond their
  guarantee; a job whose every type is over its owner's max is held as above; the first job that
  does not fit stops the pass (strict order: it is the head that preemption and backfill serve);
- a job that would borrow is held too while another user's job, within its owner's guarantee,
  waits for room taken back from borrowers (``reclaimed_for``), unless that room is left: else a
  borrower of a higher priority, requeued by the reclaim, took the room back at once and the
  reclaim began again (Kueue admits what fits the nominal quota before what borrows, too).
An elastic job is admitted in its turn at its fewest workers; once the walk is over, the room the
pass leaves (less what the blocked head needs) is dealt to the elastic jobs it started, in order, up
to their most: workers beyond an elastic job's fewest never keep a job behind it from starting, as
a grow never does. Each size is checked by placing the pass's gangs again in launch order, as Ray
will: the elastic gang is placed before the ones behind it, so its extra workers cannot count on the
nodes those leave. A job relaunching after a resize (``Entry.resized``)
starts in its turn with as many as fit up to the size planned: the resize made that room for it.
Each job started counts toward its owner's usage (per type too) for the jobs after it in the same
pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .accelerators import Choice, choose, per_type
from .elastic import at_size, start_size
from .placement import take
from .queue import Entry, Resources, fits, ready, subtract
from .quota import BORROWING, GUARANTEED, OVER_MAX, Quota, QuotaCheck, check

#: a user without a quota is not limited, and never borrowing (quotas are not in force for them)
_UNLIMITED = QuotaCheck(GUARANTEED)


@dataclass(frozen=True)
class Admitted:
    """A job to start now; ``borrowing``: beyond its owner's guarantee (first to be reclaimed)."""

    job_id: str
    borrowing: bool = False
    message: str = ""
    accelerator_type: str | None = None
    placement: list[int] | None = None  # workers per node, in ``nodes_free`` order (None: nodes unknown)
    workers: int | None = None  # how many workers it starts with (an elastic job's size; None: its fixed size)


@dataclass(frozen=True)
class Admission:
    """The jobs to start, the jobs their owner's quota holds (job id -> message), and the blocked head."""

    start: list[Admitted] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    head: Entry | None = None  # the first ready job that did not fit, if any


def admit_with_quotas(order: Iterable[Entry], free: Mapping[str, float], now: float, *,
                      owners: Mapping[str, str], used: Mapping[str, Mapping[str, float]],
                      quotas: Mapping[str, Quota], nodes_free: Sequence[Mapping[str, float]] | None = None,
                      reclaimed_for: Mapping[str, Entry] | None = None) -> Admission:
    """Walk ``order`` (once, so it may be lazy) and decide who starts now.

    ``owners`` maps job ids to users (a job without one counts as user ``""``); ``used`` is what each
    user holds now (``quota.usage_by_user``); ``quotas`` each user's quota (a user without one has no
    limits and never borrows; with a users file every user has one, the file's default at least).
    ``free`` and ``nodes_free`` as for ``queue.admit``. ``reclaimed_for``: the queued jobs room is
    being taken back from borrowers for (by job id).
    """
    start = Walk(free, nodes_free, used, owners, quotas)
    walk = start.copy()
    out, head = Admission(), None
    starts: list[tuple[Entry, Choice, dict[str | None, QuotaCheck]]] = []  # in launch order
    elastic: list[int] = []  # the starts at their fewest workers that may take more
    for entry in order:
        if not ready(entry, now):
            continue
        verdicts: dict[str | None, QuotaCheck] = {}
        may_take_more = False
        if entry.max_workers is not None and entry.resized:  # the size its resize planned, if it fits
            sized = start_size(entry, entry.num_workers, entry.max_workers, walk.left, walk.nodes,
                               allowed=walk.within(entry.job_id, verdicts), largest=True)
            choice, entry = (sized.choice, at_size(entry, sized.workers)) if sized is not None else (None, entry)
        else:
            choice = choose(entry, walk.left, walk.nodes, walk.within(entry.job_id, verdicts))
            may_take_more = entry.max_workers is not None and entry.max_workers > entry.num_workers
        if choice is not None and verdicts[choice.accelerator_type].status == BORROWING and reclaimed_for:
            need = _reclaims_of_others(reclaimed_for, owners, entry.job_id, walk)
            trial = walk.copy()
            trial.take(entry.job_id, choice)
            if need and not _holds(trial, need):
                out.held[entry.job_id] = f"it would borrow the room taken back for {need[0].job_id}"
                continue
        if choice is None:
            if len(verdicts) == len(entry.types or (None,)) and all(v.status == OVER_MAX for v in verdicts.values()):
                out.held[entry.job_id] = "; ".join(dict.fromkeys(v.message for v in verdicts.values()))
                continue
            head = entry
            break
        walk.take(entry.job_id, choice)
        if may_take_more:
            elastic.append(len(starts))
        starts.append((dataclasses.replace(entry, types=(choice.accelerator_type,) if choice.accelerator_type else ()),
                       choice, verdicts))
    keep = head.demand if head is not None else {}
    for i in elastic:  # the room left, in order, up to each one's most
        entry = starts[i][0]
        best, lo, hi = None, entry.num_workers + 1, entry.max_workers or entry.num_workers
        # Bisection: a larger gang leaves the ones after it less room (a size is taken only if its
        # replay fits, so where a placement heuristic is not monotone it may stop short, never over).
        while lo <= hi:
            mid = (lo + hi) // 2
            tried = _replay(starts[:i] + [(at_size(entry, mid), *starts[i][1:])] + starts[i + 1:], start)
            if tried is not None and fits(keep, tried[1].left) \
                    and not _borrows_reclaimed(tried, i, reclaimed_for, owners):
                best, lo = tried[0], mid + 1
            else:
                hi = mid - 1
        if best is not None:
            starts = best
    out.start.extend(_admitted(e.job_id, choice, verdicts, e.num_workers if e.max_workers is not None else None)
                     for e, choice, verdicts in starts)
    return Admission(out.start, out.held, head)


def _reclaims_of_others(reclaimed_for: Mapping[str, Entry], owners: Mapping[str, str], job_id: str,
                        walk: Walk) -> list[Entry]:
    """The jobs room is taken back for, of other users than ``job_id``'s, not started in this pass."""
    owner = owners.get(job_id, "")
    return [r for j, r in reclaimed_for.items() if owners.get(j, "") != owner and j not in walk.taken]


def _borrows_reclaimed(tried: tuple[list[tuple[Entry, Choice, dict[str | None, QuotaCheck]]], Walk], i: int,
                       reclaimed_for: Mapping[str, Entry] | None, owners: Mapping[str, str]) -> bool:
    """Whether the ``i``-th start, grown, borrows room taken back for another user's job (what the
    pass leaves once every start is placed no longer holds that job), or is the job room was taken
    back for and would borrow."""
    entry, choice, verdicts = tried[0][i]
    if not reclaimed_for or verdicts[choice.accelerator_type].status != BORROWING:
        return False
    if entry.job_id in reclaimed_for:
        # Room was taken back for its guarantee: beyond it, a higher priority borrower may pause
        # it again at once, to have its guarantee reclaimed again, for ever.
        return True
    need = _reclaims_of_others(reclaimed_for, owners, entry.job_id, tried[1])
    return bool(need) and not _holds(tried[1], need)


def _holds(walk: Walk, need: Sequence[Entry]) -> bool:
    """Whether the room ``walk`` leaves holds every gang of ``need`` (on the nodes too, with their
    types and strategies), each after the ones before it."""
    trial = walk.copy()
    for entry in need:
        got = choose(entry, trial.left, trial.nodes)
        if got is None:
            return False
        trial.take(entry.job_id, got)
    return True


def _replay(starts: Sequence[tuple[Entry, Choice, dict[str | None, QuotaCheck]]], walk: Walk
            ) -> tuple[list[tuple[Entry, Choice, dict[str | None, QuotaCheck]]], Walk] | None:
    """The starts placed again one by one in launch order from ``walk`` (the pass's start), as Ray
    will place them: each gang where ``choose`` puts it on what the ones before it leave, within its
    owner's quota; with what is left. None when one no longer fits."""
    walk = walk.copy()
    out = []
    for entry, _, _ in starts:
        verdicts: dict[str | None, QuotaCheck] = {}
        choice = choose(entry, walk.left, walk.nodes, walk.within(entry.job_id, verdicts))
        if choice is None:
            return None
        walk.take(entry.job_id, choice)
        out.append((entry, choice, verdicts))
    return out, walk


def _admitted(job_id: str, choice: Choice, verdicts: Mapping[str | None, QuotaCheck], workers: int | None) -> Admitted:
    verdict = verdicts[choice.accelerator_type]
    return Admitted(job_id, verdict.status == BORROWING, verdict.message, choice.accelerator_type, choice.placement,
                    workers)


class Walk:
    """What a pass has left as it starts jobs one by one: free room, per node, and each user's
    usage, with the owner's quota as ``accelerators.choose`` asks it (admission, and backfill's
    starts in ``core.scheduling``)."""

    def __init__(self, free: Mapping[str, float], nodes_free: Sequence[Mapping[str, float]] | None,
                 used: Mapping[str, Mapping[str, float]], owners: Mapping[str, str],
                 quotas: Mapping[str, Quota]) -> None:
        self.left: Resources = dict(free)
        self.nodes = [dict(n) for n in nodes_free] if nodes_free is not None else None
        self.holding = {user: dict(r) for user, r in used.items()}
        self.owners, self.quotas = owners, quotas
        self.taken: set[str] = set()  # the jobs started so far

    def copy(self) -> Walk:
        """A walk from where this one is now."""
        walk = Walk(self.left, self.nodes, self.holding, self.owners, self.quotas)
        walk.taken = set(self.taken)
        return walk

    def within(self, job_id: str, verdicts: dict[str | None, QuotaCheck]) -> Callable[[str | None, Resources], bool]:
        """The job's owner's quota as ``choose`` asks it; each verdict is kept in ``verdicts`` by type."""
        user = self.owners.get(job_id, "")
        quota = self.quotas.get(user)

        def allowed(t: str | None, demand: Resources) -> bool:
            v = check(per_type(demand, t), self.holding.get(user, {}), quota) if quota is not None else _UNLIMITED
            verdicts[t] = v
            return v.status != OVER_MAX

        return allowed

    def take(self, job_id: str, choice: Choice, sign: int = 1) -> None:
        """Count ``choice`` as taken by the job (``sign`` 1) or given back (-1)."""
        if self.nodes is not None and choice.placement is not None:
            take(self.nodes, {k: sign * v for k, v in choice.worker.items()}, choice.placement)
        self.left = subtract(self.left, {k: sign * v for k, v in choice.demand.items()})
        (self.taken.add if sign > 0 else self.taken.discard)(job_id)
        mine = self.holding.setdefault(self.owners.get(job_id, ""), {})
        for name, amount in per_type(choice.demand, choice.accelerator_type).items():
            mine[name] = mine.get(name, 0.0) + sign * amount
