"""Fakes for the pure core: a launcher that records, a cluster of fixed size, a manual clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.core.runner_events import Exited, HookSeen, Reported, Started
from scheduler.jobs import Attempt, Job


@dataclass
class FakeLauncher:
    launched: list[tuple[str, int, str | None]] = field(default_factory=list)
    pauses: list[tuple[str, int]] = field(default_factory=list)
    stops: list[tuple[str, int]] = field(default_factory=list)
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    fail_launch: bool = False
    specs: dict[tuple[str, int], dict] = field(default_factory=dict)  # the spec each attempt was launched with

    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        if self.fail_launch:
            raise RuntimeError("no runner for you")
        self.launched.append((job.job_id, attempt.attempt, attempt.resumed_from))
        self.specs[(job.job_id, attempt.attempt)] = dict(job.spec)

    def request_pause(self, job_id: str, attempt: int) -> None:
        self.pauses.append((job_id, attempt))

    def stop(self, job_id: str, attempt: int) -> None:
        self.stops.append((job_id, attempt))

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        self.checkpoints.append((job_id, attempt))


@dataclass
class FakeCluster:
    total: dict[str, float] = field(default_factory=lambda: {"CPU": 4.0})
    maximum: dict[str, float] | None = None
    node_sizes: list[dict[str, float]] = field(default_factory=list)
    #: free per node right now (None: unknown, totals decide), as Ray would report it
    free_per_node: list[dict[str, float]] | None = None
    requests: list[list[dict[str, float]]] = field(default_factory=list)

    def nodes_free(self) -> list[dict[str, float]] | None:
        return None if self.free_per_node is None else [dict(n) for n in self.free_per_node]

    def nodes_free_by_id(self) -> dict[str, dict[str, float]] | None:
        return None if self.free_per_node is None else {f"node-{i}": dict(n) for i, n in enumerate(self.free_per_node)}

    def capacity(self) -> dict[str, float]:
        return dict(self.total)

    def max_capacity(self) -> dict[str, float]:
        return dict(self.maximum or self.total)

    def nodes(self) -> list[dict[str, float]]:
        return list(self.node_sizes)

    def request(self, bundles: list[dict[str, float]]) -> None:
        self.requests.append(bundles)


@dataclass
class FakeCheckpointFS:
    """Checkpoint storage where every path exists (size ``size_of``) unless deleted or marked missing."""

    missing: set[str] = field(default_factory=set)
    deleted: list[str] = field(default_factory=list)
    size_of: int = 1000

    def complete(self, path: str) -> bool:
        return path not in self.missing and path not in self.deleted

    def size(self, path: str) -> int | None:
        return self.size_of if self.complete(path) else None

    def delete(self, path: str) -> None:
        self.deleted.append(path)


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RunnerSim:
    """Sends a runner's events to the core, numbering reports as a runner does."""

    def __init__(self, core: Any, job_id: str, attempt: int) -> None:
        self.core, self.job_id, self.attempt, self.seq = core, job_id, attempt, 0

    def started(self) -> None:
        self.core.on_runner_event(Started(self.job_id, self.attempt))

    def report(self, step: int, checkpoint: str | None = None, read_checkpoint: bool | None = None) -> None:
        self.seq += 1
        self.core.on_runner_event(Reported(self.job_id, self.attempt, self.seq, self.core.clock(), {"step": step},
                                           checkpoint, read_checkpoint))

    def hook(self) -> None:
        self.core.on_runner_event(HookSeen(self.job_id, self.attempt))

    def exit(self, outcome: str, error: str | None = None, checkpoint: str | None = None,
             failure: str | None = None) -> None:
        self.core.on_runner_event(Exited(self.job_id, self.attempt, outcome, self.core.clock(), error,
                                         failure or ("user" if outcome == "failed" else None), checkpoint))
