"""Elastic jobs grow into a node that joins and shrink for a higher-priority job, at checkpoints,
on ``ray.cluster_utils.Cluster`` (issue 31; tests/elastic_scenario.py, run in the background)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]

#: run in the background from the session's start (tests/scenarios.py)
SCENARIO = "elastic_scenario.py"


@pytest.fixture(scope="module")
def scenario(scenarios) -> dict:
    return scenarios.result(SCENARIO)


def test_it_starts_with_what_fits_and_grows_when_a_node_joins(scenario) -> None:
    assert scenario["first_workers"] == 2, scenario  # one 2-CPU node: 2 of at most 3
    grown = scenario["grown"]
    assert grown["workers"] == 3 and grown["retries"] == 0 and grown["preemptions"] == 0, scenario


def test_a_higher_priority_job_shrinks_it_by_one_instead_of_pausing_it(scenario) -> None:
    shrunk = scenario["shrunk"]
    assert shrunk["workers"] == 2 and shrunk["preemptions"] == 1, scenario
    assert scenario["high"] == "completed" and "paused" not in scenario["elastic_states_while_high_waited"]
    reasons = [t["reason"] for t in scenario["history"]["transitions"]]
    assert any("shrinking from 3 to 2 workers for" in r for r in reasons), reasons


def test_every_step_runs_once_across_the_resizes_and_ray_ran_each_size(scenario) -> None:
    steps = scenario["steps"]
    assert steps == list(range(len(steps))), "a step ran twice or was skipped"  # cooperative: none redone
    assert scenario["done"]["status"] == "completed" and scenario["done"]["retries"] == 0
    attempts = scenario["history"]["attempts"]
    recorded = [a["workers"] for a in attempts]
    assert recorded[:3] == [2, 3, 2] and min(recorded) >= 1, recorded  # never below min
    # what the loop saw at each start: Ray Train ran the size trainq recorded, from the step after its checkpoint
    assert [size for _, size in scenario["sizes"]] == recorded, scenario["sizes"]
    assert all(first == 0 or first - 1 in steps for first, _ in scenario["sizes"])
