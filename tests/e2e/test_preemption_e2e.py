"""Preemption, derived pause deadlines and resumability on a real local Ray (2 CPUs) with real runs.

The step-counting job logs every step it executes (and every checkpoint it saves), so a test
sees which steps ran twice, where each attempt started, and what a pause cost.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from test_ray_e2e import _legal_history, _step_of_checkpoint, _wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _transition(c, job_id: str, to: str, nth: int = 0) -> dict:
    return [t for t in c.history(job_id)["transitions"] if t["to_status"] == to][nth]


def test_a_high_priority_job_preempts_a_plain_one_which_comes_back_and_loses_nothing(tq) -> None:
    c = tq.c
    total = 40
    low = tq.submit(tq.steps_spec("low", total=total, every=5, step_s=0.15, num_workers=2, min_runtime_s=0))
    c.wait(low["job_id"], "running", timeout_s=120)
    _wait_for(lambda: len(tq.steps_run("low")) >= 7, what="the low job under way")
    high = tq.submit(tq.steps_spec("high", total=6, step_s=0.05, num_workers=2, priority=10))
    assert c.get(high["job_id"])["status"] == "queued"
    victim = c.get(low["job_id"])
    assert victim["status"] == "pausing" and victim["preempted_by"] == high["job_id"]

    assert c.wait(high["job_id"], timeout_s=180)["status"] == "completed"
    done = c.wait(low["job_id"], "completed", timeout_s=240)
    assert done["preemptions"] == 1 and done["attempt"] == 2

    history = _legal_history(c, low["job_id"])
    requeue = next(t for t in history if t["from_status"] == "pausing" and t["to_status"] == "queued")
    assert requeue["reason"].startswith(f"preempted by {high['job_id']}")
    assert all(t["to_status"] != "paused" for t in history)  # never a person's "paused"
    # the high job ran while the low one was away, and the low one finished after it
    assert _transition(c, high["job_id"], "pending")["at"] >= requeue["at"]
    assert done["finished_at"] > c.get(high["job_id"])["finished_at"]

    steps = tq.steps_run("low")
    assert sorted(set(steps)) == list(range(total))  # every step done
    resumed_from = c.history(low["job_id"])["attempts"][1]["resumed_from"]
    ck_step = _step_of_checkpoint(c, low["job_id"], resumed_from)
    redone = sorted(s for s in set(steps) if steps.count(s) > 1)
    assert all(s > ck_step for s in redone)  # nothing before its checkpoint ran twice
    second_start = len(steps) - (total - ck_step - 1)
    assert steps[second_start] == ck_step + 1


def test_of_two_victims_the_one_with_the_fresher_checkpoint_is_chosen(tq) -> None:
    c = tq.c
    stale = tq.submit(tq.steps_spec("stale", total=400, ckpt_at=[1], step_s=0.1, min_runtime_s=0))
    fresh = tq.submit(tq.steps_spec("fresh", total=400, every=2, step_s=0.1, min_runtime_s=0))
    for job in (stale, fresh):
        c.wait(job["job_id"], "running", timeout_s=120)
        _wait_for(lambda j=job: c.checkpoints(j["job_id"]), what="a first checkpoint")
    time.sleep(2.0)  # the stale job's only checkpoint ages
    high = tq.submit(tq.steps_spec("high1", total=3, step_s=0.05, priority=5))
    assert c.get(fresh["job_id"])["status"] == "pausing"
    assert c.get(stale["job_id"])["status"] == "running"
    assert c.wait(high["job_id"], timeout_s=180)["status"] == "completed"
    assert c.wait(fresh["job_id"], "running", timeout_s=180)["attempt"] == 2
    for job in (stale, fresh):
        c.cancel(job["job_id"])


def test_young_or_unpreemptible_jobs_are_not_preempted(tq) -> None:
    c = tq.c
    young = tq.submit(tq.steps_spec("young", total=400, every=4, step_s=0.1, min_runtime_s=3600))
    pinned = tq.submit(tq.steps_spec("pinned", total=400, every=4, step_s=0.1, preemptible=False, min_runtime_s=0))
    for job in (young, pinned):
        c.wait(job["job_id"], "running", timeout_s=120)
    high = tq.submit(tq.steps_spec("high2", total=3, priority=9))
    time.sleep(3.0)  # several scheduler ticks
    assert c.get(high["job_id"])["status"] == "queued"
    assert {c.get(j["job_id"])["status"] for j in (young, pinned)} == {"running"}
    assert all(c.get(j["job_id"])["preemptions"] == 0 for j in (young, pinned))
    c.cancel(young["job_id"])  # room: the waiting job starts
    assert c.wait(high["job_id"], timeout_s=180)["status"] == "completed"
    c.cancel(pinned["job_id"])


def test_a_pause_without_deadline_of_a_job_that_never_checkpoints_still_ends(tq) -> None:
    c = tq.c
    never = tq.submit(tq.steps_spec("never", total=10_000, every=100_000, step_s=0.1, num_workers=2))
    behind = tq.submit(tq.steps_spec("behind", total=3, step_s=0.05, num_workers=2))
    c.wait(never["job_id"], "running", timeout_s=120)
    answer = c.pause(never["job_id"])
    assert answer["deadline_at"] and "no checkpoint reported yet" in answer["message"]
    assert _t(answer["deadline_at"]) - time.time() <= 10.5  # the tests' default deadline (conftest)
    paused = c.wait(never["job_id"], "paused", timeout_s=60)
    assert _t(paused["paused_at"]) <= _t(answer["deadline_at"]) + 5  # the deadline, plus the stop
    assert "pause deadline passed" in _transition(c, never["job_id"], "paused")["reason"]
    assert c.wait(behind["job_id"], timeout_s=180)["status"] == "completed"  # its CPUs came back


def test_a_pause_of_a_checkpointing_job_lands_at_a_checkpoint_as_expected(tq) -> None:
    c = tq.c
    job = tq.submit(tq.steps_spec("cadence", total=400, every=8, step_s=0.25, num_workers=2))
    job_id = job["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: len(c.checkpoints(job_id)) >= 3, timeout_s=120, what="a few checkpoints")
    answer = c.pause(job_id)
    assert "checkpoints about every" in answer["message"] and answer["expected_paused_by"]
    paused = c.wait(job_id, "paused", timeout_s=120)
    reason = _transition(c, job_id, "paused")["reason"]
    assert reason == "stopped right after a checkpoint report"  # not the deadline
    interval = 8 * 0.25 * 2  # a generous checkpoint interval on this machine
    assert _t(paused["paused_at"]) - _t(answer["expected_paused_by"]) <= interval
    assert _t(paused["paused_at"]) < _t(answer["deadline_at"])
    c.cancel(job_id)


RAY_EXAMPLE = "ray.train.examples.pytorch.torch_linear_example:train_func"


def test_a_function_that_never_reads_its_checkpoint_is_flagged_not_resumable(tq) -> None:
    c = tq.c
    job = tq.submit({"name": "ray-example", "entrypoint": RAY_EXAMPLE, "num_workers": 2,
                     "config": {"lr": 1e-2, "hidden_size": 1, "batch_size": 4, "epochs": 400}})
    job_id = job["job_id"]
    _wait_for(lambda: c.get(job_id)["resumable"] is not None, timeout_s=120, what="the first report")
    running = c.get(job_id)
    assert running["resumable"] is False and "never calls ray.train.get_checkpoint()" in running["warning"]
    time.sleep(1.0)
    answer = c.pause(job_id)
    assert "starts it over" in answer["message"]
    paused = c.wait(job_id, "paused", timeout_s=60)
    started = _t(_transition(c, job_id, "pending")["at"])
    lost = paused["lost_work"]
    assert lost["since_checkpoint"] is None and lost["reports"] == len(c.reports(job_id))
    assert lost["seconds"] >= _t(paused["paused_at"]) - started - 15  # the whole attempt, not since a checkpoint
    assert "starts it over" in paused["warning"]

    reads = tq.submit(tq.steps_spec("reads", total=6, step_s=0.05))
    assert c.wait(reads["job_id"], timeout_s=120)["status"] == "completed"
    done = c.get(reads["job_id"])
    assert done["resumable"] is True and done["warning"] is None
    c.cancel(job_id)


def test_time_slicing_takes_turns_at_checkpoints_and_every_step_runs(tq) -> None:
    """Two equal whole-cluster jobs with 3 s slices: the running one makes way right after a
    checkpoint for the one that waits, then comes back from that checkpoint; every step is done."""
    import ray

    c, total = tq.c, 60
    ray.get(c.handle.set_time_slice.remote(3))
    try:
        a = tq.submit(tq.steps_spec("slice-a", total=total, every=4, step_s=0.1, num_workers=2, min_runtime_s=0))
        c.wait(a["job_id"], "running", timeout_s=120)
        b = tq.submit(tq.steps_spec("slice-b", total=8, every=4, step_s=0.1, num_workers=2, min_runtime_s=0))
        assert c.wait(b["job_id"], "completed", timeout_s=300)["status"] == "completed"
        done = c.wait(a["job_id"], "completed", timeout_s=300)
    finally:
        ray.get(c.handle.set_time_slice.remote(0))
    assert done["attempt"] >= 2  # it made way for b
    history = c.history(a["job_id"])
    rotation = next(t for t in history["transitions"] if t["to_status"] == "pausing")
    assert rotation["reason"].startswith(f"time slice of 3s over; making way for {b['job_id']}")
    steps = tq.steps_run("slice-a")
    assert sorted(set(steps)) == list(range(total))  # every step done
    # each later turn started from a checkpoint the job recorded (a lookup that fails otherwise)
    resumed = [_step_of_checkpoint(c, a["job_id"], att["resumed_from"]) for att in history["attempts"][1:]]
    redone = sorted(s for s in set(steps) if steps.count(s) > 1)
    assert all(s > min(resumed) for s in redone)
