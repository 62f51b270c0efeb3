"""A job whose storage is S3, end to end on real Ray Train, against a local S3 (moto's server).

Ray Train writes the checkpoints through pyarrow's S3 filesystem, the scheduler records them as
``s3://`` URIs, checks them before a resume and reads the logs back from the same bucket; the
address reaches every Ray process through the AWS_* variables (``local_s3`` in conftest.py).
"""

from __future__ import annotations

import uuid

import boto3
import httpx
import pytest
from helpers import API_TOKEN, wait_until

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
