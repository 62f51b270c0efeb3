"""The node views, the drain route and the CLI's nodes table, without Ray (``scheduler.nodes``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from scheduler.cli import render
from scheduler.core import DrainNotice
from scheduler.errors import Forbidden
from scheduler.nodes import RayNodes, node_views, real_resources

NODE = "c" * 56


def test_real_resources_leave_out_placement_group_and_node_bookkeeping() -> None:
    raw = {"CPU": 4, "GPU": 1, "memory": 1e9, "accelerator_type:A100": 1, "node:10.0.0.1": 1,
           "node:__internal_head__": 1, "CPU_group_0_3f2a9c1d8e7b6a5f4e3d2c1b0a": 1,
           "CPU_group_3f2a9c1d8e7b6a5f4e3d2c1b0a": 2, "bundle_group_3f2a9c1d8e7b6a5f4e3d2c1b0a": 1000}
    assert real_resources(raw) == {"CPU": 4, "GPU": 1, "memory": 1e9, "accelerator_type:A100": 1}


def test_node_views_name_the_jobs_and_the_drain_with_its_reason() -> None:
    nodes = RayNodes(asked={NODE: ("preemption", "spot")})
    notices = nodes.notices({NODE: 1_800_000_030.0})
    assert notices == [DrainNotice(NODE, 1_800_000_030.0, "preemption", "spot")]
    assert RayNodes().notices({NODE: None}) == [DrainNotice(NODE, None, "unknown", "")]
    views = node_views([{"node_id": NODE, "address": "10.0.0.2", "is_head": False, "resources": {"CPU": 1.0}}],
                       {NODE: {"CPU": 0.0, "bundle_group_3f2a9c1d8e7b6a5f4e3d2c1b0a": 1000}}, notices,
                       {NODE: ["job_b", "job_a"]})
    assert views == [{"node_id": NODE, "address": "10.0.0.2", "is_head": False, "resources": {"CPU": 1.0},
                      "free": {"CPU": 0.0}, "jobs": ["job_a", "job_b"], "draining": True,
                      "drain_reason": "preemption", "drain_deadline_at": 1_800_000_030.0}]
    assert "preemption, until" in _text(render.nodes(views)) and "job_a, job_b" in _text(render.nodes(views))


def test_trainq_refuses_an_idle_termination_of_a_node_its_job_is_on_without_asking_ray(monkeypatch) -> None:
    from scheduler import nodes as nodes_module
    from scheduler import raycompat
    from scheduler.errors import DrainRefused

    asked: list[tuple] = []
    monkeypatch.setattr(nodes_module, "alive_nodes", lambda: [{"node_id": NODE}])
    monkeypatch.setattr(raycompat, "train_run_nodes", lambda names: {"run-1": {NODE}} if "run-1" in names else {})
    monkeypatch.setattr(raycompat, "drain_node", lambda *a: asked.append(a) or (True, ""))
    runs = {"run-1": ("job_a", 1)}
    with pytest.raises(DrainRefused, match="job_a"):
        RayNodes().drain(NODE, 30, reason="idle", run_names=runs)
    assert asked == []
    assert RayNodes().drain(NODE, 30, reason="preemption", run_names=runs)["accepted"]  # moves it instead
    assert RayNodes().drain(NODE, 30, reason="idle", run_names={})["accepted"] and len(asked) == 2


def test_new_drains_are_counted_once() -> None:
    nodes = RayNodes()
    assert nodes.new_drains({NODE}) == 1 and nodes.new_drains({NODE}) == 0 and nodes.new_drains(set()) == 0


def _text(renderable) -> str:
    console = render.console()
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()


@pytest.fixture
def nodes_app(tmp_path):
    """The API over a service whose nodes are fakes, with a users file: an admin and a user."""
    from scheduler.service import SchedulerService

    drained: list[tuple] = []

    class FakeNodes(SchedulerService):
        async def nodes(self):
            return [{"node_id": NODE, "address": "x", "is_head": False, "resources": {"CPU": 1.0},
                     "free": {"CPU": 1.0}, "jobs": [], "draining": False, "drain_reason": None,
                     "drain_deadline_at": None}]

        async def drain_node(self, node_id, deadline_s=None, reason="preemption", message="", as_user=None):
            self.authorize_admin(as_user, "drain nodes")
            drained.append((node_id, deadline_s, reason, as_user))
            return {"node_id": node_id, "accepted": True, "reason": reason, "deadline_at": None}

    return FakeNodes, drained


def test_nodes_route_lists_and_only_an_admin_may_drain(nodes_app, make_core, tmp_path) -> None:
    from api.app import create_app
    from api.backend import ServiceBackend
    from scheduler.config import Settings
    from scheduler.users import load_users

    FakeNodes, drained = nodes_app
    users_file = tmp_path / "users.yaml"
    users_file.write_text("users:\n  ada:\n    token: t-ada-token\n    role: admin\n"
                          "  bob:\n    token: t-bob-token\n")
    core = make_core()
    core.users = load_users(str(users_file))
    service = FakeNodes(core, Settings(storage_root=core.storage_root, db_path=str(tmp_path / "t.db")))
    client = TestClient(create_app(ServiceBackend(service), users=core.users))
    listed = client.get("/api/cluster/nodes", headers={"Authorization": "Bearer t-bob-token"})
    assert listed.status_code == 200 and listed.json()[0]["node_id"] == NODE
    refused = client.post(f"/api/cluster/nodes/{NODE}/drain", json={"deadline_s": 30},
                          headers={"Authorization": "Bearer t-bob-token"})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden" and drained == []
    ok = client.post(f"/api/cluster/nodes/{NODE}/drain", json={"deadline_s": 30},
                     headers={"Authorization": "Bearer t-ada-token"})
    assert ok.status_code == 200 and drained == [(NODE, 30.0, "preemption", "ada")]
    bad = client.post("/api/cluster/nodes/not-a-node/drain", headers={"Authorization": "Bearer t-ada-token"})
    assert bad.status_code == 422
    with pytest.raises(Forbidden):
        service.authorize_admin("bob", "drain nodes")
