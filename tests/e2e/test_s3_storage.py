"""Storage on S3, against a local S3 (moto's server).

A job end to end on real Ray Train: Ray Train writes the checkpoints through pyarrow's S3
filesystem, the scheduler records them as ``s3://`` URIs, checks them before a resume and reads
the logs back from the same bucket; the address reaches every Ray process through the AWS_*
variables (``local_s3`` in conftest.py). Retention and the start-up sweep drive the scheduler's
own S3 code (``StorageFS`` through pyarrow, in the deletion thread) without Ray: a runner's
reports are all they need, and the objects are written as Ray Train would write them.
"""

from __future__ import annotations

import asyncio
import uuid

import boto3
import httpx
import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import API_TOKEN, spec, wait_until

from scheduler.checkpoint_fs import BackgroundDeletes, StorageFS, arrow_fs, sweep_leftovers
from scheduler.config import Settings

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _logs(server: str, job_id: str, attempt: int) -> dict:
    r = httpx.get(f"{server}/api/training/jobs/{job_id}/logs", params={"attempt": attempt},
                  headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_s3_job_pauses_resumes_from_an_older_checkpoint_and_shows_its_logs(tq, local_s3, server) -> None:
    c = tq.c
    root = f"{local_s3['root']}/run-{uuid.uuid4().hex[:8]}"
    spec = tq.steps_spec("s3", total=8, every=2, step_s=0.3, cooperative=True, say="s3-step")
    spec["storage_path"] = root
    job_id = tq.submit(spec)["job_id"]

    wait_until(lambda: len(c.checkpoints(job_id)) >= 2, 180, "two checkpoints on S3")
    c.pause(job_id)
    paused = c.wait(job_id, "paused", timeout_s=120)
    first_steps = tq.steps_run("s3")
    checkpoints = c.checkpoints(job_id)  # newest first
    assert len(checkpoints) >= 2 and paused["checkpoint_path"] == checkpoints[0]["path"]
    objects = boto3.client("s3").list_objects_v2(Bucket=local_s3["bucket"], Prefix=root.split("/", 3)[3])
    keys = [o["Key"] for o in objects.get("Contents", [])]
    for ck in checkpoints:
        assert ck["path"].startswith(f"{root}/{job_id}/"), ck["path"]
        prefix = ck["path"].removeprefix(f"s3://{local_s3['bucket']}/") + "/"
        assert any(k.startswith(prefix) and k.endswith("state.json") for k in keys), (prefix, keys)

    first_logs = _logs(server, job_id, 1)
    assert first_logs["folder"].startswith(f"{root}/{job_id}/") and first_logs["error"] is None
    assert "s3-step 0 on rank 0" in first_logs["logs"]["rank-0"], first_logs
    assert "runner" in first_logs["logs"]

    # Resume from the oldest checkpoint, not the latest: the steps after it run again.
    oldest = checkpoints[-1]
    resumed = c.resume(job_id, checkpoint_path=oldest["path"])
    assert resumed["checkpoint_path"] == oldest["path"]
    done = c.wait(job_id, "completed", timeout_s=180)
    second_steps = tq.steps_run("s3")[len(first_steps):]
    assert second_steps == list(range(oldest["metrics"]["step"] + 1, 8)), (first_steps, second_steps)
    assert done["checkpoint_path"].startswith(f"{root}/{job_id}/")
    second_logs = _logs(server, job_id, 2)
    assert f"s3-step {oldest['metrics']['step'] + 1} on rank 0" in second_logs["logs"].get("rank-0", []), second_logs


# -- retention and the start-up sweep on S3, without Ray ---------------------------------------------
class CrashingStorage(StorageFS):
    """S3 as a scheduler that died right after recording each deletion left it: nothing removed."""

    def delete(self, path: str) -> None:
        pass


def _write_checkpoint(uri: str, step: int) -> int:
    """Two objects under ``uri``, as Ray Train uploads a checkpoint folder; their bytes."""
    filesystem, inner = arrow_fs(uri)
    blobs = {"state.json": f'{{"step": {step}}}'.encode(), "model/weights.bin": b"w" * (1000 + step)}
    for name, data in blobs.items():
        with filesystem.open_output_stream(f"{inner}/{name}") as f:
            f.write(data)
    return sum(len(d) for d in blobs.values())


def _keys(local_s3: dict, uri: str) -> list[str]:
    prefix = uri.removeprefix(f"s3://{local_s3['bucket']}/") + "/"
    listed = boto3.client("s3").list_objects_v2(Bucket=local_s3["bucket"], Prefix=prefix)
    return sorted(o["Key"].removeprefix(prefix) for o in listed.get("Contents", []))


def _s3_job(core, root: str, keep: int, steps: int) -> tuple[str, list[str], list[int]]:
    """A job on S3 whose runner reported ``steps`` checkpoints, written to S3 before each report."""
    job_id = core.submit(spec(storage_path=root, keep_checkpoints=keep))["job_id"]
    job_root = core.job_root(core.store.get_job(job_id))
    assert job_root == f"{root}/{job_id}"
    sim = RunnerSim(core, job_id, 1)
    sim.started()
    paths, sizes = [], []
    for step in range(steps):
        path = f"{job_root}/{job_id}-attempt-1/checkpoint_{step:03d}"
        sizes.append(_write_checkpoint(path, step))
        paths.append(path)
        sim.report(step, checkpoint=path, read_checkpoint=True)
    return job_id, paths, sizes


def test_retention_deletes_old_checkpoints_from_s3_and_keeps_the_rest(local_s3, make_core) -> None:
    root = f"{local_s3['root']}/retention-{uuid.uuid4().hex[:8]}"
    fs = BackgroundDeletes(StorageFS())  # as the scheduler actor has it
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), checkpoint_fs=fs, settings=Settings())
    job_id, paths, sizes = _s3_job(core, root, keep=2, steps=4)
    fs.drain(60)

    listed = {ck["path"]: ck for ck in core.checkpoints(job_id)}
    assert [listed[p]["state"] for p in paths] == ["deleted", "deleted", "kept", "kept"]
    assert [listed[p]["bytes"] for p in paths] == sizes  # measured on S3 when recorded
    for path in paths[:2]:
        assert _keys(local_s3, path) == [] and StorageFS().size(path) is None
    for path in paths[2:]:
        assert _keys(local_s3, path) == ["model/weights.bin", "state.json"]
    assert core.get(job_id)["checkpoint_bytes"] == sum(sizes[2:])
    assert core.usage("user")["checkpoint_bytes"] == sum(sizes[2:])


def test_the_start_up_sweep_removes_leftovers_from_s3(local_s3, make_core) -> None:
    root = f"{local_s3['root']}/sweep-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    crashed = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), clock=clock, checkpoint_fs=CrashingStorage(),
                        settings=Settings())
    job_id, paths, sizes = _s3_job(crashed, root, keep=1, steps=3)
    assert [ck["state"] for ck in crashed.checkpoints(job_id)] == ["kept", "deleted", "deleted"]
    assert all(_keys(local_s3, p) for p in paths)  # recorded as deleted, still on S3
    stray = f"{root}/{job_id}/{job_id}-attempt-1/not_a_checkpoint"
    _write_checkpoint(stray, 99)  # never recorded: the sweep must leave it

    clock.advance(60)
    fs = BackgroundDeletes(StorageFS())
    restarted = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), clock=clock, checkpoint_fs=fs,
                          settings=Settings())
    outcome = asyncio.run(sweep_leftovers(restarted.checkpointing, fs))
    assert outcome is not None
    assert sorted(outcome.removed) == paths[:2] and outcome.bytes_freed == sum(sizes[:2]) and not outcome.failed
    assert [bool(_keys(local_s3, p)) for p in paths] == [False, False, True]
    assert _keys(local_s3, stray) == ["model/weights.bin", "state.json"]
    clock.advance(60)
    assert asyncio.run(sweep_leftovers(restarted.checkpointing, fs)).checked == 0
