"""Checkpoint retention, pinning, refusing gone checkpoints and the start-up sweep on a real local
Ray with real runs.

What is on disk is checked against what trainq lists: a ``kept`` or ``pinned`` checkpoint's
folder exists and holds the step it was recorded with; a ``deleted`` one's folder is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import ray
from test_ray_e2e import _legal_history, _wait_for

from scheduler.config import NAMESPACE, SCHEDULER_NAME
from scheduler.errors import CheckpointMissing

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _on_disk(path: str) -> bool:
    return os.path.isdir(path) and bool(os.listdir(path))


def _disk_matches_listing(c, job_id: str) -> list[dict]:
    """Wait until the background deletions are done and the folders match the listing."""
    def settled() -> list[dict] | None:
        cks = c.checkpoints(job_id)
        return cks if all(_on_disk(ck["path"]) == (ck["state"] != "deleted") for ck in cks) else None
    return _wait_for(settled, timeout_s=30, what="checkpoint folders to match the listing")


def _saved_step(path: str) -> int:
    with open(os.path.join(path, "state.json")) as f:
        return json.load(f)["step"]


def _checkpoint_count(c, job_id: str, attempt: int) -> int:
    return len([ck for ck in c.checkpoints(job_id) if ck["attempt"] == attempt])


def test_keep_two_across_pauses_with_a_pin_and_every_kept_checkpoint_resumes(tq) -> None:
    c = tq.c
    # A first checkpoint at step 1, then a gap (time to pin it before the rule could delete it),
    # then one every 3 steps.
    spec = tq.steps_spec("keep2", total=36, ckpt_at=[1, *range(14, 36, 3)], step_s=0.1, cooperative=True)
    spec["keep_checkpoints"] = 2
    job_id = tq.submit(spec)["job_id"]
    assert c.get(job_id)["spec"]["keep_checkpoints"] == 2

    # attempt 1: pin its first checkpoint, pause once it has made a few more
    c.wait(job_id, "running", timeout_s=120)
    first = _wait_for(lambda: c.checkpoints(job_id), what="a first checkpoint")[-1]
    assert c.pin_checkpoint(job_id, first["path"])["state"] == "pinned"
    _wait_for(lambda: _checkpoint_count(c, job_id, 1) >= 4, what="four checkpoints in attempt 1")
    c.pause(job_id)
    assert c.wait(job_id, timeout_s=60)["status"] == "paused"
    cks = _disk_matches_listing(c, job_id)
    live = [ck for ck in cks if ck["state"] != "deleted"]
    assert [ck["state"] for ck in live] == ["kept", "kept", "pinned"] and live[-1]["path"] == first["path"]
    assert len(cks) >= 5 and {ck["state"] for ck in cks[2:-1]} == {"deleted"}
    for ck in live:  # each folder still holds what it was recorded with
        assert _saved_step(ck["path"]) == ck["metrics"]["step"] and ck["bytes"] > 0
    job = c.get(job_id)
    assert job["checkpoint_bytes"] == sum(ck["bytes"] for ck in live)

    # attempt 2: resume from the older kept one (not the latest): it starts right after its step;
    # a second pause once it has made two checkpoints
    older_kept = live[1]
    log_before = len(tq.steps_run("keep2"))
    result = c.resume(job_id, checkpoint_path=older_kept["path"])
    assert result["checkpoint_path"] == older_kept["path"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: _checkpoint_count(c, job_id, 2) >= 2, what="two checkpoints in attempt 2")
    assert tq.steps_run("keep2")[log_before] == older_kept["metrics"]["step"] + 1
    c.pause(job_id)
    assert c.wait(job_id, timeout_s=60)["status"] == "paused"
    cks = _disk_matches_listing(c, job_id)
    live = [ck for ck in cks if ck["state"] != "deleted"]
    assert [(ck["attempt"], ck["state"]) for ck in live] == [(2, "kept"), (2, "kept"), (1, "pinned")]

    # attempt 3: resume from the pinned one, the oldest of all, and run to the end
    log_before = len(tq.steps_run("keep2"))
    c.resume(job_id, checkpoint_path=first["path"])
    done = c.wait(job_id, "completed", timeout_s=180)
    assert tq.steps_run("keep2")[log_before] == first["metrics"]["step"] + 1
    cks = _disk_matches_listing(c, job_id)
    live = [ck for ck in cks if ck["state"] != "deleted"]
    assert [ck["state"] for ck in live] == ["kept", "kept", "pinned"]
    assert live[0]["path"] == done["checkpoint_path"] and live[0]["metrics"]["step"] == 35
    assert live[2]["path"] == first["path"] and _saved_step(first["path"]) == first["metrics"]["step"]
    assert len(cks) - len(live) >= 6  # the rule really deleted, across all three attempts
    _legal_history(c, job_id)


def test_a_restarted_scheduler_sweeps_checkpoints_recorded_as_deleted(tq) -> None:
    c = tq.c
    spec = tq.steps_spec("sweep", total=4, every=1, step_s=0.05, cooperative=True)
    spec["keep_checkpoints"] = 1
    job_id = tq.submit(spec)["job_id"]
    assert c.wait(job_id, timeout_s=180)["status"] == "completed"
    cks = _disk_matches_listing(c, job_id)
    deleted = [ck for ck in cks if ck["state"] == "deleted"]
    kept = [ck for ck in cks if ck["state"] != "deleted"]
    assert len(deleted) >= 2 and len(kept) == 1
    # What a crash between recording a deletion and removing the folder leaves behind.
    for ck in deleted:
        shutil.copytree(kept[0]["path"], ck["path"])
    stray = os.path.join(os.path.dirname(kept[0]["path"]), "not_recorded")
    shutil.copytree(kept[0]["path"], stray)

    ray.kill(ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE), no_restart=False)
    _wait_for(lambda: not any(os.path.exists(ck["path"]) for ck in deleted), timeout_s=60,
              what="the restarted scheduler to sweep the folders recorded as deleted")
    assert _saved_step(kept[0]["path"]) == kept[0]["metrics"]["step"] and _on_disk(stray)
    assert [ck["state"] for ck in c.checkpoints(job_id)] == [ck["state"] for ck in cks]


def test_a_checkpoint_deleted_by_hand_is_refused_and_a_plain_resume_falls_back(tq) -> None:
    c = tq.c
    spec = tq.steps_spec("byhand", total=24, every=3, step_s=0.1, cooperative=True)
    spec["keep_checkpoints"] = None  # keep all: only the hand deletes here
    job_id = tq.submit(spec)["job_id"]
    c.wait(job_id, "running", timeout_s=120)
    _wait_for(lambda: len(c.checkpoints(job_id)) >= 2, what="two checkpoints")
    c.pause(job_id)
    paused = c.wait(job_id, timeout_s=60)
    assert paused["status"] == "paused"
    latest = paused["checkpoint_path"]
    older = next(ck for ck in c.checkpoints(job_id) if ck["path"] != latest)
    shutil.rmtree(latest)

    with pytest.raises(CheckpointMissing) as err:
        c.resume(job_id, checkpoint_path=latest)
    assert err.value.fields["checkpoint_path"] == latest and err.value.fields["newest_existing"] == older["path"]
    assert latest in err.value.message and "missing or empty" in err.value.message
    after = c.get(job_id)
    assert after["status"] == "paused" and after["resume_from"] == paused["resume_from"]
    assert after["updated_at"] == paused["updated_at"]  # nothing changed

    log_before = len(tq.steps_run("byhand"))
    result = c.resume(job_id)
    assert result["checkpoint_path"] == older["path"]
    assert latest in result["message"] and f"resumes from {older['path']}" in result["message"]
    done = c.wait(job_id, "completed", timeout_s=180)
    assert done["error"] is None
    assert tq.steps_run("byhand")[log_before] == older["metrics"]["step"] + 1


def test_hf_workload_checkpoints_are_counted_and_removed(tq, tmp_path) -> None:
    from scheduler.demo import demo_spec

    c = tq.c
    spec = demo_spec(steps=12, data=str(tmp_path / "data.txt"))
    spec["num_workers"] = 1
    spec["keep_checkpoints"] = 2
    spec["config"].update(save_steps=3, logging_steps=3)
    job_id = tq.submit(spec)["job_id"]
    started = time.monotonic()
    done = c.wait(job_id, timeout_s=240)
    assert done["status"] == "completed", done["error"]
    cks = _disk_matches_listing(c, job_id)
    # saves at steps 3, 6, 9, 12, then the final model: the two newest stay
    assert [ck["metrics"]["global_step"] for ck in cks] == [12, 12, 9, 6, 3]
    assert [ck["state"] for ck in cks] == ["kept", "kept", "deleted", "deleted", "deleted"]
    assert cks[0]["path"] == done["checkpoint_path"] and os.path.isfile(os.path.join(cks[0]["path"], "config.json"))
    assert os.path.isdir(os.path.join(cks[1]["path"], "checkpoint"))  # the HF checkpoint-N folder, resumable
    assert all(ck["bytes"] > 10_000 for ck in cks)  # a model's weights, measured when recorded
    assert done["checkpoint_bytes"] == cks[0]["bytes"] + cks[1]["bytes"]
    print(f"hf retention run: {time.monotonic() - started:.1f}s")
