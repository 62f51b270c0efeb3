"""End to end through a real uvicorn server on a real local Ray, and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from helpers import API_TOKEN, JOBS_DIR, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _spec(name: str, log: str, **config: object) -> dict:
    return {"name": name, "entrypoint": "steps:count_steps", "num_workers": 2, "backend": "none",
            "runtime_env": {"working_dir": JOBS_DIR}, "config": {"log": log, **config}}


def _wait(http: httpx.Client, job_id: str, statuses: set[str], timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/api/training/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"{job_id} never reached {statuses}")


class StreamReader(threading.Thread):
    """Collects (event, data) pairs from an SSE stream in the background."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.stop = url, [], False

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=AUTH, timeout=httpx.Timeout(10, read=None)) as r:
            event = None
            for line in r.iter_lines():
                if self.stop:
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((event, json.loads(line[5:])))


def test_submit_pause_resume_complete_over_http_with_a_live_stream(server, tmp_path) -> None:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        assert httpx.get(f"{server}/api/training/jobs").status_code == 401
        health = httpx.get(f"{server}/health").json()
        assert health["ok"] is True and health["role"] == "leader"  # it holds its registry's lease

        r = http.post("/api/training/jobs", json=_spec("http", str(tmp_path / "http.log"),
                                                       total=30, every=4, step_s=0.15))
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        reader = StreamReader(f"{server}/api/training/jobs/{job_id}/events")
        reader.start()
        _wait(http, job_id, {"running"})
        while len(http.get(f"/api/training/jobs/{job_id}/metrics").json()) < 5:
            time.sleep(0.1)

        pause = http.post(f"/api/training/pause/{job_id}").json()
        assert pause["success"] is True and pause["job_id"] == job_id
        assert (pause["previous_status"], pause["status"]) == ("running", "pausing")
        assert pause["message"]
        paused = _wait(http, job_id, {"paused"})
        assert paused["checkpoint_path"] and paused["paused_at"]
        listed = http.get("/api/training/jobs", params={"status": "paused"}).json()
        assert job_id in [j["job_id"] for j in listed["jobs"]]

        resume = http.post(f"/api/training/resume/{job_id}").json()
        assert set(resume) == {"success", "job_id", "previous_status", "status", "checkpoint_path",
                               "queue_position", "message"}
        assert resume["checkpoint_path"] == paused["checkpoint_path"] and resume["queue_position"] == 1
        done = _wait(http, job_id, {"completed"})
        assert done["attempt"] == 2
        time.sleep(1.0)
        reader.stop = True

        statuses = [d["status"] for e, d in reader.events if e == "status"]
        assert reader.events[0][0] == "snapshot"
        if statuses[:1] == ["pending"]:  # on a loaded machine the stream can be up before its start is announced
            statuses = statuses[1:]
        assert statuses == ["running", "pausing", "paused", "queued", "pending", "running", "completed"]
        steps = [d["metrics"]["step"] for e, d in reader.events if e == "report"]
        history = [m["metrics"]["step"] for m in http.get(f"/api/training/jobs/{job_id}/metrics").json()]
        assert steps == history[-len(steps):]  # the stream saw the reports in order
        assert steps[-1] == 29
        logs = http.get(f"/api/training/jobs/{job_id}/logs").json()
        assert logs["attempt"] == 2 and "rank-0" in logs["logs"] and "runner" in logs["logs"]
        cks = http.get(f"/api/training/jobs/{job_id}/checkpoints").json()
        assert cks[0]["path"] == done["checkpoint_path"] and {c["attempt"] for c in cks} == {1, 2}


def _cli(server: str, *args: str, token: str | None = API_TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINQ_URL": server}
    env.pop("TRAINQ_API_TOKEN", None)
    if token:
        env["TRAINQ_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], check=False, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_drives_the_lifecycle_against_the_live_server(server, tmp_path) -> None:
    log = tmp_path / "cli.log"
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(f"name: cli-job\nentrypoint: steps:count_steps\nnum_workers: 2\nbackend: none\n"
                         f"config:\n  every: 4\n  step_s: 0.15\n  log: {log}\n")
    r = _cli(server, "--json", "submit", str(spec_file), "--working-dir", JOBS_DIR, "--set", "total=24")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    job_id = job["job_id"]
    assert job["spec"]["config"]["total"] == 24 and job["name"] == "cli-job"

    r = _cli(server, "list")
    assert r.returncode == 0 and job_id in r.stdout and "STATUS" in r.stdout
    while not log.exists() or len(log.read_text().split()) < 4:
        time.sleep(0.2)
    r = _cli(server, "pause", job_id, "--wait")
    assert r.returncode == 0, r.stderr
    assert "running -> pausing" in r.stdout and f"{job_id}: paused at " in r.stdout
    r = _cli(server, "status", job_id)
    assert r.returncode == 0 and "PAUSED" in r.stdout and "checkpoint_path" in r.stdout
    r = _cli(server, "checkpoints", job_id)
    assert r.returncode == 0 and "step=" in r.stdout
    assert _cli(server, "pause", job_id).returncode == 0  # already paused: fine, nothing changes

    r = _cli(server, "resume", job_id)
    assert r.returncode == 0 and "paused -> queued" in r.stdout
    r = _cli(server, "watch", job_id)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-> completed" in r.stdout and "/24" in r.stdout  # progress toward the known total
    r = _cli(server, "logs", job_id, "--tail", "5")
    assert r.returncode == 0 and "==> attempt 2 runner <==" in r.stdout

    # exit codes a script can rely on
    assert _cli(server, "status", "job_nope").returncode == 3
    r = _cli(server, "pause", job_id)
    assert r.returncode == 4 and "cannot pause" in r.stderr
    r = _cli(server, "submit", "--entrypoint", "steps:count_steps", "--num-workers", "0")
    assert r.returncode == 5 and "num_workers" in r.stderr
    r = _cli(server, "list", token=None)
    assert r.returncode == 6 and "token" in r.stderr
    r = _cli("http://127.0.0.1:9", "list")
    assert r.returncode == 7 and "cannot reach trainq" in r.stderr


def test_reprioritize_and_checkpoint_now_over_http_and_the_cli(server, tmp_path) -> None:
    ckpt_log = tmp_path / "ckpts.log"
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        coop_spec = _spec("coop-http", str(tmp_path / "coop.log"), total=400, every=10_000, step_s=0.1,
                          cooperative=True, ckpt_log=str(ckpt_log))
        coop = http.post("/api/training/jobs", json={**coop_spec, "min_runtime_s": 0}).json()
        plain = http.post("/api/training/jobs", json=_spec("plain-http", str(tmp_path / "plain.log"),
                                                           total=400, step_s=0.1)).json()
        job_id = coop["job_id"]
        _wait(http, job_id, {"running"})
        while not http.get(f"/api/training/jobs/{job_id}").json()["cooperative"]:
            time.sleep(0.2)

        # checkpoint-now: saved at the next step, recorded, and the job keeps running
        r = http.post(f"/api/training/checkpoint/{job_id}")
        assert r.status_code == 200 and r.json()["requested_at"], r.text
        while http.get(f"/api/training/jobs/{job_id}").json()["checkpoint_requested_at"]:
            time.sleep(0.1)
        cks = http.get(f"/api/training/jobs/{job_id}/checkpoints").json()
        assert len(cks) == 1 and http.get(f"/api/training/jobs/{job_id}").json()["status"] == "running"
        r = _cli(server, "checkpoint", job_id, "--wait")
        assert r.returncode == 0 and "checkpoint recorded at" in r.stdout, r.stderr
        assert len(http.get(f"/api/training/jobs/{job_id}/checkpoints").json()) == 2
        assert len(ckpt_log.read_text().split()) == 2  # one save per request, not one per step

        # refused, with the reason: a queued job (409), a plain function (409), unknown (404)
        r = http.post(f"/api/training/checkpoint/{plain['job_id']}")
        assert r.status_code == 409 and "only a running job" in r.json()["message"]
        assert http.post("/api/training/checkpoint/job_nope").status_code == 404

        # reprioritize: the queued job moves; bad input changes nothing
        assert http.patch(f"/api/training/jobs/{plain['job_id']}", json={"priority": "high"}).status_code == 422
        assert http.patch(f"/api/training/jobs/{plain['job_id']}", json={"priority": 10**9}).status_code == 422
        assert http.patch("/api/training/jobs/job_nope", json={"priority": 1}).status_code == 404
        assert http.get(f"/api/training/jobs/{plain['job_id']}").json()["priority"] == 0
        r = http.patch(f"/api/training/jobs/{plain['job_id']}", json={"priority": 3})
        assert r.status_code == 200 and r.json()["priority"] == 3
        r = _cli(server, "priority", plain["job_id"], "4")
        assert r.returncode == 0 and "priority 4" in r.stdout
        assert _cli(server, "priority", plain["job_id"], "x").returncode == 2  # usage

        # a raise above the running job preempts it (the cooperative loop stops at once)
        http.patch(f"/api/training/jobs/{plain['job_id']}", json={"priority": 5})
        preempted = _wait(http, job_id, {"queued"}, timeout_s=120)
        assert preempted["preempted_by"] == plain["job_id"] and preempted["preemptions"] == 1
        _wait(http, plain["job_id"], {"running"})
        r = _cli(server, "checkpoint", plain["job_id"])
        assert r.returncode == 4 and "scheduler.train.should_checkpoint()" in r.stderr  # not cooperative
        for j in (coop, plain):
            http.post(f"/api/training/cancel/{j['job_id']}")


def test_concurrent_reads_each_get_their_own_answer(server, tmp_path) -> None:
    # The hot reads of many concurrent requests share actor calls (api.coalesce); each request
    # still gets exactly its own answer, or its own error, as when asked alone.
    import asyncio

    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        ids = [http.post("/api/training/jobs", json=_spec(f"reads{i}", str(tmp_path / f"r{i}.log"), total=1,
                                                          step_s=0.01)).json()["job_id"] for i in range(2)]
    paths = [f"/api/training/jobs/{ids[i % 2]}" for i in range(40)] + ["/api/training/jobs/job_nope"] * 10 \
        + ["/api/training/jobs?limit=2"] * 10 + ["/api/training/queue?limit=1"] * 10

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=30) as client:
            return await asyncio.gather(*(client.get(p) for p in paths))

    for path, r in zip(paths, asyncio.run(all_at_once()), strict=True):
        if path.endswith("job_nope"):
            assert r.status_code == 404 and r.json()["error"] == "not_found" and "job_nope" in r.json()["message"]
        elif "?limit=2" in path:
            assert r.status_code == 200 and len(r.json()["jobs"]) == 2 and r.json()["total"] >= 2
        elif "/queue" in path:
            assert r.status_code == 200 and len(r.json()) <= 1
        else:
            job_id = path.rsplit("/", 1)[1]
            assert r.status_code == 200 and r.json()["job_id"] == job_id
            assert r.json()["name"] == f"reads{ids.index(job_id)}"
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        for job_id in ids:  # the next test starts on an idle cluster
            assert _wait(http, job_id, {"completed", "failed"})["status"] == "completed"


def test_hot_calls_take_the_local_channel_and_find_it_again_after_a_scheduler_restart(server, client,
                                                                                         tmp_path) -> None:
    # The server runs on the scheduler actor's node, so its batched calls (submits, the hot reads)
    # go over the actor's local channel; a restart of the actor closes it, the calls in between go
    # through Ray (which waits for the actor), and the server finds the new actor's channel.
    import asyncio

    import ray

    from scheduler.config import NAMESPACE, SCHEDULER_NAME

    def submit_all(names: list[str]) -> list[httpx.Response]:
        async def all_at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=120) as http:
                return await asyncio.gather(*(http.post(
                    "/api/training/jobs", json=_spec(n, str(tmp_path / f"{n}.log"), total=1, step_s=0.01),
                    headers={"Idempotency-Key": f"{tmp_path.name}-{n}"}) for n in names))
        return asyncio.run(all_at_once())

    def health() -> dict:
        return ray.get(client.handle.health.remote(), timeout=30)

    names = [f"chan{i}" for i in range(12)]
    ids: list[str] = []
    try:
        answers = submit_all(names)
        assert [r.status_code for r in answers] == [201] * 12
        ids = [r.json()["job_id"] for r in answers]
        assert len(set(ids)) == 12 and [r.json()["name"] for r in answers] == names  # each its own job
        assert health()["local_channel_connections"] >= 1
        started = health()["started_at"]

        ray.kill(ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE), no_restart=False)
        wait_until(lambda: _restarted(health, started), 90, "the scheduler actor came back")
        again = submit_all(names[:6] + [f"chan{i}" for i in range(12, 16)])  # a retry of six, four new ones
        assert [r.status_code for r in again] == [201] * 10
        assert [r.json()["job_id"] for r in again[:6]] == ids[:6]  # the retries act once, as before the kill
        ids += [r.json()["job_id"] for r in again[6:]]

        with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
            def reconnected() -> bool:
                assert http.get(f"/api/training/jobs/{ids[-1]}").json()["name"] == "chan15"
                return health()["local_channel_connections"] >= 1

            wait_until(reconnected, 60, "the server found the restarted actor's channel")
            listed = http.get("/api/training/jobs?limit=16").json()
            assert set(ids) <= {j["job_id"] for j in listed["jobs"]}  # all 16 stored, none twice
    finally:
        for job_id in ids:  # the next test starts on an idle cluster
            if client.get(job_id)["status"] not in ("completed", "failed", "cancelled"):
                client.cancel(job_id)


def _restarted(health, started: float) -> bool:
    try:
        return health()["started_at"] != started
    except Exception:  # noqa: BLE001 - still restarting
        return False
