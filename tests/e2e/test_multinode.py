"""Multi-node behaviour on ``ray.cluster_utils.Cluster``: node loss, requeue, a node joining.

The cluster runs in its own process (tests/multinode_scenario.py), next to the session's shared
local Ray, so the two never mix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import TESTS_DIR

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("multinode")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, str(TESTS_DIR / "multinode_scenario.py"), str(tmp)],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT "):])


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
