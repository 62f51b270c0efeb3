"""Quotas per accelerator type from a users file, over HTTP (TestClient over the real service, a fake
cluster with an A100 and a T4 node, a fake launcher and clock; no Ray)."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.service import SchedulerService
from scheduler.users import UsersFileError, load_users, parse_users

ALICE = "alice-token-0001"
USERS_FILE = f"""
default:
  quota:
    max: {{GPU: 8}}
users:
  alice:
    token: "{ALICE}"
    quota:
      guaranteed: {{GPU: 4, "GPU:A100": 1}}
      max: {{"GPU:A100": 2}}
"""
AUTH = {"Authorization": f"Bearer {ALICE}"}


def node(kind: str) -> dict[str, float]:
    return {"CPU": 8.0, "GPU": 4.0, f"accelerator_type:{kind}": 1.0}


@pytest.fixture
def setup(make_core, tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(USERS_FILE)
    nodes = [node("A100"), node("T4")]
    cluster = FakeCluster({"CPU": 16.0, "GPU": 8.0, "accelerator_type:A100": 1.0, "accelerator_type:T4": 1.0},
                          node_sizes=nodes, free_per_node=[dict(n) for n in nodes])
    clock = FakeClock()
    core = make_core(cluster, FakeLauncher(), clock)
    core.users = load_users(path)
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    with TestClient(create_app(ServiceBackend(service), token=None, users=core.users)) as http:
        yield http, core, clock


def a100(**kw):
    return spec(use_gpu=True, accelerator_type="A100", **kw)


def test_a_per_type_max_is_counted_and_borrowed_per_type_over_http(setup) -> None:
    http, core, clock = setup
    first = http.post("/api/training/jobs", headers=AUTH, json=a100()).json()
    assert first["status"] == "pending" and not first["borrowing"]  # 1 A100 GPU: within the guarantee
    second = http.post("/api/training/jobs", headers=AUTH, json=a100()).json()
    assert second["status"] == "pending" and second["borrowing"]  # 2 of a max of 2: beyond the guarantee
    third = http.post("/api/training/jobs", headers=AUTH, json=a100()).json()
    assert third["status"] == "queued"  # the A100 node has room, alice's A100 max does not
    reason = http.get(f"/api/training/jobs/{third['job_id']}", headers=AUTH).json()["pending_reason"]
    assert reason["code"] == "quota" and "GPU:A100" in reason["message"] and "max of 2" in reason["message"]
    # a job that may fall back to T4 is not held by the A100 max: it runs on T4, within GPU 8
    either = http.post("/api/training/jobs", headers=AUTH,
                       json=spec(use_gpu=True, accelerator_type=["A100", "T4"])).json()
    assert either["status"] == "pending"
    history = http.get(f"/api/training/jobs/{either['job_id']}/history", headers=AUTH)
    assert history.status_code == 200 and history.json()["attempts"][0]["accelerator_type"] == "T4"
    # a job its owner's A100 max can never hold is refused at submit, with the numbers
    big = http.post("/api/training/jobs", headers=AUTH, json=a100(num_workers=3))
    assert big.status_code == 409 and big.json()["field"] == "num_workers"
    assert "3 GPU:A100 requested, user 'alice' may hold at most 2" in big.json()["message"]

    for job in (first, second, either):  # an hour on their types, then the usage report per type
        RunnerSim(core, job["job_id"], 1).started()
    clock.advance(3600)
    for job in (first, second, either):
        RunnerSim(core, job["job_id"], 1).exit("completed")
    assert core.get(third["job_id"])["status"] == "pending"  # the A100 max has room again
    usage = http.get("/api/usage", headers=AUTH, params={"by": "user"}).json()
    row = next(r for r in usage["rows"] if r["user"] == "alice")
    assert row["resource_seconds"]["GPU:A100"] == pytest.approx(2 * 3600)
    assert row["resource_seconds"]["GPU:T4"] == pytest.approx(3600)
    assert row["gpu_hours"] == pytest.approx(3.0, rel=1e-3)
    assert row["gpu_hours_by_type"] == {"A100": 2.0, "T4": 1.0}


def test_a_per_type_name_in_the_users_file_must_name_a_type() -> None:
    with pytest.raises(UsersFileError) as e:
        parse_users('users:\n  bob:\n    token: "bob-token-0002"\n    quota:\n      max: {"GPU:": 2}\n')
    assert "users.bob.quota.max.GPU:" in e.value.message and "GPU:A100" in e.value.message
