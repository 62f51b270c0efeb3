"""Fair share, pure: within one priority, users take turns by their recent usage.

Usage is decayed resource-seconds: each charge is the job's dominant share of the cluster
(its largest fraction of any one resource, so GPUs, CPUs and bytes of memory compare) times the
seconds it held it, and the total halves every ``half_life_s`` (Slurm's ``PriorityDecayHalfLife``,
default 7 days, ``TRAINQ_FAIRSHARE_HALF_LIFE_S``). Within a priority the user with the lowest
``usage / weight`` goes next.

Jobs taken in the same pass are charged provisionally (their share times ``provisional_s``, or
their own expected run time), so two users who submit ten equal jobs each at the same moment
get interleaved starts within a single scheduling pass, not only across passes.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .preemption import dominant_share
from .queue import Entry

DEFAULT_HALF_LIFE_S = 7 * 86400.0
#: What a job taken in this pass is charged for ordering when its run time is unknown.
DEFAULT_PROVISIONAL_S = 3600.0


def half_life_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``$TRAINQ_FAIRSHARE_HALF_LIFE_S`` (default 7 days); must be > 0."""
    raw = (os.environ if environ is None else environ).get("TRAINQ_FAIRSHARE_HALF_LIFE_S")
    value = DEFAULT_HALF_LIFE_S if not raw else float(raw)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"TRAINQ_FAIRSHARE_HALF_LIFE_S must be a number > 0 (got {raw!r})")
    return value


def resource_seconds(resources: Mapping[str, float], seconds: float, capacity: Mapping[str, float]) -> float:
    """What holding ``resources`` for ``seconds`` costs: dominant share of ``capacity`` × seconds."""
    return dominant_share(resources, capacity) * max(0.0, seconds)


@dataclass
class UsageLedger:
    """Decayed usage per user. ``usage`` maps user -> (value, as of time); values decay lazily."""

    half_life_s: float = DEFAULT_HALF_LIFE_S
    usage: dict[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        if self.usage is None:
            self.usage = {}

    def _decayed(self, value: float, since: float, now: float) -> float:
        factor: float = 0.5 ** (max(0.0, now - since) / self.half_life_s)  # float ** float is Any to mypy
        return value * factor

    def charge(self, user: str, resources: Mapping[str, float], seconds: float, now: float,
               capacity: Mapping[str, float]) -> None:
        """Add ``resources`` held for ``seconds`` (ending ``now``) to ``user``'s usage.

        Charged as of ``now``; call it at least every few minutes for running jobs, so that the
        decay within one charge is negligible against the half-life.
        """
        self.add(user, resource_seconds(resources, seconds, capacity), now)

    def add(self, user: str, amount: float, now: float) -> None:
        """Add already-computed resource-seconds to ``user``'s usage as of ``now``."""
        assert self.usage is not None
        value, since = self.usage.get(user, (0.0, now))
        self.usage[user] = (self._decayed(value, since, now) + amount, max(now, since))

    def of(self, user: str, now: float) -> float:
        """``user``'s decayed usage at ``now`` (0 for a user never charged)."""
        assert self.usage is not None
        value, since = self.usage.get(user, (0.0, now))
        return self._decayed(value, since, now)

    def snapshot(self, now: float) -> dict[str, float]:
        """Every user's decayed usage at ``now``."""
        assert self.usage is not None
        return {user: self.of(user, now) for user in self.usage}

    def to_dict(self) -> dict[str, list[float]]:
        """A JSON-able form for the store (restored with ``UsageLedger.from_dict``)."""
        assert self.usage is not None
        return {user: [value, since] for user, (value, since) in self.usage.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]], half_life_s: float = DEFAULT_HALF_LIFE_S) -> UsageLedger:
        return cls(half_life_s, {user: (float(v[0]), float(v[1])) for user, v in data.items()})


def fair_order(entries: Sequence[Entry], owners: Mapping[str, str], usage: Mapping[str, float],
               weights: Mapping[str, float], capacity: Mapping[str, float], *,
               expected_s: Mapping[str, float] | None = None,
               provisional_s: float = DEFAULT_PROVISIONAL_S) -> list[Entry]:
    """The queue in fair order: priority first; within a priority, users by ``usage / weight``.

    ``entries`` are in queue order (priority, then submission); each user's own jobs keep that
    order. ``owners`` maps job ids to users (a job without an owner counts as user ``""``),
    ``usage`` is the ledger's snapshot at ``now`` and ``weights`` the users' weights (default 1).
    Each job placed is charged to its owner provisionally (its dominant share × its expected run
    time or ``provisional_s``), so the next place goes to whoever is then furthest behind.
    Ties go to the earlier submission. O(n log u) for n jobs of u users.
    """
    return list(fair_iter(entries, owners, usage, weights, capacity, expected_s=expected_s,
                          provisional_s=provisional_s))


def fair_iter(entries: Iterable[Entry], owners: Mapping[str, str], usage: Mapping[str, float],
              weights: Mapping[str, float], capacity: Mapping[str, float], *,
              expected_s: Mapping[str, float] | None = None,
              provisional_s: float = DEFAULT_PROVISIONAL_S) -> Iterator[Entry]:
    """``fair_order`` lazily: grouping a priority's jobs by user is O(n), but each job taken
    from it costs O(log u), so a scheduling pass that starts k jobs pays for k, not for n."""
    expected = expected_s or {}
    charged = dict(usage)  # provisional charges stay local to this ordering
    band: list[Entry] = []
    for entry in entries:
        if band and entry.priority != band[0].priority:
            yield from _one_priority(band, owners, charged, weights, capacity, expected, provisional_s)
            band = []
        band.append(entry)
    if band:
        yield from _one_priority(band, owners, charged, weights, capacity, expected, provisional_s)


def _one_priority(band: Sequence[Entry], owners: Mapping[str, str], charged: dict[str, float],
                  weights: Mapping[str, float], capacity: Mapping[str, float], expected: Mapping[str, float],
                  provisional_s: float) -> Iterator[Entry]:
    per_user: dict[str, list[Entry]] = {}
    for e in band:
        per_user.setdefault(owners.get(e.job_id, ""), []).append(e)
    heap = [(_share(u, charged, weights), jobs[0].seq, u, 0) for u, jobs in per_user.items()]
    heapq.heapify(heap)
    while heap:
        _, _, user, k = heapq.heappop(heap)
        entry = per_user[user][k]
        yield entry
        seconds = expected.get(entry.job_id, provisional_s)
        charged[user] = charged.get(user, 0.0) + resource_seconds(entry.demand, seconds, capacity)
        if k + 1 < len(per_user[user]):
            heapq.heappush(heap, (_share(user, charged, weights), per_user[user][k + 1].seq, user, k + 1))


def _share(user: str, charged: Mapping[str, float], weights: Mapping[str, float]) -> float:
    return charged.get(user, 0.0) / max(weights.get(user, 1.0), 1e-12)
