"""The queue policy, pure."""

from __future__ import annotations

from scheduler.policy import Entry, QueueIndex, add, admit, fits, never_fits, subtract


def _q(*entries: tuple[str, int, int, float]) -> QueueIndex:
    q = QueueIndex()
    for job_id, priority, seq, cpus in entries:
        q.add(Entry(job_id, priority, seq, {"CPU": cpus}))
    return q


def test_order_is_priority_then_submission() -> None:
    q = _q(("a", 0, 1, 1), ("b", 5, 2, 1), ("c", 0, 3, 1), ("d", 5, 4, 1))
    assert [e.job_id for e in q] == ["b", "d", "a", "c"]
    assert [q.position(j) for j in "bdac"] == [1, 2, 3, 4]
    q.remove("d")
    assert q.position("a") == 2 and q.position("d") is None and len(q) == 3


def test_gang_admission_starts_only_whole_jobs() -> None:
    q = _q(("a", 0, 1, 2), ("b", 0, 2, 2), ("c", 0, 3, 2))
    assert [e.job_id for e in admit(q, {"CPU": 5})] == ["a", "b"]
    assert admit(q, {"CPU": 1.5}) == []


def test_head_of_queue_is_never_overtaken() -> None:
    q = _q(("big", 1, 1, 4), ("small", 0, 2, 1))
    assert admit(q, {"CPU": 2}) == []  # small would fit, but big is first


def test_every_resource_must_fit() -> None:
    assert fits({"CPU": 2, "GPU": 1}, {"CPU": 4, "GPU": 1})
    assert not fits({"CPU": 2, "GPU": 1}, {"CPU": 4})
    assert not fits({"accel": 0.5}, {"CPU": 4})
    assert subtract({"CPU": 4, "GPU": 2}, {"CPU": 1}, {"GPU": 2}) == {"CPU": 3, "GPU": 0}
    assert add({"CPU": 3}, {"CPU": 1}, {"GPU": 2}) == {"CPU": 4, "GPU": 2}


def test_never_fits_checks_totals_and_one_worker_per_node() -> None:
    nodes = [{"CPU": 4, "GPU": 2}, {"CPU": 4, "GPU": 2}]
    assert not never_fits({"GPU": 4}, {"GPU": 1}, {"CPU": 8, "GPU": 4}, nodes)
    assert never_fits({"GPU": 6}, {"GPU": 1}, {"CPU": 8, "GPU": 4}, nodes)
    assert never_fits({"GPU": 3}, {"GPU": 3}, {"CPU": 8, "GPU": 4}, nodes)  # no node has 3 GPUs
    assert not never_fits({"GPU": 3}, {"GPU": 3}, {"CPU": 8, "GPU": 4}, [])  # node sizes unknown


def test_admission_cost_does_not_grow_with_queue_length() -> None:
    """A decision touches only the jobs it starts plus the first that does not fit."""
    q = QueueIndex()
    for i in range(10_000):
        q.add(Entry(f"j{i}", 0, i, {"CPU": 1}))
    seen = []

    class Spy(dict):
        def get(self, k, d=None):
            seen.append(k)
            return super().get(k, d)

    admit(q, Spy({"CPU": 2}))
    assert len(seen) <= 3
