"""Quotas with borrowing on a real local Ray (2 CPUs): a borrowing job is paused at a checkpoint when
its capacity's guaranteed owner submits, and comes back by itself from that checkpoint."""

from __future__ import annotations

import pytest
from test_ray_e2e import _legal_history, _step_of_checkpoint, _wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

USERS = """
users:
  alice:
    token: "alice-e2e-token"
    quota: {guaranteed: {CPU: 1}, max: {CPU: 2}}
  bob:
    token: "bob-e2e-token-1"
    quota: {guaranteed: {CPU: 1}, max: {CPU: 2}}
"""


@pytest.fixture
def users(tq, tmp_path):
    """The session's scheduler with this users file for one test (Ray callers are trusted)."""
    import ray

    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    ray.get(tq.c.handle.reload_users.remote(str(path)))
    yield path
    ray.get(tq.c.handle.reload_users.remote(""))


def test_a_borrowing_job_is_reclaimed_at_a_checkpoint_and_resumes_by_itself(tq, users) -> None:
    c = tq.c
    submitted: list[str] = []

    def submit(name: str, owner: str, **config: object) -> dict:
        job = c.submit(tq.steps_spec(name, min_runtime_s=0, **config), owner=owner)
        submitted.append(job["job_id"])
        return job

    try:
        _reclaim_and_resume(c, tq, submit)
    finally:
        for job_id in submitted:
            if c.get(job_id)["status"] in ("queued", "pending", "running", "pausing", "paused"):
                c.cancel(job_id)


def _reclaim_and_resume(c, tq, submit) -> None:
    own = submit("own", "alice", total=400, every=3, step_s=0.1)
    lent = submit("lent", "alice", total=40, every=3, step_s=0.1)
    for job in (own, lent):
        c.wait(job["job_id"], "running", timeout_s=120)
    assert c.get(own["job_id"])["borrowing"] is False and c.get(lent["job_id"])["borrowing"] is True
    _wait_for(lambda: c.checkpoints(lent["job_id"]), timeout_s=120, what="a checkpoint of the borrowing job")

    theirs = submit("theirs", "bob", total=4, step_s=0.05)
    victim = c.get(lent["job_id"])
    assert victim["status"] == "pausing" and victim["preempted_by"] == theirs["job_id"]
    assert c.get(own["job_id"])["status"] == "running"  # within alice's guarantee: untouched

    assert c.wait(theirs["job_id"], timeout_s=180)["status"] == "completed"
    done = c.wait(lent["job_id"], "completed", timeout_s=240)
    assert done["attempt"] == 2 and done["preemptions"] == 1
    history = _legal_history(c, lent["job_id"])
    requeue = next(t for t in history if t["from_status"] == "pausing" and t["to_status"] == "queued")
    assert requeue["reason"].startswith(f"preempted by {theirs['job_id']}")
    assert all(t["to_status"] != "paused" for t in history)  # it came back by itself
    resumed_from = c.history(lent["job_id"])["attempts"][1]["resumed_from"]
    ck_step = _step_of_checkpoint(c, lent["job_id"], resumed_from)
    steps = tq.steps_run("lent")
    assert sorted(set(steps)) == list(range(40))
    assert all(s > ck_step for s in {s for s in steps if steps.count(s) > 1})  # nothing before it redone
