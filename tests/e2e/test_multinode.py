"""Multi-node behaviour on ``ray.cluster_utils.Cluster``: node loss, requeue, a node joining.

The cluster runs in its own process (tests/multinode_scenario.py), next to the session's shared
local Ray, so the two never mix.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


#: run in the background from the session's start (tests/scenarios.py)
SCENARIO = "multinode_scenario.py"


@pytest.fixture(scope="module")
def scenario(scenarios) -> dict:
    return scenarios.result(SCENARIO)


def test_a_gang_that_fits_the_totals_but_no_node_is_refused(scenario) -> None:
    assert "can never fit" in scenario["big_gang"]


def test_a_lost_node_requeues_the_job_which_completes_from_its_last_checkpoint(scenario) -> None:
    requeued = scenario["requeued"]
    assert requeued["status"] == "queued" and requeued["retries"] == 1 and requeued["resume_from"]
    assert scenario["while_one_node"] == "queued"  # a 2-worker gang does not fit one 1-CPU node
    assert scenario["done"] == {"status": "completed", "attempt": 2, "retries": 1}
    reasons = [t["reason"] for t in scenario["history"]["transitions"]]
    assert any("requeued from its last checkpoint (retry 1 of 3)" in r for r in reasons), reasons
    attempts = scenario["history"]["attempts"]
    assert attempts[1]["resumed_from"] == requeued["resume_from"]
    ck_step = next(c["metrics"]["step"] for c in scenario["checkpoints"] if c["path"] == requeued["resume_from"])
    steps = scenario["steps"]
    assert sorted(set(steps)) == list(range(40))  # every step done, with no user action
    second_start = len(steps) - (40 - ck_step - 1)
    assert steps[second_start] == ck_step + 1  # the second attempt started right after the checkpoint
    assert all(s > ck_step for s in set(steps) if steps.count(s) > 1)  # nothing before it redone
