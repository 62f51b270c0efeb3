"""Dependencies, sweeps and the dry run over HTTP, without Ray (a service over fakes)."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.service import SchedulerService

JOBS = "/api/training/jobs"


@pytest.fixture
def setup(make_core, tmp_path):
    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher(), clock=clock)
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    with TestClient(create_app(ServiceBackend(service), token=None)) as c:
        yield c, service, clock


def test_dependencies_refused_with_the_field_named_and_shown_while_waiting(setup) -> None:
    http, _, _ = setup
    r = http.post(JOBS, json=spec(depends_on=[{"job_id": "job_unknown"}]))
    assert r.status_code == 409 and r.json()["field"] == "depends_on"
    r = http.post(JOBS, json=spec(depends_on=[{"job_id": "x", "on": "sometimes"}]))
    assert r.status_code == 422 and r.json()["field"].startswith("depends_on"), r.json()
    a = http.post(JOBS, json=spec()).json()["job_id"]
    b = http.post(JOBS, json=spec(depends_on=[{"job_id": a, "on": "completed"}])).json()
    got = http.get(f"{JOBS}/{b['job_id']}").json()
    assert got["spec"]["depends_on"] == [{"job_id": a, "on": "completed"}]
    assert got["pending_reason"]["code"] == "dependency" and a in got["pending_reason"]["message"]
    assert http.post(JOBS, json=spec(sweep_id="sweep_x")).json()["field"] == "sweep_id"


def test_a_sweep_over_http(setup) -> None:
    http, _, _ = setup
    first = http.post(JOBS, json=spec(sweep={"parameters": {"lr": [0.1, 0.2, 0.3]}, "max_running": 1,
                                             "metric": "loss", "mode": "max"}))
    assert first.status_code == 201
    sweep_id = first.json()["spec"]["sweep_id"]
    view = http.get(f"/api/training/sweeps/{sweep_id}").json()
    assert view["counts"] == {"pending": 1, "queued": 2} and view["max_running"] == 1 and view["mode"] == "max"
    assert [j["spec"]["config"]["lr"] for j in view["jobs"]] == [0.1, 0.2, 0.3]
    assert {j["pending_reason"]["code"] for j in view["jobs"] if j["status"] == "queued"} == {"sweep_limit"}
    paused = http.post(f"/api/training/sweeps/{sweep_id}/pause").json()
    assert [j["status"] for j in paused["jobs"]] == ["paused"] * 3
    assert http.post(f"/api/training/sweeps/{sweep_id}/resume").status_code == 200
    assert http.post(f"/api/training/sweeps/{sweep_id}/stop").status_code == 422
    assert http.get("/api/training/sweeps/sweep_nope").status_code == 404
    assert http.post(f"/api/training/sweeps/{sweep_id}/cancel").json()["jobs"][0]["status"] == "cancelled"


def test_a_dry_run_creates_nothing_and_answers_200(setup) -> None:
    http, service, clock = setup
    low = http.post(JOBS, json=spec(num_workers=2)).json()["job_id"]
    RunnerSim(service.core, low, 1).started()
    clock.advance(3600)
    service.core.tick()
    before = (http.get(JOBS).json(), http.get("/api/training/queue").json())
    r = http.post(f"{JOBS}?dry_run=true", json=spec())
    assert r.status_code == 200
    body = r.json()
    assert body["dry_run"] is True and body["would_start"] is False and body["queue_position"] == 1
    assert body["pending_reason"]["code"] == "resources" and body["preempts"] == []
    assert http.post(f"{JOBS}?dry_run=true", json=spec(priority=3)).json()["preempts"] == [low]
    bad = http.post(f"{JOBS}?dry_run=true", json=spec(num_workers=0))
    assert bad.status_code == 422 and bad.json()["field"] == "num_workers"
    assert (http.get(JOBS).json(), http.get("/api/training/queue").json()) == before


def test_a_sweep_too_large_or_over_a_fixed_workload_key_is_refused_naming_the_field(setup) -> None:
    http, _, _ = setup
    big = {"parameters": {"a": list(range(40)), "b": list(range(30))}}  # 1200 jobs: each list is fine
    r = http.post(JOBS, json=spec(sweep=big))
    assert r.status_code == 409 and r.json()["field"] == "sweep.parameters", r.json()
    assert "1200 combinations; a sweep makes at most 1000 jobs" in r.json()["message"]
    assert http.post(JOBS, params={"dry_run": "true"}, json=spec(sweep=big)).status_code == 409
    hf = {"workload": "hf-causal-lm", "config": {"model_config": {"model_type": "gpt2"}, "train_files": ["/x.txt"],
                                                 "max_steps": 2}, "sweep": {"parameters": {"max_steps": [1, 2]}}}
    r = http.post(JOBS, json=hf)
    assert r.status_code == 422 and r.json()["field"] == "sweep", r.json()
    assert "max_steps cannot be varied by a sweep of hf-causal-lm" in r.json()["message"]
    listed = http.get(JOBS).json()
    assert not (listed["jobs"] if isinstance(listed, dict) else listed)  # nothing was stored
