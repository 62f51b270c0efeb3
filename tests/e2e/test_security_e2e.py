"""Jobs from many users must not reach the head node: on a real Ray, through the live server and the CLI.

The session's scheduler allows no head-node folder but the tests' job folder (conftest), so the
one job here, whose folder is elsewhere, runs only because the CLI uploaded it. Its module records
every process that imports it, and its train function reads the session's secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest
import ray
from helpers import API_TOKEN, JOBS_DIR, SECRET_VALUE, SECRET_VAR

pytestmark = [pytest.mark.ray, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="module")
def probe(server, client, tmp_path_factory) -> dict:
    """One tiny 2-worker job submitted with ``trainq submit --working-dir <a folder here>``, run to its end."""
    root = tmp_path_factory.mktemp("probe")
    code = root / "code"
    code.mkdir()
    shutil.copy(os.path.join(JOBS_DIR, "probe.py"), code / "probe.py")
    imports = root / "imports.jsonl"
    (code / "imports.path").write_text(str(imports))
    env = {**os.environ, "TRAINQ_URL": server, "TRAINQ_API_TOKEN": API_TOKEN}
    r = subprocess.run([sys.executable, "-m", "scheduler.cli", "--json", "submit", "--name", "probe",
                        "--entrypoint", "probe:train", "--num-workers", "2", "--working-dir", str(code),
                        "--set", f"secret_var={SECRET_VAR}"],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    done = client.wait(job["job_id"], timeout_s=180)
    return {"job": done, "code": str(code), "imports": imports, "storage_root": client.health()["storage_root"]}


def test_a_cli_submit_of_a_folder_outside_the_allowed_ones_runs_uploaded(probe) -> None:
    job = probe["job"]
    assert job["status"] == "completed", job.get("error")
    working_dir = job["spec"]["runtime_env"]["working_dir"]
    assert working_dir != probe["code"]  # the server's stored copy, not the caller's folder
    assert working_dir.startswith(os.path.join(probe["storage_root"], "packages") + os.sep)


def test_user_code_is_imported_only_in_the_training_workers(probe, client) -> None:
    records = [json.loads(line) for line in probe["imports"].read_text().splitlines()]
    assert records, "the probe module was never imported"
    titles = [r["title"] for r in records]
    assert all("RayTrainWorker" in t for t in titles), titles
    for forbidden in ("Runner", "TrainController", "SchedulerActor"):
        assert not any(forbidden in t for t in titles), titles
    assert len({r["pid"] for r in records}) == 2  # once per worker process, both ranks
    assert os.getpid() not in {r["pid"] for r in records}  # nor the submitting client or the server


def test_a_secret_reaches_the_workers_and_never_the_api_events_or_logs(probe, server, client) -> None:
    job_id = probe["job"]["job_id"]
    reports = client.reports(job_id)
    assert reports[0]["metrics"]["secret_set"] is True
    assert reports[0]["metrics"]["secret_sha256"] == hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        logs = http.get(f"/api/training/jobs/{job_id}/logs").json()
        assert any("the secret is ***" in line for lines in logs["logs"].values() for line in lines), logs
        seen = [http.get(path).text for path in (
            f"/api/training/jobs/{job_id}", "/api/training/jobs", f"/api/training/jobs/{job_id}/history",
            f"/api/training/jobs/{job_id}/metrics", f"/api/training/jobs/{job_id}/logs",
            f"/api/training/jobs/{job_id}/checkpoints", "/health", "/openapi.json")]
    seen.append(json.dumps(ray.get(client.handle.events.remote(0, None, 0))))
    assert SECRET_VALUE in os.environ[SECRET_VAR]  # the check below looks for the real value
    for body in seen:
        assert SECRET_VALUE not in body


def test_a_head_node_folder_is_refused_over_http_and_nothing_is_stored(server, tmp_path) -> None:
    elsewhere = tmp_path / "code"
    elsewhere.mkdir()
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        before = http.get("/api/training/jobs").json()["total"]
        for folder in (str(elsewhere), os.path.join(JOBS_DIR, "..", "..", "scheduler")):
            r = http.post("/api/training/jobs", json={"entrypoint": "steps:count_steps",
                                                      "runtime_env": {"working_dir": folder}})
            assert r.status_code == 403 and r.json()["field"] == "runtime_env.working_dir", folder
        r = http.post("/api/training/jobs", json={"entrypoint": "steps:count_steps", "storage_path": str(tmp_path)})
        assert r.status_code == 403 and r.json()["field"] == "storage_path"  # the admin's policy
        r = http.post("/api/training/jobs", json={"entrypoint": "steps:count_steps",
                                                  "runtime_env": {"env_vars": {"RAY_ADDRESS": "x"}}})
        assert r.status_code == 422 and "RAY_ADDRESS" in r.json()["message"]
        assert http.get("/api/training/jobs").json()["total"] == before
