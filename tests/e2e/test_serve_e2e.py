"""`trainq serve` as a real process: stopping and starting it loses nothing.

Each test runs `trainq serve` on its own Ray (embedded with `--address local`, or a `ray start`
head), next to the session's shared Ray, and drives it over HTTP like a user would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers import JOBS_DIR, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.own_cluster]

TOTAL = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "TRAINQ_API_TOKEN"))}
    env.update(TRAINQ_HOME=str(tmp / "home"), TRAINQ_RETRY_BACKOFF_S="1", TRAINQ_SHUTDOWN_GRACE_S="60")
    return env


class Serve:
    """A `trainq serve` subprocess whose output is collected as it runs."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "scheduler.cli", "serve", "--port", str(self.port),
               "--storage", str(tmp / "storage"), "--db", str(tmp / "trainq.db"), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=_env(tmp), cwd=str(Path(JOBS_DIR).parent.parent))
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "serve exited:\n" + self.output
            time.sleep(0.3)
        raise TimeoutError("serve did not come up:\n" + self.output)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 150) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)


def _submit(http: httpx.Client, tmp: Path, total: int = TOTAL) -> str:
    spec = {"name": "survivor", "entrypoint": "steps:count_steps", "num_workers": 1, "backend": "none",
            "runtime_env": {"working_dir": JOBS_DIR},
            "config": {"total": total, "every": 4, "step_s": 0.25, "log": str(tmp / "steps.log"),
                       "ckpt_log": str(tmp / "ckpts.log")}}
    r = http.post("/api/training/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["job_id"]


def _lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _status(http: httpx.Client, job_id: str) -> dict:
    return http.get(f"/api/training/jobs/{job_id}").json()


def _run_until_some_steps(tmp: Path) -> tuple[Serve, str]:
    serve = Serve(tmp, "--address", "local", "--num-cpus", "2")
    with serve.http() as http:
        job_id = _submit(http, tmp)
        wait_until(lambda: len(_lines(tmp / "ckpts.log")) >= 2 and len(_lines(tmp / "steps.log")) >= 10, 180,
              "a few steps and checkpoints")
    return serve, job_id


def _finish_after_restart(tmp: Path, job_id: str) -> tuple[dict, list[dict]]:
    serve = Serve(tmp, "--address", "local", "--num-cpus", "2")
    try:
        with serve.http() as http:
            done = wait_until(lambda: (j := _status(http, job_id))["status"] == "completed" and j, 240, "completed")
            history = http.get(f"/api/training/jobs/{job_id}/history").json()["transitions"]
    finally:
        assert serve.stop() == 0, serve.output
    return done, history


def _settled(path: Path, quiet_s: float = 2.0, timeout_s: float = 30.0) -> None:
    """Waits until ``path`` has not grown for ``quiet_s``: a killed server's workers have stopped."""
    deadline, size, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{path} still grows {timeout_s:.0f} s after the kill")


def test_a_killed_server_loses_only_work_since_a_checkpoint_and_a_graceful_stop_pauses_at_one(tmp_path) -> None:
    # One job through three servers: killed (SIGKILL) mid-run, started again (it resumes by
    # itself), stopped gracefully (Ctrl-C: it pauses at a checkpoint), started again (it completes).
    serve, job_id = _run_until_some_steps(tmp_path)
    with serve.http() as http:  # what the scheduler has recorded (durably) when it is killed
        checkpoints = wait_until(lambda: http.get(f"/api/training/jobs/{job_id}/checkpoints").json(), 60,
                                 "a checkpoint recorded")
        recorded = max(c["metrics"]["step"] for c in checkpoints)
    serve.stop(signal.SIGKILL)
    # The embedded Ray's processes follow their parent down, but not at once: a worker may still
    # finish a step or report a checkpoint that no scheduler records any more. The first run's
    # record is read once it is still.
    _settled(tmp_path / "steps.log")
    first = _lines(tmp_path / "steps.log")
    logged = _lines(tmp_path / "ckpts.log")

    serve = Serve(tmp_path, "--address", "local", "--num-cpus", "2")
    with serve.http() as http:
        wait_until(lambda: _status(http, job_id)["attempt"] == 2
                   and len(_lines(tmp_path / "ckpts.log")) >= len(logged) + 2, 180, "the second attempt's checkpoints")
    assert serve.stop(signal.SIGINT) == 0, serve.output
    assert "waiting for 1 job(s) to checkpoint" in serve.output and job_id in serve.output
    assert "every job is paused at a checkpoint" in serve.output
    pause_ck = _lines(tmp_path / "ckpts.log")[-1]
    mid = _lines(tmp_path / "steps.log")

    done, history = _finish_after_restart(tmp_path, job_id)
    assert done["attempt"] == 3 and done["retries"] == 1  # the kill counts as a retry; the shutdown does not
    reasons = [t["reason"] for t in history]
    assert any("not found after a scheduler restart" in t["reason"] and t["to_status"] == "queued"
               for t in history), reasons
    assert any(r.startswith("paused for a shutdown") for r in reasons), reasons
    assert "trainq started again after a shutdown; requeued" in reasons
    steps = _lines(tmp_path / "steps.log")
    assert sorted(set(steps)) == list(range(TOTAL))  # every step done
    assert steps[:len(mid)] == mid and mid[:len(first)] == first == list(range(len(first)))
    # After the kill: resumed right after a checkpoint of the first run, the last one recorded
    # before the kill or one recorded in the moment before the scheduler's actor went down.
    second = mid[len(first):]
    assert second == list(range(second[0], second[0] + len(second)))
    assert second[0] - 1 in logged and second[0] - 1 >= recorded
    # After the graceful stop: resumed right after the pause checkpoint; nothing before it redone.
    third = steps[len(mid):]
    assert third == list(range(pause_ck + 1, TOTAL))
    assert pause_ck <= max(mid)


def test_with_a_separate_ray_stopping_the_api_stops_no_job(tmp_path, monkeypatch) -> None:
    # Token auth is Ray's business and orthogonal here; a second head next to the session's Ray
    # is simpler to reach without it.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    gcs = _free_port()
    ports = {"--dashboard-port": _free_port(), "--dashboard-agent-listen-port": _free_port(),
             "--metrics-export-port": _free_port(), "--ray-client-server-port": _free_port()}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={gcs}", "--num-cpus=2",
         f"--temp-dir={tempfile.mkdtemp(prefix='tq-', dir='/tmp')}",  # Ray's socket paths must be short
         "--block", *[f"{k}={v}" for k, v in ports.items()]],
        stdout=(tmp_path / "ray-start.log").open("w"), stderr=subprocess.STDOUT, env=_env(tmp_path),
        start_new_session=True)
    try:
        wait_until(lambda: _accepts(gcs) or head.poll() is not None, 120, "the Ray head to listen")
        assert head.poll() is None, (tmp_path / "ray-start.log").read_text()[-3000:]
        time.sleep(2.0)  # the GCS listens a little before the head node has registered
        serve = Serve(tmp_path, "--address", f"127.0.0.1:{gcs}")
        assert "stopping this API process stops no job" in serve.output
        with serve.http() as http:
            job_id = _submit(http, tmp_path, total=30)
            wait_until(lambda: len(_lines(tmp_path / "steps.log")) >= 5, 180, "a few steps")
        assert serve.stop(signal.SIGINT) in (0, 130), serve.output  # 130: uvicorn re-raises Ctrl-C
        at_stop = len(_lines(tmp_path / "steps.log"))
        wait_until(lambda: len(_lines(tmp_path / "steps.log")) >= 30, 180, "the job to go on without the API")
        assert len(_lines(tmp_path / "steps.log")) > at_stop
        again = Serve(tmp_path, "--address", f"127.0.0.1:{gcs}")
        with again.http() as http:
            done = wait_until(lambda: (j := _status(http, job_id))["status"] == "completed" and j, 120, "completed")
        assert done["attempt"] == 1  # it never stopped
        again.stop()
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(60)
