"""trainq's metrics for the Ray dashboard (Prometheus, names prefixed ``ray_`` by Ray)."""

from __future__ import annotations

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
        self.requeues = Counter("trainq_requeues_total", "Jobs trainq put back in the queue by itself.",
                                tag_keys=("from_status",))
        self.lost_work = Histogram("trainq_lost_work_seconds", "Work redone after an attempt stopped.",
                                   boundaries=[1, 10, 60, 300, 1800, 7200])
        self.pause_seconds = Histogram(
            "trainq_pause_seconds", "From a pause request to paused.",
            boundaries=[0.5, 1, 2, 5, 10, 30, 60, 300],
        )

    def observe(self, event: dict[str, Any]) -> None:
        """A core listener: count transitions and reports as they happen."""
        if event["type"] == "status":
            self.transitions.inc(tags={"from_status": event["previous_status"] or "new",
                                       "to_status": event["status"]})
            if event["status"] == "queued" and event["previous_status"] in ("running", "pausing", "pending"):
                self.requeues.inc(tags={"from_status": event["previous_status"]})
        elif event["type"] == "report":
            self.reports.inc()
        elif event["type"] == "preemption":
            self.preemptions.inc()
        elif event["type"] == "attempt" and event.get("lost_work"):
            self.lost_work.observe(float(event["lost_work"]["seconds"]))

    def snapshot(self, counts: dict[JobStatus, int], queue_length: int) -> None:
        """Set the gauges from the store's counts (called periodically)."""
        for status in JobStatus:
            self.jobs.set(counts.get(status, 0), tags={"status": status.value})
        self.queue_length.set(queue_length)
