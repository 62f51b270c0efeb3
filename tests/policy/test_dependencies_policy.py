"""The dependency and sweep rule (``policy.dependencies``), pure; and the property that matters,
through the core with a fake cluster: no job ever starts before its dependencies are met."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.core import Scheduler
from scheduler.policy import dependencies as rule
from scheduler.store import SQLiteStore


def test_verdicts_follow_the_end_states() -> None:
    table = {("completed", "completed"): rule.MET, ("completed", "failed"): rule.IMPOSSIBLE,
             ("completed", "cancelled"): rule.IMPOSSIBLE, ("completed", "running"): rule.UNMET,
             ("failed", "failed"): rule.MET, ("failed", "completed"): rule.IMPOSSIBLE,
             ("failed", "paused"): rule.UNMET, ("finished", "cancelled"): rule.MET,
             ("finished", "queued"): rule.UNMET, ("completed", None): rule.IMPOSSIBLE}
    for (on, status), expected in table.items():
        assert rule.verdict(rule.Need("a", on), status) == expected, (on, status)


def test_sweep_slots_are_given_in_queue_order_and_never_beyond_the_limit() -> None:
    queued = [rule.Conditional(f"m{i}", (), "s") for i in range(5)]
    d = rule.decide(queued, {}, {"s": 1}, {"s": 3})
    assert sorted(d.held) == ["m2", "m3", "m4"]
    assert all(code == rule.SWEEP_LIMIT for code, _ in d.held.values())
    assert d.held["m2"][1] == "sweep s has 3 members pending, running or pausing (its max_running)"
    assert rule.decide(queued[:2], {}, {"s": 1}, {"s": 1}).held["m0"][1].startswith("sweep s has 1 member pending")
    waiting = [rule.Conditional("m0", (rule.Need("a"),), "s"), *queued[1:]]
    d = rule.decide(waiting, {"a": "running"}, {}, {"s": 2})
    assert d.held["m0"][0] == rule.DEPENDENCY and "m1" not in d.held and "m2" not in d.held and "m3" in d.held


def test_check_graph_refuses_unknown_self_and_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": []}
    assert rule.check_graph("n", ["a"], graph.get) is None
    assert "no job z" in (rule.check_graph("n", ["z"], graph.get) or "")
    assert "itself" in (rule.check_graph("n", ["n"], graph.get) or "")
    graph["c"] = ["n"]  # n -> a -> b -> c -> n
    assert rule.check_graph("n", ["a"], {**graph, "n": []}.get) == "a cycle: n -> a -> b -> c -> n"


def test_combinations_and_ranking() -> None:
    assert rule.combinations({"lr": [1, 2], "s": [0]}) == [{"lr": 1, "s": 0}, {"lr": 2, "s": 0}]
    members = [{"id": 1, "metrics": {"loss": 0.3}}, {"id": 2, "metrics": {}}, {"id": 3, "metrics": {"loss": 0.1}}]
    assert [m["id"] for m in rule.rank(members, "loss", "min")] == [3, 1, 2]
    assert [m["id"] for m in rule.rank(members, "loss", "max")] == [1, 3, 2]


@st.composite
def pipelines(draw: Any) -> tuple[list[list[tuple[int, str]]], list[str]]:
    """Up to 7 jobs, each depending on some earlier ones, and each job's outcome when it runs."""
    n = draw(st.integers(2, 7))
    deps = [draw(st.lists(st.tuples(st.integers(0, max(0, i - 1)), st.sampled_from(["completed", "failed",
                                                                                     "finished"])),
                          max_size=min(i, 3), unique_by=lambda t: t[0])) if i else [] for i in range(n)]
    outcomes = [draw(st.sampled_from(["completed", "failed"])) for _ in range(n)]
    return deps, outcomes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines(), st.integers(1, 3))
def test_no_job_ever_starts_before_its_dependencies_are_met(case: Any, cpus: int) -> None:
    deps, outcomes = case
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(str(Path(tmp) / "t.db"))
        core = Scheduler(store, FakeLauncher(), FakeCluster({"CPU": cpus}), storage_root=tmp, clock=FakeClock(),
                         checkpoint_fs=FakeCheckpointFS())
        ids: list[str] = []
        violations: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            if event.get("type") == "status" and event["status"] == "pending":
                for need in core.writer.find(event["job_id"]).spec["depends_on"]:
                    dep, on = need["job_id"], need["on"]
                    status = core.writer.find(dep).status.value
                    if status not in rule.MEETS[on]:
                        violations.append(f"{event['job_id']} started with {dep} {status}, needing {on}")

        core.listeners.append(on_event)
        for i, dep in enumerate(deps):
            ids.append(core.submit(spec(depends_on=[{"job_id": ids[d], "on": on} for d, on in dep]))["job_id"])
        for _ in range(3 * len(ids)):
            started = [j for j in ids if core.get(j)["status"] == "pending"]
            if not started:
                break
            sim = RunnerSim(core, started[0], core.get(started[0])["attempt"])
            sim.started()
            sim.exit(outcomes[ids.index(started[0])])
        final = {j: core.get(j)["status"] for j in ids}
        store.close()
    assert violations == []
    # Nothing is left waiting: each job ran, or was cancelled because a dependency could never be met.
    assert set(final.values()) <= {"completed", "failed", "cancelled"}, final
