"""Accelerator types, a gang that never mixes them, and node-aware preemption on
``ray.cluster_utils.Cluster`` (tests/accelerator_scenario.py, in its own process beside the
session's shared local Ray, so the two never mix)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


#: run in the background from the session's start (tests/scenarios.py)
SCENARIO = "accelerator_scenario.py"


@pytest.fixture(scope="module")
def scenario(scenarios) -> dict:
    return scenarios.result(SCENARIO)


def test_a_type_the_cluster_lacks_is_refused_naming_the_types_it_has(scenario) -> None:
    refused = scenario["refused"]["unknown"]
    assert refused["type"] == "UnknownAcceleratorType"
    assert "H100" in refused["message"] and "the types it has: A100, T4" in refused["message"]


def test_a_gang_that_would_have_to_mix_types_is_refused(scenario) -> None:
    # one GPU of each type: two workers fit the totals only by mixing A100 and T4
    assert scenario["refused"]["mixed"]["type"] == "DoesNotFit"


def test_the_preferred_type_when_free_and_the_next_when_not(scenario) -> None:
    nodes = scenario["nodes"]
    assert scenario["attempt_types"] == {"first": "A100", "second": "T4"}
    assert [nodes[n] for n in scenario["where"]["first"]] == ["A100"]  # where Ray really ran it
    assert [nodes[n] for n in scenario["where"]["second"]] == ["T4"]
    assert scenario["jobs"]["first"]["status"] == scenario["jobs"]["second"]["status"] == "completed"


def test_a_strict_pack_job_preempts_only_the_job_whose_node_then_holds_it_whole(scenario) -> None:
    jobs, nodes = scenario["jobs"], scenario["nodes"]
    high = jobs["high"]
    assert high["status"] == "completed" and high["attempt"] == 1, scenario
    victims = [name for name in ("low_a", "low_b") if jobs[name]["preemptions"]]
    assert len(victims) == 1, jobs
    victim = victims[0]
    spared = "low_b" if victim == "low_a" else "low_a"
    assert jobs[victim]["preemptions"] == 1
    assert jobs[spared]["preemptions"] == 0 and jobs[spared]["attempt"] == 1
    seen = {tuple(s) for s in scenario["low_states_seen"]}  # every state polled while the high job waited
    assert {s for s in seen if s[0] == spared} == {(spared, "running")}, scenario  # never paused, not even asked
    assert (victim, "pausing") in seen or (victim, "queued") in seen, scenario
    placed = {nodes[n] for n in scenario["where"]["high"]}
    assert placed == {victim[-1]}, scenario  # both workers on the victim's node ("a" or "b")
