"""Queue policy, pure: which queued jobs start now (docs/design.md, "Admission per node").

Order: higher priority first, then submission order. Admission is gang admission (all of a
job's workers fit in what trainq has not handed out, and on the free resources of individual
nodes when those are known, or the job waits) and strict: the head of the queue is never
overtaken, so a large job cannot be starved by a stream of small ones and a queue position is
a promise. A job requeued after an infrastructure failure may carry ``not_before`` (a short
backoff); until then it keeps its place but is not ready, and the next ready job is the head.
The same ``QueueIndex`` gives the positions users see.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .placement import gang_fits, place_gang, take

Resources = dict[str, float]
_EPS = 1e-9


def queue_key(priority: int, seq: int) -> tuple[int, int]:
    """Sort key of a queued job: priority descending, then submission order."""
    return (-priority, seq)


def fits(demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """Whether every resource in ``demand`` is available in ``free``."""
    return all(amount <= free.get(name, 0.0) + _EPS for name, amount in demand.items())


def add(total: Mapping[str, float], *more: Mapping[str, float]) -> Resources:
    """``total`` plus everything in ``more`` (room released, demands summed)."""
    out = dict(total)
    for extra in more:
        for name, amount in extra.items():
            out[name] = out.get(name, 0.0) + amount
    return out


def subtract(total: Mapping[str, float], *used: Mapping[str, float]) -> Resources:
    """``total`` minus everything in ``used`` (resources may go negative when the cluster shrank)."""
    out = dict(total)
    for demand in used:
        for name, amount in demand.items():
            out[name] = out.get(name, 0.0) - amount
    return out


def never_fits(demand: Mapping[str, float], worker: Mapping[str, float],
               max_capacity: Mapping[str, float], nodes: Iterable[Mapping[str, float]] = ()) -> bool:
    """True when the job can not run even on an empty cluster of its largest size.

    The whole gang must fit the cluster's totals and, when node sizes are known, the nodes
    themselves (a worker never spans nodes). ``nodes`` may be empty when they are unknown.
    """
    if not fits(demand, max_capacity):
        return True
    node_list = list(nodes)
    if not node_list:
        return False
    num_workers = _workers_in(demand, worker)
    return not gang_fits(worker, num_workers, node_list)


def _workers_in(demand: Mapping[str, float], worker: Mapping[str, float]) -> int:
    for name, amount in worker.items():
        if amount > 0:
            return max(1, round(demand.get(name, 0.0) / amount))
    return 1


@dataclass(frozen=True)
class Entry:
    """A queued job as the policy sees it."""

    job_id: str
    priority: int
    seq: int
    demand: Mapping[str, float]
    worker: Mapping[str, float] = field(default_factory=dict)  # one worker's resources
    num_workers: int = 1
    not_before: float | None = None  # a requeue backoff: it may not start before this time
    types: tuple[str, ...] = ()  # accelerator types in order of preference (``policy.accelerators``)
    strategy: str = "PACK"  # its placement group's strategy (``policy.placement``)
    #: an elastic job's most workers (``num_workers`` is then its fewest, ``demand`` at that size);
    #: None: a fixed size. Admission starts it with as many as fit (``policy.elastic.start_size``).
    max_workers: int | None = None
    #: an elastic job relaunching after a resize (``core.resizing.holds``): it starts in its turn
    #: with as many as fit up to ``max_workers``, the size the resize planned, instead of at its
    #: fewest with only the room the jobs behind it leave (``policy.admission``)
    resized: bool = False
    #: a dependency or its sweep's limit holds it (``policy.dependencies``): (code, message); it
    #: keeps its place but is not ready, so it never holds up the jobs behind it
    held: tuple[str, str] | None = None

    @property
    def key(self) -> tuple[int, int]:
        return queue_key(self.priority, self.seq)


class QueueIndex:
    """The queued jobs in policy order; insert, remove and position are O(log n) lookups."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._entries: dict[tuple[int, int], Entry] = {}
        self._by_job: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, job_id: object) -> bool:
        """Whether the job is queued (O(1))."""
        return job_id in self._by_job

    def add(self, entry: Entry) -> None:
        """Queue a job (replacing any earlier entry of it)."""
        self.remove(entry.job_id)
        bisect.insort(self._keys, entry.key)
        self._entries[entry.key] = entry
        self._by_job[entry.job_id] = entry.key

    def remove(self, job_id: str) -> None:
        """Drop a job from the queue; a job not queued is ignored."""
        key = self._by_job.pop(job_id, None)
        if key is None:
            return
        del self._keys[bisect.bisect_left(self._keys, key)]
        del self._entries[key]

    def get(self, job_id: str) -> Entry | None:
        """The job's entry, or None when it is not queued (O(1))."""
        key = self._by_job.get(job_id)
        return None if key is None else self._entries[key]

    def position(self, job_id: str) -> int | None:
        """1-based position in the queue, or None when the job is not queued."""
        key = self._by_job.get(job_id)
        return None if key is None else bisect.bisect_left(self._keys, key) + 1

    def __iter__(self) -> Iterator[Entry]:
        """Entries in policy order (a snapshot, safe to mutate the index while iterating)."""
        return (self._entries[k] for k in list(self._keys))

    def in_order(self) -> Iterator[Entry]:
        """Entries in policy order, lazily and without a copy (do not change the index meanwhile)."""
        return (self._entries[k] for k in self._keys)

    def page(self, limit: int | None = None, offset: int = 0) -> list[Entry]:
        end = None if limit is None else offset + limit
        return [self._entries[k] for k in self._keys[offset:end]]


def ready(entry: Entry, now: float | None) -> bool:
    """Whether a queued job may start now (it is not held, nor waiting out a requeue backoff)."""
    return entry.held is None and (entry.not_before is None or now is None or now >= entry.not_before)


def head(queue: QueueIndex, now: float | None) -> Entry | None:
    """The first queued job that may start now: the one admission and preemption serve."""
    return next((e for e in queue.in_order() if ready(e, now)), None)


def admit(queue: QueueIndex, free: Mapping[str, float],
          nodes_free: Sequence[Mapping[str, float]] | None = None, now: float | None = None) -> list[Entry]:
    """The jobs to start now: from the head, while each one's whole gang fits.

    ``free`` is what trainq has not handed out; ``nodes_free`` (when known) is what each
    node has free now, and a gang must also be placeable there. Stops at the first job that
    does not fit (skipping jobs still in their backoff), so the cost grows with the number of jobs
    started, not with the length of the queue.
    """
    started: list[Entry] = []
    left = dict(free)
    nodes = [dict(n) for n in nodes_free] if nodes_free is not None else None
    for entry in queue.in_order():
        if not ready(entry, now):
            continue
        if not fits(entry.demand, left):
            break
        if nodes is not None and entry.worker:
            placement = place_gang(entry.worker, entry.num_workers, nodes, entry.strategy)
            if placement is None:
                break
            take(nodes, entry.worker, placement)
        left = subtract(left, entry.demand)
        started.append(entry)
    return started
