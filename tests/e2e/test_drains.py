"""A drain moves a job at a checkpoint, on ``ray.cluster_utils.Cluster`` (issue 30).

The cluster runs in its own process (tests/drain_scenario.py), next to the session's shared
local Ray, so the two never mix.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


#: run in the background from the session's start (tests/scenarios.py)
SCENARIO = "drain_scenario.py"


@pytest.fixture(scope="module")
def scenario(scenarios) -> dict:
    return scenarios.result(SCENARIO)


def test_the_drained_job_is_requeued_with_the_drain_as_its_reason_not_as_a_retry(scenario) -> None:
    assert scenario["drain"]["accepted"] and scenario["drain"]["reason"] == "preemption"
    requeued = scenario["requeued"]
    assert requeued["retries"] == 0 and requeued["preemptions"] == 1
    reasons = [t["reason"] for t in scenario["history"]["transitions"]
               if (t["from_status"], t["to_status"]) == ("pausing", "queued")]
    assert any(f"node {scenario['node_a'][:8]} draining (preemption: spot)" in r for r in reasons), reasons


def test_it_runs_again_on_another_node_from_a_checkpoint_taken_after_the_notice(scenario) -> None:
    assert scenario["moved_to"] != scenario["node_a"] and scenario["moved_to"] in scenario["worker_nodes"]
    resumed_from = scenario["history"]["attempts"][1]["resumed_from"]
    assert resumed_from == scenario["requeued"]["resume_from"]
    taken = next(c for c in scenario["checkpoints"] if c["path"] == resumed_from)
    assert (taken["metrics"]["step"] + 1) % 10 != 0  # off its every-10-steps schedule: saved for the notice


def test_it_completes_with_every_step_once_and_no_second_restart_when_the_node_goes(scenario) -> None:
    assert scenario["done"] == {"status": "completed", "attempt": 2, "retries": 0}
    assert scenario["steps"] == list(range(60))  # cooperative: nothing redone


def test_a_job_submitted_during_the_drain_starts_elsewhere(scenario) -> None:
    assert scenario["other_on"] not in (scenario["node_a"], None)
    assert scenario["other_done"] == "completed"


def test_the_node_views_show_real_resources_and_the_jobs_on_each_node(scenario) -> None:
    a = next(n for n in scenario["nodes_before"] if n["node_id"] == scenario["node_a"])
    assert a["resources"]["CPU"] == 1 and a["jobs"] and not a["draining"]
    for node in scenario["nodes_before"] + scenario["nodes_during"]:
        assert not any("_group_" in k or k.startswith("node:") for k in [*node["resources"], *node["free"]])
