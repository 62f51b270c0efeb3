"""Quotas with borrowing, pure: each user has ``guaranteed`` resources and an optional ``max``.

- A job that keeps its owner within the guarantee is admitted in the normal queue order.
- Beyond the guarantee a job may borrow idle capacity up to the owner's ``max``; it is marked
  ``borrowing`` while its owner's guarantee does not cover it, the owner's attempts counted in
  the order they started (``beyond_guarantee``: the mark follows the owner's usage).
- A job that would take its owner past ``max`` waits (reason ``quota``) without blocking the
  jobs behind it: it is skipped, like a job in its requeue backoff, because it is the owner's
  limit, not the cluster, that holds it back.
- A job whose own demand exceeds its owner's ``max`` can never start and is refused at submit.
- Quotas may name an accelerator type (``GPU:A100``, ``policy.accelerators.per_type``): a job placed
  on that type counts toward it as well as toward ``GPU``; a per-type name limits or guarantees
  only where the quota names it.
- When a job that stays within its owner's guarantee waits, other users' borrowing jobs are
  the first victims (Kueue's ``reclaimWithinCohort``), whatever their priority: a guarantee
  that a higher-priority borrower could hold off would be no guarantee. A reclaimed job becomes
  borrowing again if it comes back over its owner's guarantee, so it cannot reclaim in turn
  (no ping-pong).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .accelerators import is_typed, per_type
from .preemption import Candidate, Preemption, choose_victims
from .queue import Entry, Resources

_EPS = 1e-9
#: The priority a borrowing job is given when a guarantee reclaims: below any real priority.
RECLAIM_PRIORITY = -(1 << 62)

GUARANTEED, BORROWING, OVER_MAX = "guaranteed", "borrowing", "over_max"
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Quota:
    """A user's quota. Resources absent from ``guaranteed`` are guaranteed 0; ``max`` None: no cap."""

    guaranteed: Mapping[str, float] = field(default_factory=dict)
    max: Mapping[str, float] | None = None


@dataclass(frozen=True)
class QuotaCheck:
    """Where admitting a job would leave its owner: ``guaranteed``, ``borrowing`` or ``over_max``."""

    status: str
    message: str = ""


def usage_by_user(holders: Iterable[tuple[str, Mapping[str, float]]]) -> dict[str, Resources]:
    """Sum ``(user, demand)`` pairs of the attempts holding resources into per-user usage."""
    out: dict[str, Resources] = {}
    for user, demand in holders:
        mine = out.setdefault(user, {})
        for name, amount in demand.items():
            mine[name] = mine.get(name, 0.0) + amount
    return out


def check(demand: Mapping[str, float], used: Mapping[str, float], quota: Quota) -> QuotaCheck:
    """Classify admitting ``demand`` for a user who already holds ``used``."""
    after = {name: used.get(name, 0.0) + amount for name, amount in demand.items() if amount > 0}
    if quota.max is not None:
        over = [name for name, amount in after.items() if name in quota.max and amount > quota.max[name] + _EPS]
        if over:
            parts = [f"needs {_n(demand[n])} {n}, its owner holds {_n(used.get(n, 0.0))} of a max of "
                     f"{_n(quota.max[n])}" for n in over]
            return QuotaCheck(OVER_MAX, "; ".join(parts))
    # A per-type name (``GPU:A100``) is guaranteed only where the quota names it; else its plain name rules.
    beyond = [name for name, amount in after.items() if amount > quota.guaranteed.get(name, 0.0) + _EPS
              and (name in quota.guaranteed or not is_typed(name))]
    if beyond:
        parts = [f"{_n(after[n])} {n} against a guarantee of {_n(quota.guaranteed.get(n, 0.0))}" for n in beyond]
        return QuotaCheck(BORROWING, "borrows idle capacity: " + "; ".join(parts))
    return QuotaCheck(GUARANTEED)


def beyond_guarantee(holding: Iterable[tuple[K, str, Mapping[str, float]]], quotas: Mapping[str, Quota]) -> set[K]:
    """The keys of ``holding`` that run beyond their owner's guarantee (borrowing) now.

    ``holding``: ``(key, owner, demand)`` of every attempt holding resources (demand by type,
    ``accelerators.per_type``), oldest first. Each owner's guarantee covers their attempts in that
    order; one that does not fit what is left of it borrows. So the mark follows the owner's usage,
    not the moment of admission: once an older job ends, a younger one it pushed beyond the
    guarantee is within it, and is not reclaimed (nor pre-empted by a borrower) as if it borrowed.
    """
    out: set[K] = set()
    within: dict[str, Resources] = {}
    for key, user, demand in holding:
        q = quotas.get(user)
        if q is None:
            continue  # no quota: never borrowing
        mine = within.setdefault(user, {})
        if check(demand, mine, q).status == GUARANTEED:
            for name, amount in demand.items():
                mine[name] = mine.get(name, 0.0) + amount
        else:
            out.add(key)
    return out


def never_fits_quota(demand: Mapping[str, float], quota: Quota, user: str, types: Sequence[str] = ()) -> str | None:
    """The message refusing a job at submit because on every one of its accelerator ``types`` (or
    with none) it exceeds its owner's max (``GPU`` or ``GPU:<type>``); None when it may wait."""
    if quota.max is None:
        return None
    cap = quota.max
    why = []
    for t in types or (None,):
        asked = per_type(demand, t)
        over = [name for name, amount in asked.items() if name in cap and amount > cap[name] + _EPS]
        if not over:
            return None
        why += [f"{_n(asked[n])} {n} requested, user {user!r} may hold at most {_n(cap[n])}" for n in over]
    return "the job can never start under its owner's quota: " + "; ".join(dict.fromkeys(why))


def reclaim_victims(head_id: str, head_priority: int, head_demand: Mapping[str, float], head_user: str,
                    head_used: Mapping[str, float], head_quota: Quota, holders: Sequence[Candidate],
                    borrowing: Mapping[str, str], free: Mapping[str, float], capacity: Mapping[str, float],
                    now: float, *, gang: Entry | None = None,
                    nodes: Mapping[str, Mapping[str, float]] | None = None) -> Preemption | None:
    """Victims for a waiting job, with other users' borrowing jobs first: ``choose_victims`` over
    the holders as ``reclaim_ranked`` ranks them (the same rules as ever: preemptible, past
    ``min_runtime_s``, fewest needed, node-aware with ``gang`` and ``nodes``)."""
    ranked = reclaim_ranked(head_demand, head_user, head_used, head_quota, holders, borrowing, gang)
    return choose_victims(head_id, head_priority, head_demand, ranked, free, capacity, now, gang=gang, nodes=nodes)


def reclaim_ranked(head_demand: Mapping[str, float], head_user: str, head_used: Mapping[str, float],
                   head_quota: Quota, holders: Sequence[Candidate], borrowing: Mapping[str, str],
                   gang: Entry | None = None) -> list[Candidate]:
    """``holders`` as a reclaim for the head ranks them.

    ``borrowing`` maps the job ids of running borrowing attempts to their owners. When the head
    stays within its owner's guarantee, those jobs (of other users) are ranked below every real
    priority, so a victim choice (``choose_victims``, or ``elastic.plan_shrink`` taking workers
    first) takes them first and only then lower-priority jobs. Otherwise the holders are as they
    are. The head is within its guarantee when it is on one of its types (``GPU`` and
    ``GPU:<type>`` both within).
    """
    if within_guarantee(head_demand, head_used, head_quota, gang.types if gang is not None else ()):
        return [dataclasses.replace(c, priority=RECLAIM_PRIORITY)
                if borrowing.get(c.job_id, head_user) != head_user else c for c in holders]
    return list(holders)


def within_guarantee(demand: Mapping[str, float], used: Mapping[str, float], quota: Quota,
                     types: Sequence[str] = ()) -> bool:
    """Whether starting ``demand`` keeps its owner, who holds ``used``, within their guarantee on
    one of its accelerator ``types`` (``GPU`` and ``GPU:<type>`` both within)."""
    return any(check(per_type(demand, t), used, quota).status == GUARANTEED for t in types or (None,))


def _n(x: float) -> str:
    return f"{x:g}"
