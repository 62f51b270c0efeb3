"""Every route and error mapping through TestClient, over the real service with a fake launcher."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import FakeCluster, FakeLauncher, RunnerSim
from fastapi.testclient import TestClient
from helpers import spec

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.config import Settings
from scheduler.service import SchedulerService
from scheduler.states import JobStatus

TOKEN = "s3cret-token"


@pytest.fixture
def service(make_core, tmp_path):
    core = make_core(FakeCluster({"CPU": 2}), FakeLauncher())
    return SchedulerService(core, Settings(storage_root=str(tmp_path / "storage"), db_path=":memory:"))


@pytest.fixture
def http(service):
    with TestClient(create_app(ServiceBackend(service), token=None)) as c:
        yield c


def _running(http, service, **overrides):
    job = http.post("/api/training/jobs", json=spec(**overrides)).json()
    sim = RunnerSim(service.core, job["job_id"], 1)
    sim.started()
    return job["job_id"], sim


def test_submit_get_list_queue(http) -> None:
    r = http.post("/api/training/jobs", json=spec(num_workers=2, name="first"))
    assert r.status_code == 201
    first = r.json()
    assert first["status"] == "pending" and first["spec"]["num_workers"] == 2 and first["name"] == "first"
    second = http.post("/api/training/jobs", json=spec(num_workers=2)).json()
    assert second["status"] == "queued" and second["queue_position"] == 1
    assert http.get(f"/api/training/jobs/{first['job_id']}").json()["job_id"] == first["job_id"]
    listing = http.get("/api/training/jobs").json()
    assert listing["total"] == 2 and [j["job_id"] for j in listing["jobs"]] == [second["job_id"], first["job_id"]]
    only_queued = http.get("/api/training/jobs", params={"status": "queued"}).json()
    assert [j["job_id"] for j in only_queued["jobs"]] == [second["job_id"]] and only_queued["total"] == 1
    several = http.get("/api/training/jobs?status=queued&status=pending&limit=1&offset=1").json()
    assert several["total"] == 2 and len(several["jobs"]) == 1 and several["offset"] == 1
    assert [j["job_id"] for j in http.get("/api/training/queue").json()] == [second["job_id"]]


def test_pause_and_resume_keep_the_seed_response_fields(http, service) -> None:
    job_id, sim = _running(http, service)
    root = service.core.job_root(service.core.store.get_job(job_id))
    sim.report(3, f"{root}/attempt-1/ck3")
    r = http.post(f"/api/training/pause/{job_id}")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"success", "job_id", "previous_status", "status", "paused_at", "message",
                         "expected_paused_by", "deadline_at"}  # the seed's fields, plus when to expect it
    assert body["deadline_at"] and "at the latest in" in body["message"]
    assert body["success"] is True and body["previous_status"] == "running" and body["status"] == "pausing"
    sim.exit("paused")
    r = http.post(f"/api/training/resume/{job_id}")
    body = r.json()
    assert set(body) == {"success", "job_id", "previous_status", "status", "checkpoint_path", "queue_position",
                         "message"}
    assert (body["previous_status"], body["status"]) == ("paused", "queued")
    assert body["checkpoint_path"] == f"{root}/attempt-1/ck3" and body["queue_position"] == 1
    assert "queued at position 1" in body["message"]
    cks = http.get(f"/api/training/jobs/{job_id}/checkpoints").json()
    assert [c["metrics"]["step"] for c in cks] == [3]
    metrics = http.get(f"/api/training/jobs/{job_id}/metrics").json()
    assert [m["metrics"]["step"] for m in metrics] == [3]
    history = http.get(f"/api/training/jobs/{job_id}/history").json()
    assert [t["to_status"] for t in history["transitions"]][:5] == ["queued", "pending", "running", "pausing", "paused"]


def test_resume_with_checkpoint_path_query(http, service) -> None:
    job_id, sim = _running(http, service)
    root = service.core.job_root(service.core.store.get_job(job_id))
    sim.report(1, f"{root}/attempt-1/ck1")
    sim.report(2, f"{root}/attempt-1/ck2")
    http.post(f"/api/training/cancel/{job_id}")
    r = http.post(f"/api/training/resume/{job_id}", params={"checkpoint_path": f"{root}/attempt-1/ck1"})
    assert r.status_code == 200 and r.json()["checkpoint_path"] == f"{root}/attempt-1/ck1"


def test_pause_with_deadline_query(http, service) -> None:
    job_id, _ = _running(http, service)
    http.post(f"/api/training/pause/{job_id}", params={"deadline_s": 30})
    assert http.get(f"/api/training/jobs/{job_id}").json()["pause_deadline_at"] is not None
    assert http.post(f"/api/training/pause/{job_id}", params={"deadline_s": -1}).status_code == 422


@pytest.mark.parametrize("method,path", [
    ("get", "/api/training/jobs/job_nope"), ("post", "/api/training/pause/job_nope"),
    ("post", "/api/training/resume/job_nope"), ("post", "/api/training/cancel/job_nope"),
    ("get", "/api/training/jobs/job_nope/checkpoints"), ("get", "/api/training/jobs/job_nope/metrics"),
    ("get", "/api/training/jobs/job_nope/history"), ("get", "/api/training/jobs/job_nope/logs"),
    ("get", "/api/training/jobs/job_nope/events"),
])
def test_unknown_job_is_404_with_a_message(http, method: str, path: str) -> None:
    r = getattr(http, method)(path)
    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "message": "no job with id 'job_nope'", "job_id": "job_nope"}


def test_illegal_transition_is_409(http, service) -> None:
    job_id, sim = _running(http, service)
    sim.exit("completed")
    r = http.post(f"/api/training/pause/{job_id}")
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "conflict" and body["status"] == "completed" and "cannot pause" in body["message"]
    assert http.post(f"/api/training/resume/{job_id}").status_code == 409


@pytest.mark.parametrize("payload,field,words", [
    ({"entrypoint": "m:f", "num_workers": 0}, "num_workers", "num_workers"),
    ({"entrypoint": "m:f", "bogus": 1}, "bogus", "bogus: unknown field"),
    ({"entrypoint": "not an entrypoint"}, "entrypoint", "package.module:function"),
    # one message for a value neither a type nor a list of them, not one per member of the union
    ({"entrypoint": "m:f", "accelerator_type": ""}, "accelerator_type",
     'accelerator_type: must be an accelerator type as Ray names it ("A100", "TPU-V4"'),
    ({"entrypoint": "m:f", "accelerator_type": ["A100", "no spaces"]}, "accelerator_type", "got ['A100', 'no spaces']"),
    ({"entrypoint": "m:f", "accelerator_type": []}, "accelerator_type", "a list of 1 to 16 of them, got []"),
    ({"entrypoint": "m:f", "depends_on": ["job_0123"]}, "depends_on",
     'depends_on: entry 0 must be {"job_id": "job_…", "on": "completed", "failed" or "finished"}'),
])
def test_invalid_spec_is_422_naming_the_field(http, payload: dict, field: str, words: str) -> None:
    r = http.post("/api/training/jobs", json=payload)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid" and body["field"] == field and words in body["message"]
    assert "Traceback" not in r.text
    assert http.get("/api/training/jobs").json()["total"] == 0


@pytest.mark.parametrize("payload,field,words", [
    ({"entrypoint": "m:f", "num_workers": 64}, "resources_per_worker",
     "asks for CPU=64 but the cluster has at most CPU=2"),
    ({"entrypoint": "m:f", "runtime_env": {"working_dir": "/no/such/dir"}}, "runtime_env.working_dir",
     "does not exist on the scheduler's machine"),
])
def test_well_formed_spec_this_server_cannot_satisfy_is_409(http, payload: dict, field: str, words: str) -> None:
    """The schema allows these, so not 422; the body is still an ``invalid`` error naming the field."""
    r = http.post("/api/training/jobs", json=payload)
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "invalid" and body["field"] == field and words in body["message"]
    assert "Traceback" not in r.text
    assert http.get("/api/training/jobs").json()["total"] == 0


def test_malformed_json_and_bad_query_are_422(http) -> None:
    r = http.post("/api/training/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = http.get("/api/training/jobs", params={"status": "sleeping"})
    assert r.status_code == 422 and r.json()["field"] == "status"


def test_refused_checkpoint_is_409(http, service) -> None:
    job_id, sim = _running(http, service)
    sim.exit("failed", error="x")
    r = http.post(f"/api/training/resume/{job_id}", params={"checkpoint_path": "/etc"})
    assert r.status_code == 409 and r.json()["field"] == "checkpoint_path" and r.json()["error"] == "invalid"


def test_internal_errors_never_leak_a_traceback(service) -> None:
    async def broken(*args):
        raise RuntimeError("secret internals")

    service.get_json = broken
    with TestClient(create_app(ServiceBackend(service), token=None), raise_server_exceptions=False) as c:
        r = c.get("/api/training/jobs/job_x")
    assert r.status_code == 500 and r.json() == {"error": "internal", "message": "internal error: RuntimeError"}


def test_token_required_everywhere_but_health(service) -> None:
    with TestClient(create_app(ServiceBackend(service), token=TOKEN)) as c:
        assert c.get("/health").status_code == 200
        r = c.get("/api/training/jobs")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/api/training/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/api/training/jobs", json=spec()).status_code == 401
        ok = c.get("/api/training/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200


def test_token_from_environment_and_file(service, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TRAINQ_API_TOKEN", "from-env")
    with TestClient(create_app(ServiceBackend(service))) as c:
        assert c.get("/api/training/queue").status_code == 401
        assert c.get("/api/training/queue", headers={"Authorization": "Bearer from-env"}).status_code == 200
    monkeypatch.delenv("TRAINQ_API_TOKEN")
    (tmp_path / "token").write_text("from-file\n")
    monkeypatch.setenv("TRAINQ_API_TOKEN_FILE", str(tmp_path / "token"))
    with TestClient(create_app(ServiceBackend(service))) as c:
        assert c.get("/api/training/queue", headers={"Authorization": "Bearer from-file"}).status_code == 200


def test_openapi_docs_and_health(http) -> None:
    assert http.get("/docs").status_code == 200
    schema = http.get("/openapi.json").json()
    assert "/api/training/pause/{job_id}" in schema["paths"]
    assert "409" in schema["paths"]["/api/training/pause/{job_id}"]["post"]["responses"]
    assert http.get("/health").json()["ok"] is True


def test_the_document_lists_the_statuses_each_route_answers_with_trainqs_error_body(http) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    answers = {(method.upper(), path): set(op["responses"])
               for path, ops in paths.items() for method, op in ops.items()}
    # 403: policy; 200: a dry run (?dry_run=true)
    assert answers[("POST", "/api/training/jobs")] == {"200", "201", "401", "403", "409", "422", "503"}
    assert answers[("GET", "/api/training/queue")] == {"200", "401", "422", "503"}  # no job named: no 404
    assert answers[("POST", "/api/training/packages")] == {"201", "401", "413", "422", "503"}
    assert answers[("GET", "/health")] == {"200", "503"}  # no token needed
    for (method, path), statuses in answers.items():
        for status in statuses - {"200", "201", "202"}:
            body = paths[path][method.lower()]["responses"][status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_logs_route_reads_the_attempt_folder(http, service) -> None:
    job_id, _ = _running(http, service)
    run_name = service.core.store.get_attempt(job_id, 1).run_name
    folder = service.core.job_root(service.core.store.get_job(job_id)) + f"/{run_name}/logs"
    import os

    os.makedirs(folder)
    with open(f"{folder}/rank-0.log", "w") as f:
        f.write("".join(f"line {i}\n" for i in range(10)))
    body = http.get(f"/api/training/jobs/{job_id}/logs", params={"tail": 3}).json()
    assert body["attempt"] == 1 and body["logs"] == {"rank-0": ["line 7", "line 8", "line 9"]}


def test_event_stream_starts_with_a_snapshot_then_follows(service) -> None:
    """The stream generator, driven directly: snapshot, then each change in order."""
    from api import stream

    backend = ServiceBackend(service)

    async def scenario():
        job = await service.submit(spec())
        gen = stream.follow(backend, job["job_id"], heartbeat_s=0.2)
        first = await gen.__anext__()
        assert first.startswith("event: snapshot") and '"status":"pending"' in first
        sim = RunnerSim(service.core, job["job_id"], 1)
        sim.started()
        sim.report(0)
        events = [await gen.__anext__() for _ in range(2)]
        assert events[0].split("\n")[1] == "event: status" and '"running"' in events[0]
        assert events[1].split("\n")[1] == "event: report"
        data = json.loads(events[1].split("data: ", 1)[1])
        assert data["metrics"] == {"step": 0}
        assert await gen.__anext__() == ": keep-alive\n\n"  # nothing new for a while
        await gen.aclose()

    asyncio.run(scenario())


def test_model_cache_routes_and_their_errors(http, service) -> None:
    assert http.get("/api/models").json() == []
    r = http.get("/api/models/org/absent")
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "org/absent" in r.json()["message"]
    assert http.delete("/api/models/org/absent").status_code == 404
    r = http.post("/api/models", json={"model_id": "../../etc/passwd"})
    assert r.status_code == 422 and r.json()["field"] == "model_id"
    assert http.post("/api/models", json={"model_id": "a/b", "colour": 1}).status_code == 422
    # A finished entry is listed and can be deleted; one still downloading cannot.
    cache = service.models
    cache.start("org/tiny")
    assert http.delete("/api/models/org/tiny").status_code == 409
    entry = cache.entry("org/tiny")
    entry.update(status="ready", bytes_done=10, bytes_total=10)
    cache._write(entry)
    assert [m["status"] for m in http.get("/api/models").json()] == ["ready"]
    assert http.delete("/api/models/org/tiny").json()["status"] == "deleted"
    assert http.get("/api/models").json() == []


def test_all_jobs_stream_snapshots_active_jobs_then_follows_every_job(service) -> None:
    from api import stream

    backend = ServiceBackend(service)

    async def scenario():
        a = await service.submit(spec())
        gen = stream.follow(backend, None, heartbeat_s=0.2)
        first = await gen.__anext__()
        assert first.startswith("event: snapshot") and a["job_id"] in first
        b = await service.submit(spec())
        events = [await gen.__anext__() for _ in range(2)]
        assert all(b["job_id"] in e for e in events)  # b queued, then b pending
        await gen.aclose()

    asyncio.run(scenario())


# -- what fuzzing found (tests/http/test_fuzz_api.py runs schemathesis itself) -----------------------------
def test_out_of_range_numbers_are_422_not_500(http) -> None:
    for path in ("/api/training/jobs?offset=5369965778165713648746496", "/api/training/queue?limit=10000000000",
                 "/api/training/jobs/job_x/metrics?after_id=99999999999999999999",
                 "/api/training/pause/job_x?deadline_s=1e308"):
        r = http.request("POST" if "pause" in path else "GET", path)
        assert r.status_code == 422 and r.json()["error"] == "invalid", (path, r.text)


def test_a_body_that_is_not_json_text_is_422(http) -> None:
    for content in (b"\x80", b"{not json"):  # not UTF-8 (the framework's 400), not JSON (its 422)
        r = http.post("/api/training/jobs", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json() == {"error": "invalid", "field": "body",
                                                     "message": "the request body is not valid JSON"}


def test_405_lists_every_method_of_the_path_and_unknown_paths_keep_the_error_shape(http) -> None:
    r = http.options("/api/training/jobs")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST" and r.json()["error"] == "method_not_allowed"
    assert http.options("/api/training/jobs/job_x").headers["allow"] == "GET, PATCH"
    assert http.options("/api/models/org/name").headers["allow"] == "DELETE, GET"
    r = http.delete("/api/models/a%0Ab")  # no route matches a newline
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_the_schema_states_the_rules_the_server_enforces(http) -> None:
    schema = http.get("/openapi.json").json()
    body = schema["components"]["schemas"]["JobSpec"]
    shapes = {branch["title"]: branch for branch in body["oneOf"]}
    assert shapes["entrypoint"]["required"] == ["entrypoint"]
    assert shapes["workload hf-causal-lm"]["properties"]["config"]["required"] == ["train_files"]
    assert body["properties"]["entrypoint"]["pattern"].startswith("^")
    offset = next(p for p in schema["paths"]["/api/training/jobs"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 1_000_000_000
    assert http.post("/api/training/jobs", json={}).status_code == 422
    assert http.post("/api/training/jobs", json=spec(num_workers=2.0)).status_code == 201  # an integer in JSON
    assert http.post("/api/training/jobs", json=spec(num_workers=True)).status_code == 422
    assert http.post("/api/training/jobs", json=spec(num_workers="2")).status_code == 422


def test_pause_with_a_deadline_and_no_deadline_keeps_the_deadline(http, service) -> None:
    job_id, _ = _running(http, service)
    r = http.post(f"/api/training/pause/{job_id}", params={"deadline_s": 30, "no_deadline": "true"})
    assert r.status_code == 200 and r.json()["deadline_at"] is not None


def test_the_hot_reads_send_what_the_dicts_say_and_follow_every_change(http, service) -> None:
    # get, list and queue go out as JSON the scheduler encodes itself (each job's unchanging part
    # once); what they send must be exactly the Python API's dicts, before and after changes.
    core = service.core
    running, sim = _running(http, service, num_workers=2)
    waiting = http.post("/api/training/jobs", json=spec(num_workers=2, name="waits")).json()["job_id"]
    sim.report(1, "/ck/1")

    def same() -> None:
        for job_id in (running, waiting):
            assert http.get(f"/api/training/jobs/{job_id}").json() == core.get(job_id)
        assert http.get("/api/training/jobs?limit=100&offset=0").json() == {
            "jobs": core.list(None, 100, 0), "total": core.count(), "limit": 100, "offset": 0}
        assert http.get("/api/training/jobs?status=queued&limit=1").json()["jobs"] == core.list("queued", 1, 0)
        assert http.get("/api/training/queue").json() == core.queue()

    same()
    assert http.get(f"/api/training/jobs/{waiting}").json()["pending_reason"]["code"] == "resources"
    before = http.get(f"/api/training/jobs/{running}").json()
    sim.report(2, "/ck/2")  # a new row for the job: nothing cached may answer for it
    after = http.get(f"/api/training/jobs/{running}").json()
    assert before["metrics"] == {"step": 1} and after["metrics"] == {"step": 2}
    http.post(f"/api/training/cancel/{running}")
    same()


def test_a_nan_metric_is_sent_as_a_string_everywhere_not_refused(http, service) -> None:
    # A diverged loss: JSON has no NaN, and a 500 (or a NaN token a browser cannot parse) would
    # hide the job exactly when its user looks at it.
    job_id, _ = _running(http, service)
    service.core.on_runner_event({"kind": "report", "job_id": job_id, "attempt": 1, "seq": 1, "at": 1.0,
                                  "metrics": {"step": 1, "loss": float("nan"), "grad": float("-inf")},
                                  "checkpoint_path": None})
    assert service.core.get(job_id)["metrics"]["loss"] != service.core.get(job_id)["metrics"]["loss"]  # NaN kept
    for path in (f"/api/training/jobs/{job_id}", f"/api/training/jobs/{job_id}/metrics", "/api/training/jobs"):
        r = http.get(path)
        assert r.status_code == 200, (path, r.text)
        json.loads(r.text, parse_constant=lambda c, path=path: pytest.fail(f"{path} sent {c}"))
    assert http.get(f"/api/training/jobs/{job_id}").json()["metrics"] == {"step": 1, "loss": "NaN", "grad": "-Infinity"}
    from api import stream

    frame = stream.sse("report", {"metrics": {"loss": float("nan")}}, 7)
    data = frame.split("data: ", 1)[1]
    assert json.loads(data, parse_constant=lambda c: pytest.fail(f"SSE sent {c}")) == {"metrics": {"loss": "NaN"}}


def test_the_batched_reads_answer_exactly_the_hot_reads_and_refuse_any_other_name(service) -> None:
    import asyncio

    from scheduler.errors import JobNotFound
    from scheduler.wire import HOT_READS

    job_id = service.core.submit(spec())["job_id"]
    answers = asyncio.run(service.reads([("get_json", (job_id,)), ("get_json", ("job_nope",)),
                                         ("page_json", (None, 10, 0)), ("queue_json", (None, 0))]))
    assert json.loads(answers[0])["job_id"] == job_id and isinstance(answers[1], JobNotFound)
    assert json.loads(answers[2])["total"] == 1 and isinstance(json.loads(answers[3]), list)
    assert {"get_json", "page_json", "queue_json"} == HOT_READS  # the API batches exactly these
    for name in ("pause", "__init__", "cancel"):
        with pytest.raises(ValueError, match="not a read"):
            asyncio.run(service.reads([(name, ("job_x",))]))


def test_the_page_is_told_which_verbs_each_state_allows(http) -> None:
    """Read off the transition table once (api.page.actions_by_status), so the page's buttons and
    the server agree: nothing on a completed job, resume only where a job can be resumed."""
    ui = http.get("/api/ui/config").json()
    actions = ui["actions"]
    assert set(actions) == {s.value for s in JobStatus}
    assert actions["completed"] == []
    assert sorted(actions["running"]) == ["cancel", "checkpoint", "pause"]
    assert sorted(actions["paused"]) == ["cancel", "resume"]
    assert actions["failed"] == actions["cancelled"] == ["resume"]
    assert "resume" not in actions["queued"] and "pause" in actions["queued"]


def test_without_ray_there_are_no_nodes_to_list_or_drain(http) -> None:
    # The fuzz test found these answered 503 (a server error) on a scheduler without Ray.
    assert http.get("/api/cluster/nodes").json() == []
    r = http.post(f"/api/cluster/nodes/{'0' * 56}/drain")
    assert r.status_code == 404 and "no live node" in r.json()["message"]


def test_the_schema_says_accelerator_types_are_distinct(http) -> None:
    # The fuzz test found a schema-valid list with a repeated type refused: the schema now says so.
    schema = http.get("/openapi.json").json()
    types = json.dumps(schema)
    assert '"uniqueItems": true' in types
    r = http.post("/api/training/jobs", json={"entrypoint": "m:f", "accelerator_type": ["A100", "A100"]})
    assert r.status_code == 422 and r.json()["field"] == "accelerator_type"
