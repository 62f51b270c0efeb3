"""trainq's metrics for the Ray dashboard (Prometheus, names prefixed ``ray_`` by Ray)."""

from __future__ import annotations

import collections
from typing import Any

from .states import JobStatus


class SchedulerMetrics:
    """Gauges and counters the scheduler actor records; Ray's agent exports them."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self.jobs = Gauge("trainq_jobs", "Jobs by status.", tag_keys=("status",))
        self.queue_length = Gauge("trainq_queue_length", "Jobs waiting in the queue.")
        self.transitions = Counter("trainq_transitions_total", "Job state transitions.",
                                   tag_keys=("from_status", "to_status"))
        self.reports = Counter("trainq_reports_total", "ray.train.report calls relayed.")
        self.preemptions = Counter("trainq_preemptions_total", "Running jobs preempted for a higher priority.")
        self.starts = Counter("trainq_attempts_started_total", "Attempts started, by the accelerator type they got.",
                              tag_keys=("accelerator_type",))
        self.drains = Counter("trainq_node_drains_total", "Nodes Ray began draining (spot reclaim, maintenance).")
        self.drain_moves = Counter("trainq_drain_moves_total", "Running jobs moved off a draining node.")
        self.requeues = Counter("trainq_requeues_total", "Jobs trainq put back in the queue by itself.",
                                tag_keys=("from_status",))
        self.lost_work = Histogram("trainq_lost_work_seconds", "Work redone after an attempt stopped.",
                                   boundaries=[1, 10, 60, 300, 1800, 7200])
        self.pause_seconds = Histogram(
            "trainq_pause_seconds", "From a pause request to paused.",
            boundaries=[0.5, 1, 2, 5, 10, 30, 60, 300],
        )

        # Counts since the last ``flush``, by (counter, tags): a burst of submits or reports
        # costs a dict update each, and Ray's metrics one ``inc`` per kind, at the next tick
        # (an ``inc`` with tags was a tenth of a submit's time in the actor).
        self._pending: collections.Counter[tuple[Any, tuple[tuple[str, str], ...]]] = collections.Counter()

    def observe(self, event: dict[str, Any]) -> None:
        """A core listener: count transitions and reports as they happen (sent on ``flush``)."""
        if event["type"] == "status":
            self._pending[self.transitions, (("from_status", event["previous_status"] or "new"),
                                             ("to_status", event["status"]))] += 1
            if event["status"] == "queued" and event["previous_status"] in ("running", "pausing", "pending"):
                self._pending[self.requeues, (("from_status", event["previous_status"]),)] += 1
        elif event["type"] == "start":
            self._pending[self.starts, (("accelerator_type", event.get("accelerator_type") or "none"),)] += 1
        elif event["type"] == "report":
            self._pending[self.reports, ()] += 1
        elif event["type"] == "preemption":
            self._pending[self.drain_moves if event.get("node_id") else self.preemptions, ()] += 1
        elif event["type"] == "attempt" and event.get("lost_work"):
            self.lost_work.observe(float(event["lost_work"]["seconds"]))

    def node_drains(self, count: int) -> None:
        """``count`` nodes began draining since the last look (sent on ``flush``)."""
        self._pending[self.drains, ()] += count

    def flush(self) -> None:
        """Add the counts observed since the last flush to the counters (the actor's every tick)."""
        pending, self._pending = self._pending, collections.Counter()
        for (counter, tags), n in pending.items():
            counter.inc(n, tags=dict(tags) or None)

    def snapshot(self, counts: dict[JobStatus, int], queue_length: int) -> None:
        """Set the gauges from the store's counts (called periodically)."""
        for status in JobStatus:
            self.jobs.set(counts.get(status, 0), tags={"status": status.value})
        self.queue_length.set(queue_length)
