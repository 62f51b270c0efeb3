"""The hot routes' parameters at their edges, the order of their checks, and where they sit in the app.

(Each answer's exact bytes are in ``tests/data/http_replay.json``; these state the rules in words.)
"""

from __future__ import annotations

import pytest
from fakes import FakeCluster, FakeLauncher
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.auth import current_user
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.service import SchedulerService

TOKEN = "params-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOT = {("POST", "/api/training/jobs"), ("GET", "/api/training/jobs"), ("GET", "/api/training/jobs/{job_id}"),
       ("GET", "/api/training/queue")}


@pytest.fixture
def http(make_core, tmp_path):
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher())
    service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
    with TestClient(create_app(ServiceBackend(service), token=TOKEN, users=None), headers=AUTH) as c:
        for i in range(3):  # one starts, two wait in the queue
            assert c.post("/api/training/jobs", json=spec(num_workers=2, name=f"j{i}")).status_code == 201
        yield c


@pytest.mark.parametrize("query,limit,offset", [
    ("", 100, 0), ("limit=1", 1, 0), ("limit=1000", 1000, 0), ("limit=+5", 5, 0), ("limit=%205", 5, 0),
    ("limit=007", 7, 0), ("limit=2&limit=3", 3, 0), ("offset=1&offset=2", 100, 2), ("offset=1000000000", 100, 10**9),
    ("foo=bar&limit=2", 2, 0),
])
def test_list_takes_limit_1_to_1000_and_offset_to_a_billion_the_last_of_a_repeat_and_ignores_others(
        http, query, limit, offset) -> None:
    r = http.get(f"/api/training/jobs?{query}")
    assert r.status_code == 200 and (r.json()["limit"], r.json()["offset"]) == (limit, offset)


@pytest.mark.parametrize("path,field", [
    ("/api/training/jobs?limit=0", "limit"), ("/api/training/jobs?limit=1001", "limit"),
    ("/api/training/jobs?limit=", "limit"), ("/api/training/jobs?limit=-1", "limit"),
    ("/api/training/jobs?limit=1e2", "limit"), ("/api/training/jobs?limit=abc", "limit"),
    ("/api/training/jobs?offset=-1", "offset"), ("/api/training/jobs?offset=1000000001", "offset"),
    ("/api/training/jobs?status=Queued", "status"), ("/api/training/jobs?status=", "status"),
    ("/api/training/queue?limit=0", "limit"), ("/api/training/queue?limit=10001", "limit"),
    ("/api/training/queue?limit=", "limit"), ("/api/training/queue?offset=-1", "offset"),
])
def test_out_of_bounds_or_malformed_parameters_are_422_naming_the_parameter(http, path, field) -> None:
    r = http.get(path)
    assert r.status_code == 422 and r.json()["error"] == "invalid" and r.json()["field"] == field


def test_list_filters_by_every_status_given_and_the_queue_pages(http) -> None:
    assert http.get("/api/training/jobs?status=queued").json()["total"] == 2
    assert http.get("/api/training/jobs?status=queued&status=pending").json()["total"] == 3
    assert len(http.get("/api/training/queue?limit=1").json()) == 1
    assert len(http.get("/api/training/queue?limit=10000&offset=1").json()) == 1
    assert http.get("/api/training/queue?status=nope").status_code == 200  # not one of its parameters


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"])
def test_an_idempotency_key_is_1_to_200_printable_characters(http, key) -> None:
    r = http.post("/api/training/jobs", json=spec(), headers={"Idempotency-Key": key})
    assert r.status_code == 422 and r.json()["field"] == "header.Idempotency-Key"


def test_the_token_is_checked_after_the_body_is_read_and_before_anything_else(http) -> None:
    anonymous = {"Authorization": ""}
    # A body that is not JSON is refused first (FastAPI reads the body before any dependency) ...
    r = http.post("/api/training/jobs", content=b"{not json", headers={**anonymous, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    # ... then the token, before the spec or a query parameter is looked at.
    assert http.post("/api/training/jobs", json={"bogus": 1}, headers=anonymous).status_code == 401
    for path in ("/api/training/jobs?limit=0", "/api/training/queue?limit=0", "/api/training/jobs/job_nope"):
        r = http.get(path, headers=anonymous)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path


def test_one_job_path_takes_no_slash_and_ignores_a_query(http) -> None:
    assert http.get("/api/training/jobs/job_nope?x=1").json()["job_id"] == "job_nope"
    assert http.get("/api/training/jobs/a/b").json() == {"error": "not_found", "message": "Not Found"}


def test_the_hot_routes_sit_on_the_app_itself_ahead_of_every_included_router(http) -> None:
    routes = http.app.router.routes
    first_included = next(i for i, r in enumerate(routes) if getattr(r, "original_router", None) is not None)
    hot = {(m, r.path) for r in routes[:first_included] if isinstance(r, APIRoute) for m in r.methods}
    assert hot == HOT
    # Each with exactly one dependency: the token check (or the caller, which is the same check).
    for route in routes[:first_included]:
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            assert [d.call for d in route.dependant.dependencies] == [current_user], route.path
    # Documented as every route is: their models, the token's 401, tags.
    paths = http.get("/openapi.json").json()["paths"]
    one = paths["/api/training/jobs/{job_id}"]["get"]
    job_public = {"$ref": "#/components/schemas/JobPublic"}
    assert one["responses"]["200"]["content"]["application/json"]["schema"] == job_public
    assert "401" in one["responses"] and one["tags"] == ["training"]
    created = paths["/api/training/jobs"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == job_public
