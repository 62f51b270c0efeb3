"""The HTTP client, the CLI, SSE and WebSocket streams against a real uvicorn server, without Ray.

The server runs the real app over the real ``SchedulerService`` (a fake launcher stands in for
Ray), so these are fast; ``test_http_e2e.py`` and ``test_page.py`` do the same over real Ray.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import websockets
import websockets.sync.client as ws_client
from fakes import FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from serving import ServerThread

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.cli import main
from scheduler.config import Settings
from scheduler.errors import IllegalTransition, InvalidSpec, JobNotFound, Unauthorized
from scheduler.http import Client, Unreachable
from scheduler.service import SchedulerService

TOKEN = "live-token-1"


class LiveServer(ServerThread):
    """uvicorn in a thread over a SchedulerService; ``restart()`` swaps in a fresh service."""

    def __init__(self, make_service: Callable[[], SchedulerService]) -> None:
        self.make_service = make_service
        self.service = make_service()
        self.app = create_app(ServiceBackend(self.service), token=TOKEN)
        self.app.state.heartbeat_s = 0.5
        self.loop: asyncio.AbstractEventLoop | None = None

        @self.app.on_event("startup")
        async def _capture_loop() -> None:
            self.loop = asyncio.get_running_loop()

        super().__init__(self.app)

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's event loop (runner events must wake its waiting streams)."""
        async def call() -> Any:
            return fn()

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def runner(self, job_id: str, attempt: int = 1) -> LoopRunner:
        return LoopRunner(self, RunnerSim(self.service.core, job_id, attempt))

    def restart(self) -> None:
        """A scheduler restart: a new service (new core, event log reloaded from disk)."""
        self.service = self.make_service()
        self.app.state.backend = ServiceBackend(self.service)


class LoopRunner:
    def __init__(self, server: LiveServer, sim: RunnerSim) -> None:
        self.server, self.sim = server, sim

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sim, name)
        return lambda *a, **k: self.server.on_loop(lambda: method(*a, **k))


@pytest.fixture
def live(make_core, tmp_path) -> Iterator[LiveServer]:
    db = "trainq.db"
    settings = Settings(storage_root=str(tmp_path / "storage"), db_path=str(tmp_path / db))

    def make() -> SchedulerService:
        return SchedulerService(make_core(FakeCluster({"CPU": 2}), FakeLauncher(), db=db), settings)

    with LiveServer(make) as server:
        yield server


@pytest.fixture
def api(live) -> Iterator[Client]:
    with Client(live.url, TOKEN) as c:
        yield c


# -- scheduler.http.Client -------------------------------------------------------------------------
def test_client_verbs_over_http(live, api) -> None:
    job = api.submit(spec(name="first", config={"total": 10}))
    assert job["status"] == "pending" and api.get(job["job_id"])["name"] == "first"
    queued = api.submit(spec(num_workers=2))
    assert queued["queue_position"] == 1 and [j["job_id"] for j in api.queue()] == [queued["job_id"]]
    assert api.list()["total"] == 2 and api.list("queued")["jobs"][0]["job_id"] == queued["job_id"]
    sim = live.runner(job["job_id"])
    sim.started()
    sim.report(3, f"{live.service.core.storage_root}/{job['job_id']}/attempt-1/ck3")
    assert [r["metrics"]["step"] for r in api.reports(job["job_id"])] == [3]
    pause = api.pause(job["job_id"])
    assert (pause["previous_status"], pause["status"]) == ("running", "pausing")
    sim.exit("paused")
    assert api.wait(job["job_id"], timeout_s=5)["status"] == "paused"
    assert len(api.checkpoints(job["job_id"])) == 1
    resume = api.resume(job["job_id"])
    assert resume["status"] == "queued" and resume["checkpoint_path"].endswith("ck3")
    assert [t["to_status"] for t in api.history(job["job_id"])["transitions"]][-1] == "queued"
    assert api.cancel(queued["job_id"])["status"] == "cancelled"
    cluster = api.cluster()
    assert cluster["resources"]["CPU"]["total"] == 2 and cluster["queued"] + cluster["starting"] >= 1
    assert api.health()["ok"] is True


def test_client_errors_are_typed(live, api) -> None:
    with pytest.raises(JobNotFound) as e:
        api.get("job_nope")
    assert e.value.fields["job_id"] == "job_nope" and e.value.status_code == 404
    job = api.submit(spec())
    api.cancel(job["job_id"])
    with pytest.raises(IllegalTransition) as conflict:
        api.pause(job["job_id"])
    assert conflict.value.fields["status"] == "cancelled" and "cannot pause" in str(conflict.value)
    with pytest.raises(InvalidSpec) as invalid:
        api.submit(spec(num_workers=0))
    assert invalid.value.fields["field"] == "num_workers"
    with Client(live.url, "wrong") as bad, pytest.raises(Unauthorized):
        bad.list()
    with Client("http://127.0.0.1:9") as nowhere, pytest.raises(Unreachable, match="cannot reach trainq"):
        nowhere.health()


def test_client_follows_the_sse_stream(live, api) -> None:
    job = api.submit(spec())
    stream = api.events(job["job_id"])
    first = next(stream)
    assert first.event == "snapshot" and first.data["status"] == "pending" and first.id is None
    live.runner(job["job_id"]).started()
    second = next(stream)
    assert (second.event, second.data["status"]) == ("status", "running") and second.id is not None
    stream.close()


# -- WebSocket -------------------------------------------------------------------------------------
def _ws(live: LiveServer, path: str, **query: Any) -> Any:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return ws_client.connect(f"ws://127.0.0.1:{live.port}{path}" + (f"?{q}" if q else ""), open_timeout=10)


def _recv(conn: Any, skip_heartbeats: bool = True) -> dict[str, Any]:
    while True:
        msg = json.loads(conn.recv(timeout=10))
        if not (skip_heartbeats and msg["event"] == "heartbeat"):
            return msg


def _sse_events(live: LiveServer, path: str, count: int, headers: dict[str, str] | None = None) -> list[dict]:
    """The first ``count`` events of an SSE stream, as the WS messages would carry them."""
    out: list[dict] = []
    with httpx.stream("GET", live.url + path, timeout=httpx.Timeout(10, read=10),
                      headers={"Authorization": f"Bearer {TOKEN}", **(headers or {})}) as r:
        assert r.status_code == 200
        event, ident = None, None
        for line in r.iter_lines():
            if line.startswith("id:"):
                ident = int(line[3:])
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                out.append({"event": event, "id": ident, "data": json.loads(line[5:])})
                event, ident = None, None
                if len(out) == count:
                    return out
    return out


def test_websocket_carries_the_same_events_as_sse(live, api) -> None:
    job = api.submit(spec())
    job_id = job["job_id"]
    sim = live.runner(job_id)
    sim.started()
    for step in range(3):
        sim.report(step)
    api.pause(job_id)
    sim.exit("paused")
    # Replay the job's whole log from the start over both transports, then compare.
    with _ws(live, f"/api/training/jobs/{job_id}/ws", token=TOKEN, last_event_id=0) as conn:
        ws_events = [_recv(conn) for _ in range(9)]
    sse_events = _sse_events(live, f"/api/training/jobs/{job_id}/events", 9, {"Last-Event-ID": "0"})
    assert ws_events == sse_events
    kinds = [(e["event"], e["data"].get("status")) for e in ws_events]
    assert kinds == [("status", "queued"), ("status", "pending"), ("start", None), ("status", "running"),
                     ("report", None), ("report", None), ("report", None), ("status", "pausing"), ("status", "paused")]
    ids = [e["id"] for e in ws_events]
    assert ids == sorted(ids) and len(set(ids)) == 9


def test_websocket_starts_with_a_snapshot_and_follows_live(live, api) -> None:
    with _ws(live, "/api/training/ws") as conn:
        conn.send(json.dumps({"token": TOKEN}))  # a browser's way: the token as the first message
        snapshot = _recv(conn)
        assert snapshot["event"] == "snapshot" and snapshot["data"] == [] and snapshot["id"] is None
        job = api.submit(spec())
        first = _recv(conn)
        assert (first["event"], first["data"]["job_id"], first["data"]["status"]) == ("status", job["job_id"], "queued")
        assert _recv(conn)["data"]["status"] == "pending"


def test_websocket_refuses_a_wrong_token_and_an_unknown_job(live) -> None:
    with _ws(live, "/api/training/ws", token="wrong") as conn:
        msg = _recv(conn)
        assert msg["event"] == "error" and msg["data"]["error"] == "unauthorized"
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            conn.recv(timeout=5)
        assert closed.value.rcvd.code == 4401
    with _ws(live, "/api/training/ws") as conn:
        conn.send(json.dumps({"token": "nope"}))
        assert _recv(conn)["data"]["error"] == "unauthorized"
    with _ws(live, "/api/training/jobs/job_nope/ws", token=TOKEN) as conn:
        msg = _recv(conn)
        assert msg["data"] == {"error": "not_found", "message": "no job with id 'job_nope'", "job_id": "job_nope"}
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            conn.recv(timeout=5)
        assert closed.value.rcvd.code == 4404


def test_websocket_reconnect_with_last_event_id_gets_what_it_missed(live, api) -> None:
    job = api.submit(spec())
    job_id = job["job_id"]
    with _ws(live, f"/api/training/jobs/{job_id}/ws", token=TOKEN) as conn:
        assert _recv(conn)["event"] == "snapshot"
        sim = live.runner(job_id)
        sim.started()
        seen = _recv(conn)
        assert seen["data"]["status"] == "running"
    # Disconnected: two reports and a pause happen meanwhile.
    sim.report(0)
    sim.report(1)
    api.pause(job_id)
    with _ws(live, f"/api/training/jobs/{job_id}/ws", token=TOKEN, last_event_id=seen["id"]) as conn:
        missed = [_recv(conn) for _ in range(3)]
    assert [m["event"] for m in missed] == ["report", "report", "status"]
    assert [m["data"].get("metrics") for m in missed[:2]] == [{"step": 0}, {"step": 1}]
    assert missed[0]["id"] == seen["id"] + 1


def test_a_scheduler_restart_in_between_loses_no_event(live, api) -> None:
    job = api.submit(spec())
    job_id = job["job_id"]
    sim = live.runner(job_id)
    sim.started()
    sim.report(0)
    with _ws(live, "/api/training/ws", token=TOKEN, last_event_id=0) as conn:
        before = [_recv(conn) for _ in range(5)]  # queued, pending, start, running, report
    last_seen = before[-1]["id"]
    sim.report(1)
    epoch = api.health()["epoch"]
    live.restart()  # new service: the event log is reloaded from its file
    assert api.health()["epoch"] == epoch
    sim = live.runner(job_id)
    sim.sim.seq = 2  # the runner's own report numbering, as a real runner keeps it across a restart
    sim.report(2)  # after the restart, numbering goes on
    with _ws(live, "/api/training/ws", token=TOKEN, last_event_id=last_seen) as conn:
        after = [_recv(conn) for _ in range(2)]
    assert [a["data"]["metrics"]["step"] for a in after] == [1, 2]
    assert [a["id"] for a in after] == [last_seen + 1, last_seen + 2]
    # SSE resumes the same way with Last-Event-ID.
    sse = _sse_events(live, "/api/training/events", 2, {"Last-Event-ID": str(last_seen)})
    assert sse == after


def test_sse_with_an_id_the_log_no_longer_holds_falls_back_to_a_snapshot(live, api) -> None:
    api.submit(spec())
    first = _sse_events(live, "/api/training/events", 1, {"Last-Event-ID": "999999"})
    assert first[0]["event"] == "snapshot" and len(first[0]["data"]) == 1


# -- the CLI over the same server ----------------------------------------------------------------
def _cli(live: LiveServer, capsys: Any, *args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    argv = ["--url", live.url, *(["--token", token] if token else []), *args]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_commands_and_exit_codes(live, api, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TRAINQ_API_TOKEN", raising=False)
    monkeypatch.delenv("TRAINQ_API_TOKEN_FILE", raising=False)
    code, out, _ = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--set", "total=8")
    assert code == 0 and out.startswith("submitted job_")
    job_id = out.split()[1]
    code, out, _ = _cli(live, capsys, "list")
    assert code == 0 and job_id in out and "STATUS" in out and "pending" in out
    code, out, _ = _cli(live, capsys, "status", job_id)
    assert code == 0 and "PENDING" in out
    code, out, _ = _cli(live, capsys, "top", "--once")
    assert code == 0 and job_id in out and "CPU 1/2" in out and "the queue is empty" in out
    code, out, _ = _cli(live, capsys, "--json", "top", "--once")
    assert code == 0 and json.loads(out)["active"][0]["job_id"] == job_id
    assert _cli(live, capsys, "status", "job_nope")[0] == 3
    assert _cli(live, capsys, "cancel", job_id)[0] == 0
    code, _, err = _cli(live, capsys, "pause", job_id)
    assert code == 4 and "cannot pause" in err
    code, _, err = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--num-workers", "0")
    assert code == 5 and "num_workers" in err
    code, _, err = _cli(live, capsys, "list", token="wrong")
    assert code == 6 and "token" in err
    code, _, err = _cli(live, capsys, "submit", "--set", "novalue")
    assert code == 2 and "key=value" in err
    live.server.should_exit = True
    live.thread.join(10)
    code, _, err = _cli(live, capsys, "list")
    assert code == 7 and "cannot reach trainq" in err


def test_cli_submits_an_elastic_range_and_status_shows_each_attempts_size(live, api, capsys) -> None:
    code, out, _ = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--num-workers", "1-3")
    assert code == 0, out
    job_id = out.split()[1]
    job = api.get(job_id)
    assert job["spec"]["num_workers"] == {"min": 1, "max": 3} and job["workers"] == 2  # the 2 CPUs free
    code, out, _ = _cli(live, capsys, "status", job_id)
    assert code == 0 and "on 1-3 workers (elastic)" in out and "1: 2 workers" in out, out
    assert api.history(job_id)["attempts"][0]["workers"] == 2
    code, out, _ = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps")
    code, out, _ = _cli(live, capsys, "status", out.split()[1])
    assert code == 0 and "steps:count_steps on 1 worker\n" in out, out  # one worker, not "1 workers"
    code, _, err = _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--num-workers", "3-1")
    assert code == 5 and "num_workers: max (1) must be at least min (3)" in err
    with pytest.raises(SystemExit) as usage:  # argparse's own usage error
        _cli(live, capsys, "submit", "--entrypoint", "steps:count_steps", "--num-workers", "two")
    assert usage.value.code == 2 and "a range (2-8)" in capsys.readouterr().err


def test_cli_watch_shows_progress_toward_the_total_and_exits_0_on_completion(live, api, capsys) -> None:
    job = api.submit(spec(config={"total": 4}))
    job_id = job["job_id"]

    def drive() -> None:
        time.sleep(0.5)
        sim = live.runner(job_id)
        sim.started()
        for step in range(4):
            sim.report(step)
        sim.exit("completed")

    threading.Thread(target=drive, daemon=True).start()
    code, out, _ = _cli(live, capsys, "watch", job_id)
    assert code == 0, out
    assert "[4/4]" in out and "-> completed" in out and out.index("[1/4]") < out.index("[4/4]")



