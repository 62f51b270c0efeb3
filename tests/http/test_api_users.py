"""Two users and an admin from a users file, over HTTP (TestClient over the real service, fakes, no Ray)."""

from __future__ import annotations

import hashlib
import logging

import pytest
from fakes import FakeCluster, FakeLauncher, RunnerSim
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.service import SchedulerService
from scheduler.users import UsersFileError, parse_users

ADMIN, ALICE, BOB = "root-token-0001", "alice-token-0002", "bob-token-0003"
USERS_FILE = f"""
default:
  quota:
    guaranteed: {{CPU: 1}}
    max: {{CPU: 2}}
users:
  root:
    token: "{ADMIN}"
    role: admin
  alice:
    token: "{ALICE}"
  bob:
    token: "sha256:{hashlib.sha256(BOB.encode()).hexdigest()}"
"""
SECRETS = [ADMIN, ALICE, BOB, *(hashlib.sha256(t.encode()).hexdigest() for t in (ADMIN, ALICE, BOB))]


@pytest.fixture
def service(make_core, tmp_path):
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher())
    core.users = parse_users(USERS_FILE)
    return SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))


@pytest.fixture
def http(service):
    with TestClient(create_app(ServiceBackend(service), token=None, users=service.core.users)) as c:
        yield c


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_users_own_their_jobs_see_everyones_and_get_403_on_others(http, service, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def call(method: str, path: str, token: str | None, **kw):
        r = http.request(method, path, headers=as_(token) if token else {}, **kw)
        seen.append(r.text + str(r.headers))
        return r

    mine = call("POST", "/api/training/jobs", ALICE, json=spec(name="alices")).json()
    assert mine["owner"] == "alice" and mine["status"] == "pending"
    job_id = mine["job_id"]
    RunnerSim(service.core, job_id, 1).started()
    before = service.core.history(job_id)
    for method, path, kw in [("POST", f"/api/training/pause/{job_id}", {}),
                             ("POST", f"/api/training/cancel/{job_id}", {}),
                             ("POST", f"/api/training/resume/{job_id}", {}),
                             ("POST", f"/api/training/checkpoint/{job_id}", {}),
                             ("PATCH", f"/api/training/jobs/{job_id}", {"json": {"priority": 5}})]:
        r = call(method, path, BOB, **kw)
        assert r.status_code == 403, (path, r.text)
        body = r.json()
        assert body["error"] == "forbidden" and body["owner"] == "alice" and body["user"] == "bob"
        assert "only its owner or an admin may" in body["message"] and "Traceback" not in r.text
    assert service.core.history(job_id) == before  # nothing changed
    assert service.core.get(job_id)["priority"] == 0
    # everyone sees every job, in the list and the queue, as squeue shows them
    theirs = call("POST", "/api/training/jobs", BOB, json=spec(num_workers=2)).json()
    assert theirs["owner"] == "bob" and theirs["status"] == "queued"
    assert {j["job_id"] for j in call("GET", "/api/training/jobs", BOB).json()["jobs"]} == {job_id, theirs["job_id"]}
    queue = call("GET", "/api/training/queue", ALICE).json()
    assert [j["job_id"] for j in queue] == [theirs["job_id"]] and queue[0]["pending_reason"]["code"] == "resources"
    assert call("GET", f"/api/training/jobs/{job_id}", BOB).status_code == 200
    # the owner may act, and an admin may act on anyone's job
    assert call("PATCH", f"/api/training/jobs/{theirs['job_id']}", BOB, json={"priority": 3}).json()["priority"] == 3
    r = call("POST", f"/api/training/cancel/{job_id}", ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # no token, or a wrong one: 401
    assert call("GET", "/api/training/jobs", None).status_code == 401
    assert call("POST", "/api/training/jobs", "not-a-user-token", json=spec()).status_code == 401
    assert call("GET", "/api/usage", None).status_code == 401
    usage = call("GET", "/api/usage", ALICE, params={"by": "user"}).json()
    assert {r["user"] for r in usage["rows"]} == {"alice"}
    assert call("GET", "/api/usage", ALICE, params={"since": "yesterday"}).status_code == 422
    assert call("GET", "/api/usage", ALICE, params={"by": "team"}).status_code == 422
    # a token (or its hash) never appears in a response, a header or a log line
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        assert not any(secret in text for text in seen), secret[:4]
        assert secret not in logged
        assert secret not in repr(service.core.users)


def test_a_quota_refusal_over_http_names_the_numbers_and_stores_nothing(http, service) -> None:
    service.core.cluster.total = {"CPU": 4}  # the cluster could hold it; alice's max cannot
    r = http.post("/api/training/jobs", json=spec(num_workers=3), headers=as_(ALICE))
    assert r.status_code == 409 and r.json()["error"] == "invalid"  # the schema allows it; this server cannot
    assert "3 CPU requested, user 'alice' may hold at most 2" in r.json()["message"]
    assert service.core.count() == 0


def test_time_limit_must_be_positive_over_http(http, service) -> None:
    r = http.post("/api/training/jobs", json=spec(time_limit_s=0), headers=as_(ALICE))
    assert r.status_code == 422 and r.json()["field"] == "time_limit_s"
    assert service.core.count() == 0


def test_without_a_users_file_the_single_token_mode_is_one_user(make_core, tmp_path) -> None:
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher())
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "s"), db_path=":memory:"))
    with TestClient(create_app(ServiceBackend(service), token="single-token", users=None)) as c:
        assert c.get("/api/training/jobs").status_code == 401
        job = c.post("/api/training/jobs", json=spec(), headers=as_("single-token")).json()
        assert job["owner"] is None
        assert c.post(f"/api/training/cancel/{job['job_id']}", headers=as_("single-token")).status_code == 200


def test_the_app_refuses_a_malformed_users_file_naming_the_line(monkeypatch, tmp_path, service) -> None:
    bad = tmp_path / "users.yaml"
    bad.write_text("users:\n  alice:\n    token: alice-token-0002\n    quota: {guaranteed: {GPU: -1}}\n")
    monkeypatch.setenv("TRAINQ_USERS_FILE", str(bad))
    with pytest.raises(UsersFileError) as e:
        create_app(ServiceBackend(service), token=None)
    assert "users.yaml line 4: users.alice.quota.guaranteed.GPU: must be a number >= 0" in str(e.value)


@pytest.mark.parametrize("text, where", [
    ("users:\n  alice:\n    token: alice-token-0002\n    quota: {max: {CPU: -2}}\n",
     "line 4: users.alice.quota.max.CPU"),
    ("users:\n  alice:\n    token: alice-token-0002\n    quota: {limit: {CPU: 2}}\n",
     "line 4: users.alice.quota.limit"),
    ("users:\n  alice:\n    token: alice-token-0002\n    role: boss\n", "line 4: users.alice.role"),
])
def test_trainq_serve_refuses_a_malformed_users_file_and_says_which_line(tmp_path, capsys, text, where) -> None:
    from scheduler.cli import main

    bad = tmp_path / "users.yaml"
    bad.write_text(text)
    assert main(["serve", "--users-file", str(bad)]) != 0
    err = capsys.readouterr().err
    assert f"users.yaml {where}" in err and "alice-token-0002" not in err


def _cli(http, token: str):
    from scheduler.http import Client

    api = Client("http://testserver", token)
    api.http = TestClient(http.app, headers={"Authorization": f"Bearer {token}"})
    return api


def test_the_cli_shows_why_jobs_wait_and_usage_and_the_http_client_raises_forbidden(http, service, capsys) -> None:
    from scheduler.cli import build_parser, exit_code
    from scheduler.cli.commands import cmd_queue, cmd_status, cmd_usage
    from scheduler.errors import Forbidden

    alice, bob = _cli(http, ALICE), _cli(http, BOB)
    running = alice.submit(spec(num_workers=2, time_limit_s=120))
    RunnerSim(service.core, running["job_id"], 1).started()
    waiting = bob.submit(spec(num_workers=2))
    assert cmd_queue(alice, build_parser().parse_args(["queue"])) == 0  # everyone sees the queue
    out = capsys.readouterr().out
    assert waiting["job_id"] in out and "resources: needs 2 CPU, 0 free" in out and "bob" in out
    assert cmd_status(alice, build_parser().parse_args(["status", waiting["job_id"]])) == 0
    out = capsys.readouterr().out
    assert "pending_reason" in out and "eta_basis" in out and "time limit 120" in out
    assert cmd_usage(alice, build_parser().parse_args(["usage", "--by", "job"])) == 0
    assert running["job_id"] in capsys.readouterr().out
    with pytest.raises(Forbidden) as e:
        alice.cancel(waiting["job_id"])
    assert e.value.fields["owner"] == "bob" and exit_code(e.value) == 8
    assert service.core.get(waiting["job_id"])["status"] == "queued"


def test_websockets_take_a_users_token_and_refuse_a_wrong_one(http) -> None:
    with http.websocket_connect("/api/training/ws?token=wrong-token-000") as ws:
        message = ws.receive_json()
    assert message["data"]["error"] == "unauthorized"
    with http.websocket_connect(f"/api/training/ws?token={BOB}") as ws:
        assert ws.receive_json()["event"] == "snapshot"


def test_usage_since_takes_iso_times_only(http) -> None:
    ok = http.get("/api/usage", params={"since": "2026-11-29T10:00:00Z"}, headers=as_(ALICE))
    assert ok.status_code == 200 and ok.json()["since"] == "2026-11-29T10:00:00.000Z"
    assert http.get("/api/usage", params={"since": "2026-11-29"}, headers=as_(ALICE)).json()["since"].startswith(
        "2026-11-29T00:00:00")
    for bad in ("0.5", "12", "yesterday"):
        r = http.get("/api/usage", params={"since": bad}, headers=as_(ALICE))
        assert r.status_code == 422 and r.json()["field"] == "since", bad
