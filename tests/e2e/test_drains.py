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


def test_the_drained_jobs_are_requeued_with_the_drain_as_their_reason_not_as_a_retry(scenario) -> None:
    assert scenario["drain"]["accepted"] and scenario["drain"]["reason"] == "preemption"
    waiting = scenario["waiting"]
    assert waiting["retries"] == 0 and waiting["preemptions"] == 1
    reasons = [t["reason"] for t in scenario["history"]["transitions"]
               if (t["from_status"], t["to_status"]) == ("pausing", "queued")]
    assert any(f"node {scenario['node_a'][:8]} draining (preemption: spot)" in r for r in reasons), reasons


def test_the_gang_moves_as_a_whole_and_waits_saying_so_while_no_other_node_has_room(scenario) -> None:
    a, b, c = scenario["node_a"], scenario["node_b"], scenario["node_c"]
    assert scenario["gang_nodes"] == sorted([a, b])  # one worker on the draining node, one on B
    reason = scenario["waiting"]["pending_reason"]
    assert reason["code"] == "resources" and ("hold 1 now" in reason["message"] or "1 free" in reason["message"])
    if scenario["a_there_after_waiting"]:  # A was still draining when the reason was read: it is named
        assert f"node {a[:8]} draining (preemption: spot): nothing new starts there" in reason["message"], reason
    assert scenario["gang_moved_to"] == sorted([b, c])  # started again once C joined, both workers off A


def test_it_runs_again_from_a_checkpoint_taken_after_the_notice(scenario) -> None:
    resumed_from = scenario["history"]["attempts"][1]["resumed_from"]
    assert resumed_from == scenario["waiting"]["resume_from"]
    taken = next(c for c in scenario["checkpoints"] if c["path"] == resumed_from)
    noticed = next(t["at"] for t in scenario["history"]["transitions"]
                   if (t["from_status"], t["to_status"]) == ("running", "pausing"))
    assert taken["at"] >= noticed and taken["attempt"] == 1  # saved for the notice (ISO times compare as text)


def test_every_job_completes_once_moved_and_removing_the_node_restarts_nothing(scenario) -> None:
    assert scenario["gang_done"] == {"status": "completed", "attempt": 2, "retries": 0}
    assert scenario["plain_done"] == {"status": "completed", "attempt": 2, "retries": 0}
    assert scenario["during_done"] == {"status": "completed", "attempt": 1, "retries": 0}


def test_a_cooperative_loop_redoes_nothing_and_a_plain_one_at_most_one_interval(scenario) -> None:
    gang, plain = scenario["steps"]["gang"], scenario["steps"]["plain"]
    assert gang == list(range(40))
    assert sorted(set(plain)) == list(range(30)) and len(plain) - len(set(plain)) <= 5  # every 5 steps
    assert scenario["plain_nodes"] == [scenario["node_a"]] and scenario["node_a"] not in scenario["plain_moved_to"]


def test_a_job_submitted_during_the_drain_does_not_start_on_the_draining_node(scenario) -> None:
    assert scenario["during_status"] == "queued"  # A has room, but drains; B is held for the gang
    assert scenario["node_a"] not in scenario["during_on"]


def test_the_node_views_show_real_resources_the_jobs_on_each_node_and_the_drain(scenario) -> None:
    a = next(n for n in scenario["nodes_before"] if n["node_id"] == scenario["node_a"])
    assert a["resources"]["CPU"] == 2 and a["jobs"] and not a["draining"]
    drained = next(n for n in scenario["nodes_draining"] if n["node_id"] == scenario["node_a"])
    assert drained["draining"] and drained["drain_reason"] == "preemption" and drained["drain_deadline_at"]
    assert drained["jobs"]  # still there, until they moved
    for node in scenario["nodes_before"] + scenario["nodes_draining"] + scenario["nodes_during"]:
        assert not any("_group_" in k or k.startswith("node:") for k in [*node["resources"], *node["free"]])
