"""Whether a gang of identical workers can be placed on the free resources of individual nodes.

Ray Train asks for one placement group of ``num_workers`` identical bundles (strategy PACK).
For identical bundles feasibility is exact and cheap: node ``i`` holds
``k_i = min over resources of floor(free_i[r] / worker[r])`` workers, and the gang fits when
``sum(k_i) >= num_workers``. The placement returned packs the gang onto as few nodes as
possible (largest holders first), as PACK tries to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

_EPS = 1e-9


def holds(worker: Mapping[str, float], node: Mapping[str, float]) -> int:
    """How many workers of this size fit on a node with ``node`` free."""
    counts = [math.floor((node.get(name, 0.0) + _EPS) / amount) for name, amount in worker.items() if amount > 0]
    return max(0, min(counts)) if counts else 1 << 30


def place_gang(worker: Mapping[str, float], num_workers: int,
               nodes_free: Sequence[Mapping[str, float]]) -> list[int] | None:
    """Workers per node (same order as ``nodes_free``) for the whole gang, or None if it cannot fit."""
    capacity = [holds(worker, node) for node in nodes_free]
    if sum(capacity) < num_workers:
        return None
    placed = [0] * len(capacity)
    left = num_workers
    for i in sorted(range(len(capacity)), key=lambda i: -capacity[i]):
        take = min(capacity[i], left)
        placed[i], left = take, left - take
        if left == 0:
            break
    return placed


def gang_fits(worker: Mapping[str, float], num_workers: int, nodes_free: Sequence[Mapping[str, float]]) -> bool:
    """Whether ``place_gang`` finds a placement."""
    return place_gang(worker, num_workers, nodes_free) is not None


def take(nodes_free: list[dict[str, float]], worker: Mapping[str, float], placement: Sequence[int]) -> None:
    """Subtract a placement from the nodes' free resources, in place."""
    for node, count in zip(nodes_free, placement, strict=True):
        for name, amount in worker.items():
            node[name] = node.get(name, 0.0) - amount * count
