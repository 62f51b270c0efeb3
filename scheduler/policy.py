"""Queue policy, pure: which queued jobs start now (DESIGN.md, "Queue policy").

Order: higher priority first, then submission order. Admission is gang admission (all of a
job's workers fit in what trainq has not handed out, or the job waits) and strict: the head
of the queue is never overtaken, so a large job cannot be starved by a stream of small ones
and a queue position is a promise. The same ``QueueIndex`` gives the positions users see.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

Resources = dict[str, float]
_EPS = 1e-9


def queue_key(priority: int, seq: int) -> tuple[int, int]:
    """Sort key of a queued job: priority descending, then submission order."""
    return (-priority, seq)


def fits(demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """Whether every resource in ``demand`` is available in ``free``."""
    return all(amount <= free.get(name, 0.0) + _EPS for name, amount in demand.items())


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

    The whole gang must fit the cluster's totals, and one worker must fit on some node
    (a worker never spans nodes). ``nodes`` may be empty when node sizes are unknown.
    """
    if not fits(demand, max_capacity):
        return True
    node_list = list(nodes)
    return bool(node_list) and not any(fits(worker, node) for node in node_list)


@dataclass(frozen=True)
class Entry:
    """A queued job as the policy sees it."""

    job_id: str
    priority: int
    seq: int
    demand: Mapping[str, float]

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

    def head(self) -> Entry | None:
        return self._entries[self._keys[0]] if self._keys else None

    def page(self, limit: int | None = None, offset: int = 0) -> list[Entry]:
        end = None if limit is None else offset + limit
        return [self._entries[k] for k in self._keys[offset:end]]


def admit(queue: QueueIndex, free: Mapping[str, float]) -> list[Entry]:
    """The jobs to start now: from the head, while each one's whole gang fits.

    Stops at the first job that does not fit, so the cost grows with the number of jobs
    started, not with the length of the queue.
    """
    started: list[Entry] = []
    left = dict(free)
    for entry in queue.in_order():
        if not fits(entry.demand, left):
            break
        left = subtract(left, entry.demand)
        started.append(entry)
    return started
