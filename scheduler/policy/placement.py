"""Whether a gang of identical workers can be placed on the free resources of individual nodes.

Ray Train asks for one placement group of ``num_workers`` identical bundles with the job's
strategy (Ray's placement-group strategies). For identical bundles feasibility is exact and
cheap: node ``i`` holds ``k_i = min over resources of floor(free_i[r] / worker[r])`` workers, and

- ``PACK`` / ``SPREAD`` (best effort) fit when ``sum(k_i) >= num_workers``;
- ``STRICT_PACK`` fits when one node has ``k_i >= num_workers``;
- ``STRICT_SPREAD`` fits when ``num_workers`` distinct nodes have ``k_i >= 1``.

The placement returned is the one trainq then assumes the gang has (it keeps it per attempt to
know what a preemption frees where): PACK fills the largest holders first, as Ray's PACK tries to;
SPREAD deals one worker per node in turn; STRICT_PACK takes the tightest node that holds the whole
gang (best fit, which leaves the big holes for big gangs); STRICT_SPREAD the largest holders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

_EPS = 1e-9
PACK, SPREAD, STRICT_PACK, STRICT_SPREAD = "PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"
STRATEGIES = (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD)


def holds(worker: Mapping[str, float], node: Mapping[str, float]) -> int:
    """How many workers of this size fit on a node with ``node`` free."""
    counts = [math.floor((node.get(name, 0.0) + _EPS) / amount) for name, amount in worker.items() if amount > 0]
    return max(0, min(counts)) if counts else 1 << 30


def place_gang(worker: Mapping[str, float], num_workers: int, nodes_free: Sequence[Mapping[str, float]],
               strategy: str = PACK) -> list[int] | None:
    """Workers per node (same order as ``nodes_free``) for the whole gang, or None if it cannot fit."""
    capacity = [holds(worker, node) for node in nodes_free]
    placed = [0] * len(capacity)
    if strategy == STRICT_PACK:
        whole = [i for i, c in enumerate(capacity) if c >= num_workers]
        if not whole:
            return None
        placed[min(whole, key=lambda i: (capacity[i], i))] = num_workers
        return placed
    if strategy == STRICT_SPREAD:
        usable = sorted((i for i, c in enumerate(capacity) if c >= 1), key=lambda i: -capacity[i])
        if len(usable) < num_workers:
            return None
        for i in usable[:num_workers]:
            placed[i] = 1
        return placed
    if sum(capacity) < num_workers:
        return None
    left = num_workers
    if strategy == SPREAD:
        while left:
            for i in range(len(capacity)):
                if left and placed[i] < capacity[i]:
                    placed[i], left = placed[i] + 1, left - 1
        return placed
    for i in sorted(range(len(capacity)), key=lambda i: -capacity[i]):
        take = min(capacity[i], left)
        placed[i], left = take, left - take
        if left == 0:
            break
    return placed


def gang_fits(worker: Mapping[str, float], num_workers: int, nodes_free: Sequence[Mapping[str, float]],
              strategy: str = PACK) -> bool:
    """Whether ``place_gang`` finds a placement."""
    return place_gang(worker, num_workers, nodes_free, strategy) is not None


def take(nodes_free: list[dict[str, float]], worker: Mapping[str, float], placement: Sequence[int]) -> None:
    """Subtract a placement from the nodes' free resources, in place."""
    for node, count in zip(nodes_free, placement, strict=True):
        for name, amount in worker.items():
            node[name] = node.get(name, 0.0) - amount * count
