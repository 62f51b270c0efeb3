"""WebSocket and SSE resume across a real restart of the scheduler actor on the shared local Ray.

The events come from model pulls (cheap: the session's local hub answers "not found"), so no
training run is needed to fill the log.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest
import ray
import websockets.sync.client as ws_client
from helpers import API_TOKEN

from scheduler.config import NAMESPACE, SCHEDULER_NAME

pytestmark = [pytest.mark.ray, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def _pull_until_failed(http: httpx.Client, model_id: str) -> None:
    assert http.post("/api/models", json={"model_id": model_id}).status_code == 202
    deadline = time.monotonic() + 60
    while http.get(f"/api/models/{model_id}").json()["status"] == "downloading":
        assert time.monotonic() < deadline, f"{model_id} never finished"
        time.sleep(0.2)


def _ws_messages(server: str, last_event_id: int, until: str) -> list[dict]:
    """Every message after ``last_event_id`` until a model event for ``until`` says it failed."""
    url = server.replace("http://", "ws://") + f"/api/training/ws?last_event_id={last_event_id}"
    out = []
    with ws_client.connect(url, open_timeout=10) as conn:
        conn.send(json.dumps({"token": API_TOKEN}))
        while True:
            msg = json.loads(conn.recv(timeout=30))
            if msg["event"] == "heartbeat":
                continue
            out.append(msg)
            if msg["event"] == "model" and msg["data"]["model_id"] == until and msg["data"]["status"] == "failed":
                return out


def _sse_messages(server: str, last_event_id: int, count: int) -> list[dict]:
    out: list[dict] = []
    headers = {**AUTH, "Last-Event-ID": str(last_event_id)}
    with httpx.stream("GET", f"{server}/api/training/events", headers=headers, timeout=httpx.Timeout(30)) as r:
        ident, event = None, None
        for line in r.iter_lines():
            if line.startswith("id:"):
                ident = int(line[3:])
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                out.append({"event": event, "id": ident, "data": json.loads(line[5:])})
                if len(out) == count:
                    return out
    return out


def test_a_real_scheduler_restart_in_between_loses_no_event(server, client) -> None:
    with httpx.Client(base_url=server, headers=AUTH, timeout=30) as http:
        _pull_until_failed(http, "nobody/before-1")
        seen = _ws_messages(server, 0, "nobody/before-1")
        last = seen[-1]["id"]
        _pull_until_failed(http, "nobody/before-2")  # missed: the client is away

        before = ray.get(client.handle.health.remote())
        ray.kill(ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE), no_restart=False)
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, "the scheduler actor did not come back"
            with contextlib.suppress(ray.exceptions.RayError):  # still restarting
                health = ray.get(client.handle.health.remote(), timeout=10)
                if health["started_at"] != before["started_at"]:
                    break
            time.sleep(0.5)
        assert health["epoch"] == before["epoch"]  # the same log, reloaded from its file

        _pull_until_failed(http, "nobody/after")  # missed too, after the restart
        missed = _ws_messages(server, last, "nobody/after")

    ids = [m["id"] for m in missed]
    assert ids[0] == last + 1 and ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no repeat
    models = [m["data"]["model_id"] for m in missed if m["event"] == "model"]
    assert models[0] == "nobody/before-2" and models[-1] == "nobody/after"
    assert [m["data"]["status"] for m in missed if m["event"] == "model" and
            m["data"]["model_id"] == "nobody/before-2"][-1] == "failed"
    # SSE resumes from the same id with the same events.
    assert _sse_messages(server, last, len(missed)) == missed
