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
  does not fit stops the pass (strict order: it is the head that preemption and backfill serve).
An elastic job starts with as many workers as fit (``elastic.start_size``), at least its fewest.
Each job started counts toward its owner's usage (per type too) for the jobs after it in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .accelerators import choose, per_type
from .elastic import start_size
from .placement import take
from .queue import Entry, Resources, ready, subtract
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
                      quotas: Mapping[str, Quota], nodes_free: Sequence[Mapping[str, float]] | None = None
                      ) -> Admission:
    """Walk ``order`` (once, so it may be lazy) and decide who starts now.

    ``owners`` maps job ids to users (a job without one counts as user ``""``); ``used`` is what each
    user holds now (``quota.usage_by_user``); ``quotas`` each user's quota (a user without one has no
    limits and never borrows; with a users file every user has one, the file's default at least).
    ``free`` and ``nodes_free`` as for ``queue.admit``.
    """
    left: Resources = dict(free)
    nodes = [dict(n) for n in nodes_free] if nodes_free is not None else None
    holding = {user: dict(r) for user, r in used.items()}
    out = Admission()
    for entry in order:
        if not ready(entry, now):
            continue
        user = owners.get(entry.job_id, "")
        quota = quotas.get(user)
        verdicts: dict[str | None, QuotaCheck] = {}

        def within(t: str | None, demand: Resources, user: str = user, quota: Quota | None = quota,
                   verdicts: dict[str | None, QuotaCheck] = verdicts) -> bool:
            v = check(per_type(demand, t), holding.get(user, {}), quota) if quota is not None else _UNLIMITED
            verdicts[t] = v
            return v.status != OVER_MAX

        workers = None
        if entry.max_workers is None:
            choice = choose(entry, left, nodes, within)
        else:  # elastic: as many workers as fit now, at least its fewest
            sized = start_size(entry, entry.num_workers, entry.max_workers, left, nodes, allowed=within)
            choice, workers = (sized.choice, sized.workers) if sized is not None else (None, None)
        if choice is None:
            if len(verdicts) == len(entry.types or (None,)) and all(v.status == OVER_MAX for v in verdicts.values()):
                out.held[entry.job_id] = "; ".join(dict.fromkeys(v.message for v in verdicts.values()))
                continue
            return Admission(out.start, out.held, entry)
        if nodes is not None and choice.placement is not None:
            take(nodes, choice.worker, choice.placement)
        left = subtract(left, choice.demand)
        mine = holding.setdefault(user, {})
        for name, amount in per_type(choice.demand, choice.accelerator_type).items():
            mine[name] = mine.get(name, 0.0) + amount
        verdict = verdicts[choice.accelerator_type]
        out.start.append(Admitted(entry.job_id, verdict.status == BORROWING, verdict.message,
                                  choice.accelerator_type, choice.placement, workers))
    return out
