"""The scheduler's Prometheus counters: observed per event, sent to Ray's metrics per tick."""

from __future__ import annotations

from typing import Any

from scheduler.metrics import SchedulerMetrics


class _Counter:
    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, str] | None]] = []

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.calls.append((value, tags))


def _status(previous: str | None, status: str) -> dict[str, Any]:
    return {"type": "status", "job_id": "j", "status": status, "previous_status": previous}


def test_counts_wait_for_the_flush_and_go_as_one_inc_per_kind() -> None:
    m = SchedulerMetrics()
    for name in ("transitions", "requeues", "reports", "preemptions"):
        setattr(m, name, _Counter())
    for _ in range(500):
        m.observe(_status(None, "queued"))
    m.observe(_status("running", "queued"))
    for _ in range(7):
        m.observe({"type": "report", "job_id": "j"})
    assert m.transitions.calls == [] and m.reports.calls == []  # nothing sent per event
    m.flush()
    assert sorted(m.transitions.calls, key=str) == sorted(
        [(500, {"from_status": "new", "to_status": "queued"}), (1, {"from_status": "running", "to_status": "queued"})],
        key=str)
    assert m.requeues.calls == [(1, {"from_status": "running"})] and m.reports.calls == [(7, None)]
    m.flush()  # nothing new: nothing sent
    assert len(m.transitions.calls) == 2 and len(m.reports.calls) == 1 and m.preemptions.calls == []


def test_starts_are_counted_by_the_accelerator_type_they_got() -> None:
    m = SchedulerMetrics()
    m.starts = _Counter()
    for accelerator in ("A100", "A100", "T4", None):
        m.observe({"type": "start", "job_id": "j", "attempt": 1, "accelerator_type": accelerator})
    m.flush()
    expected = [(2, {"accelerator_type": "A100"}), (1, {"accelerator_type": "T4"}), (1, {"accelerator_type": "none"})]
    assert sorted(m.starts.calls, key=str) == sorted(expected, key=str)


def test_the_core_announces_each_start_with_its_type(make_core) -> None:
    from fakes import FakeCluster
    from helpers import spec

    core = make_core(FakeCluster({"CPU": 2}))
    seen: list[dict[str, Any]] = []
    core.listeners.append(seen.append)
    job = core.submit(spec())["job_id"]
    starts = [e for e in seen if e["type"] == "start"]
    assert starts == [{"type": "start", "job_id": job, "attempt": 1, "accelerator_type": None, "at": starts[0]["at"]}]
