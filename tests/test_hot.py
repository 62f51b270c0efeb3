"""api.hot: the four hot routes answered without FastAPI give exactly the answers the FastAPI
routes give, for any request (drawn by hypothesis), and plain requests never reach FastAPI."""

from __future__ import annotations

import json
import uuid
from typing import Any

from conftest import spec
from fakes import FakeCluster, FakeLauncher, RunnerSim
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.backend import ServiceBackend
from api.hot import HotRoutes
from scheduler.actor import SchedulerService
from scheduler.config import Settings
from scheduler.users import parse_users

TOKEN = "hot-token-1"
ALICE = "alice-token-2"
USERS_FILE = f"""
users:
  root: {{token: "{TOKEN}", role: admin}}
  alice: {{token: "{ALICE}"}}
"""
#: fields of a new job that differ between two submits of the same spec
_PER_JOB = {"job_id", "created_at", "updated_at", "started_at", "status", "queue_position", "attempt"}


class Apps:
    """The same service behind trainq's app (hot routes first) and the app without them."""

    def __init__(self, make_core: Any, tmp_path: Any, users: bool = False) -> None:
        core = make_core(FakeCluster({"CPU": 2}, maximum={"CPU": 8}), FakeLauncher())
        kwargs: dict[str, Any] = {"token": None if users else TOKEN}
        if users:
            core.users = kwargs["users"] = parse_users(USERS_FILE)
        self.service = SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))
        backend = ServiceBackend(self.service)
        hot, plain = create_app(backend, **kwargs), create_app(backend, **kwargs)
        plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotRoutes]
        self.hot, self.plain = TestClient(hot), TestClient(plain)
        self.passed_on = 0  # requests the hot routes handed to FastAPI
        self.hot.get("/health")  # builds the middleware stack: count what HotRoutes passes on
        routes = hot.middleware_stack
        while not isinstance(routes, HotRoutes):
            routes = routes.app
        inner = routes.app

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            self.passed_on += 1
            await inner(scope, receive, send)

        routes.app = counted
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        # A registry with a bit of everything: running, queued, completed, a NaN metric.
        running = self.hot.post("/api/training/jobs", json=spec(num_workers=2, name="run"), headers=self.auth).json()
        sim = RunnerSim(core, running["job_id"], 1)
        sim.started()
        core.on_runner_event({"kind": "report", "job_id": running["job_id"], "attempt": 1, "seq": 1, "at": core.clock(),
                              "metrics": {"step": 3, "loss": float("nan")}, "checkpoint_path": None})
        for i in range(3):
            self.hot.post("/api/training/jobs", json=spec(name=f"q{i}", priority=i), headers=self.auth)
        self.ids = [j["job_id"] for j in self.hot.get("/api/training/jobs", headers=self.auth).json()["jobs"]]

    def both(self, method: str, path: str, **kw: Any) -> tuple[Any, Any]:
        return self.hot.request(method, path, **kw), self.plain.request(method, path, **kw)


def _same(hot: Any, plain: Any, what: str) -> None:
    assert hot.status_code == plain.status_code, (what, hot.status_code, plain.status_code, hot.text, plain.text)
    assert hot.headers.get("content-type") == plain.headers.get("content-type"), what
    assert hot.headers.get("www-authenticate") == plain.headers.get("www-authenticate"), what
    assert hot.content == plain.content, (what, hot.text, plain.text)


_VALUES = st.sampled_from(["", "0", "1", "2", "100", "1000", "1001", "10000", "10001", "-1", "+5", " 5", "5 ",
                           "1e3", "3.0", "abc", "٣", "007", "9" * 13, "1000000000", "1000000001"])
_STATUSES = st.sampled_from(["queued", "running", "pending", "completed", "Queued", "nope", ""])
_PARAM = st.one_of(st.tuples(st.sampled_from(["limit", "offset", "foo"]), _VALUES),
                   st.tuples(st.just("status"), _STATUSES))
_QUERY = st.lists(_PARAM, max_size=4).map(lambda ps: "&".join(f"{k}={v}" for k, v in ps))
_AUTH = st.one_of(st.just(f"Bearer {TOKEN}"),  # most requests carry the token: they reach the routes
                  st.sampled_from([f"bearer {TOKEN}", f"Bearer  {TOKEN} ", "Bearer wrong", TOKEN, "", None,
                                   f"Basic {TOKEN}"]))
#: every edge of the hot routes' parameters, each request asked both ways
EDGES = [f"/api/training/jobs?{q}" for q in (
    "", "limit=0", "limit=1", "limit=1000", "limit=1001", "limit=", "limit=-1", "limit=+5", "limit=%205",
    "limit=1e2", "limit=007", "limit=2&limit=3", "offset=0", "offset=1000000000", "offset=1000000001",
    "offset=-1", "status=queued", "status=queued&status=running", "status=Queued", "status=", "status=queued&limit=1",
    "foo=bar", "limit=2&foo=1&offset=1", "offset=1&offset=2")] + [f"/api/training/queue?{q}" for q in (
    "", "limit=1", "limit=10000", "limit=10001", "limit=0", "limit=", "offset=3", "offset=-1", "limit=1&limit=2",
    "status=queued")] + ["/api/training/jobs/", "/api/training/jobs/job_nope", "/api/training/jobs/job_nope?x=1",
                         "/api/training/jobs/a%2Fb", "/api/training/jobs/a/b", "/api/training/jobs/%20"]


def test_every_edge_of_the_parameters_gets_the_same_answer_both_ways(make_core, tmp_path) -> None:
    apps = Apps(make_core, tmp_path)
    for url in EDGES + [f"/api/training/jobs/{job_id}" for job_id in apps.ids]:
        _same(*apps.both("GET", url, headers=apps.auth), url)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_read_gets_the_same_answer_as_from_the_fastapi_routes(make_core, tmp_path, data) -> None:
    apps = _apps_for(make_core, tmp_path)
    route = data.draw(st.sampled_from(["/api/training/jobs", "/api/training/queue", "one", "/api/training/jobs/"]))
    if route == "one":
        job = data.draw(st.one_of(st.sampled_from(apps.ids), st.just("job_nope"),
                                  st.text("abc_%/.", min_size=1, max_size=8)))
        route = f"/api/training/jobs/{job}"
    query = data.draw(_QUERY)
    auth = data.draw(_AUTH)
    headers = {"Authorization": auth} if auth is not None else {}
    url = route + (f"?{query}" if query else "")
    _same(*apps.both("GET", url, headers=headers), url)


_BODIES = st.one_of(
    st.builds(lambda n, p: spec(num_workers=n, priority=p, name="drawn"), st.integers(-1, 12), st.integers(-3, 3)),
    st.just({**spec(), "unknown_field": 1}),
    st.just({"entrypoint": "not a module path"}),
    st.just([spec()]),
    st.just("a string"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES, raw=st.sampled_from([None, b"", b"{not json", b'{"num_workers": NaN}']),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                     "text/plain", "application/merge-patch+json", None]),
       key=st.sampled_from(["fresh", None, "", "x" * 201, "tab\there", "ümlaut"]), auth=_AUTH)
def test_any_submit_gets_the_same_answer_as_from_the_fastapi_route(make_core, tmp_path, body, raw, content_type,
                                                                    key, auth) -> None:
    apps = _apps_for(make_core, tmp_path)
    content = raw if raw is not None else json.dumps(body).encode()
    headers = {"Authorization": auth} if auth is not None else {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if key == "fresh":  # both get the same key: the second submit answers with the first's job
        headers["Idempotency-Key"] = uuid.uuid4().hex
    elif key is not None:
        headers["Idempotency-Key"] = key
    hot, plain = apps.both("POST", "/api/training/jobs", content=content,
                           headers={k: v.encode("utf-8") if isinstance(v, str) else v for k, v in headers.items()})
    if hot.status_code == 201 and key != "fresh":  # two jobs: the same but for what makes each itself
        assert plain.status_code == 201
        a, b = hot.json(), plain.json()
        assert a["job_id"] != b["job_id"]
        assert {k: v for k, v in a.items() if k not in _PER_JOB} == {k: v for k, v in b.items() if k not in _PER_JOB}
    else:
        _same(hot, plain, f"{content!r} {headers}")


def test_plain_requests_never_reach_fastapi_and_owners_come_from_the_token(make_core, tmp_path) -> None:
    apps = Apps(make_core, tmp_path, users=True)
    alice = {"Authorization": f"Bearer {ALICE}"}
    before = apps.passed_on
    r = apps.hot.post("/api/training/jobs", json=spec(name="hers"), headers=alice)
    assert r.status_code == 201 and r.json()["owner"] == "alice"
    job_id = r.json()["job_id"]
    assert apps.hot.get(f"/api/training/jobs/{job_id}", headers=alice).json()["owner"] == "alice"
    assert apps.hot.get("/api/training/jobs?status=queued&status=pending&limit=5", headers=alice).status_code == 200
    assert apps.hot.get("/api/training/queue?limit=10&offset=0", headers=alice).status_code == 200
    assert apps.hot.get("/api/training/jobs/job_nope", headers=alice).status_code == 404
    assert apps.hot.get("/api/training/jobs", headers={"Authorization": "Bearer nobody"}).status_code == 401
    assert apps.passed_on == before  # all of these answered by the hot routes
    # What they do not take is passed on, and FastAPI answers as always.
    assert apps.hot.get("/api/training/jobs?limit=0", headers=alice).status_code == 422
    assert apps.hot.get(f"/api/training/jobs/{job_id}/history", headers=alice).status_code == 200
    assert apps.hot.post("/api/training/jobs", json={"num_workers": 1}, headers=alice).status_code == 422
    assert apps.passed_on == before + 3


_APPS: dict[str, Apps] = {}


def _apps_for(make_core: Any, tmp_path: Any) -> Apps:
    """One registry per test (hypothesis runs many examples in one test: they share it)."""
    key = str(tmp_path)
    if key not in _APPS:
        _APPS.clear()
        _APPS[key] = Apps(make_core, tmp_path)
    return _APPS[key]
