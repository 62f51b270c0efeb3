"""Dependencies, a sweep and the dry run on a real local Ray (issue 33): tiny one-worker jobs on the
session's shared Ray and scheduler actor."""

from __future__ import annotations

from typing import Any

import pytest
import ray
from helpers import wait_until

from scheduler.config import NAMESPACE, SCHEDULER_NAME
from scheduler.errors import InvalidSpec
from scheduler.policy import dependencies as rule

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ACTIVE = ("pending", "running", "pausing")


def _entered(c: Any, job_id: str, status: str) -> float:
    """When the job last entered ``status`` (its recorded transition)."""
    return max(t["at"] for t in c.history(job_id)["transitions"] if t["to_status"] == status)


def test_dependencies_wait_are_cancelled_when_impossible_and_survive_a_scheduler_kill(tq) -> None:
    c = tq.c
    a = tq.submit(tq.steps_spec("dep-a", total=3))["job_id"]
    c.pause(a)  # held back while the dependents are submitted and the scheduler is killed
    b = tq.submit({**tq.steps_spec("dep-b", total=2), "depends_on": [{"job_id": a, "on": "completed"}]})["job_id"]
    on_failed = tq.submit({**tq.steps_spec("dep-c", total=2), "depends_on": [{"job_id": a, "on": "failed"}]})
    with pytest.raises(InvalidSpec) as refused:
        c.submit({**tq.steps_spec("dep-x"), "depends_on": [{"job_id": "job_00000000000000000000"}]})
    assert refused.value.fields["field"] == "depends_on" and "no job" in str(refused.value)
    # A cycle cannot be submitted at all (a dependency names a job that exists, and ids are the
    # server's): check_graph's cycle rule is tested pure (tests/policy/test_dependencies_policy.py).
    waiting = c.get(b)
    assert waiting["status"] == "queued" and waiting["pending_reason"]["code"] == "dependency"
    ray.kill(ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE), no_restart=False)
    after = wait_until(lambda: c.get(b), 60, "the restarted scheduler")
    assert after["status"] == "queued" and after["pending_reason"]["code"] == "dependency"
    assert a in after["pending_reason"]["message"]
    c.resume(a)
    assert c.wait(a, timeout_s=120)["status"] == "completed"
    assert c.wait(b, timeout_s=120)["status"] == "completed"
    assert _entered(c, b, "pending") >= _entered(c, a, "completed")  # B started only after A completed
    cancelled = c.wait(on_failed["job_id"], timeout_s=30)
    assert cancelled["status"] == "cancelled" and cancelled["error"].startswith(rule.CANCELLED_BY)
    assert tq.steps_run("dep-c") == []


def test_a_sweep_of_six_never_runs_more_than_two_and_ranks_by_its_metric(tq) -> None:
    c = tq.c
    # A quarter CPU each: the cluster could run eight at once, so only max_running holds them.
    spec = {**tq.steps_spec("sw"), "resources_per_worker": {"CPU": 0.25}, "time_limit_s": 300,
            "sweep": {"parameters": {"total": [2, 3, 4], "seed": [0, 1]}, "max_running": 2, "metric": "step",
                      "mode": "max"}}
    sweep_id = tq.submit(spec)["spec"]["sweep_id"]
    members = c.sweep(sweep_id)["jobs"]
    assert len(members) == 6
    assert sorted((m["spec"]["config"]["total"], m["spec"]["config"]["seed"]) for m in members) == \
        [(t, s) for t in (2, 3, 4) for s in (0, 1)]
    try:
        wait_until(lambda: c.sweep(sweep_id)["counts"].get("completed") == 6, 240, "the sweep to complete")
    finally:
        c.sweep_action(sweep_id, "cancel")  # whatever a failure left running (none when it completed)
    # Every transition of every member, in time order: never more than 2 pending, running or pausing.
    moves = sorted((t["at"], t["job_id"], t["to_status"]) for m in members
                   for t in c.history(m["job_id"])["transitions"])
    state: dict[str, str] = {}
    most = 0
    for _, job_id, status in moves:
        state[job_id] = status
        most = max(most, sum(s in ACTIVE for s in state.values()))
    assert most == 2
    ranked = c.sweep(sweep_id)["jobs"]
    assert [m["metrics"]["step"] for m in ranked] == [3, 3, 2, 2, 1, 1]


def _observed(c: Any, job_ids: list[str]) -> tuple[Any, ...]:
    """The registry (every job, its history and reports) and the event log, as a dry run must leave them."""
    handle = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
    events = ray.get(handle.events.remote(0, None, 0.0))
    # (Metrics are counted from these events: no event, no metric.)
    return c.list(limit=10_000), [c.history(j) for j in job_ids], [c.reports(j) for j in job_ids], events


def test_a_dry_run_on_a_full_cluster_changes_nothing_and_names_the_job_a_submit_preempts(tq, tmp_path) -> None:
    c = tq.c
    stop = tmp_path / "stop"
    # Its steps are long, so that it reports nothing (and changes nothing) while the dry runs are asked:
    # whatever differs after them is theirs.
    filler = tq.submit({**tq.steps_spec("fill", total=10**6, every=10**6, until=str(stop), cooperative=True,
                                        step_s=60, num_workers=2, min_runtime_s=0), "time_limit_s": 600})["job_id"]
    c.wait(filler, "running", timeout_s=120)
    before = _observed(c, [filler])
    low = c.submit(tq.steps_spec("dry", total=2), dry_run=True)
    assert low["dry_run"] is True and low["would_start"] is False and low["preempts"] == []
    assert low["pending_reason"]["code"] == "resources" and low["eta"] is not None
    high = c.submit(tq.steps_spec("dry", total=2, priority=5), dry_run=True)
    assert high["would_start"] is False and high["preempts"] == [filler]
    assert _observed(c, [filler]) == before
    real = tq.submit(tq.steps_spec("real", total=2, priority=5))["job_id"]
    pausing = wait_until(lambda: (j := c.get(filler))["status"] in ("pausing", "paused") and j, 30, "the preemption")
    assert pausing["preempted_by"] == real
    c.cancel(real)
    c.cancel(filler)
    stop.touch()
