"""The seams the core is given: how it starts runners and how it sees the cluster.

The Ray shell implements both (``scheduler.actor``); the pure-core tests pass fakes.
"""

from __future__ import annotations

from typing import Protocol

from ..jobs import Attempt, Job
from ..policy import Resources


class Launcher(Protocol):
    """Starts and stops runners; the Ray shell implements it, tests fake it."""

    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        """Start a runner for ``attempt`` (asynchronously; it reports back through events)."""

    def request_pause(self, job_id: str, attempt: int) -> None:
        """Ask the attempt's runner to stop right after its next checkpoint report."""

    def stop(self, job_id: str, attempt: int) -> None:
        """Stop the attempt now and free its resources; a runner already gone is fine."""

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        """Ask the attempt's runner to have the loop checkpoint at its next step and go on."""


class Cluster(Protocol):
    """The cluster's size as Ray reports it."""

    def capacity(self) -> Resources:
        """Total resources now."""

    def max_capacity(self) -> Resources:
        """The most the cluster can grow to (equal to ``capacity`` without an autoscaler)."""

    def nodes(self) -> list[Resources]:
        """Per-node totals of the nodes the cluster can have (may be empty when unknown)."""

    def nodes_free(self) -> list[Resources] | None:
        """What each live node has free right now, or None when unknown (then totals decide)."""

    def nodes_free_by_id(self) -> dict[str, Resources] | None:
        """``nodes_free`` keyed by node id (one read: ids and resources of the same refresh)."""

    def request(self, bundles: list[Resources]) -> None:
        """Ask the autoscaler for these bundles (no-op without one)."""
