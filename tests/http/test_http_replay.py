"""The HTTP answers, byte for byte, as recorded before the routes changed (``tests/data/http_replay.json``).

One scenario (the seed's routes: submit, list, get, queue, pause, resume, cancel, checkpoints, and
their 401/404/409/422 answers, with every edge of the hot routes' query parameters) runs against the
app over a ``SchedulerService`` with fakes, a fake clock and numbered job ids. Each answer's status,
the headers that matter and the body must be exactly the recorded ones; only the temp folder's name
is replaced (in both) by ``<TMP>``.

Record again (only when an answer is meant to change, and say why in the commit):
``.venv/bin/python tests/http/test_http_replay.py --record``.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, also when run as a script to record
from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import TESTS_DIR

FIXTURE = TESTS_DIR / "data" / "http_replay.json"
TOKEN = "replay-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: the headers an answer is compared on (content-length follows from the body, checked separately)
HEADERS = ("content-type", "www-authenticate", "allow")
#: every edge of the hot routes' query parameters (kept from the old differential test of api.hot)
LIST_QUERIES = ("", "limit=0", "limit=1", "limit=1000", "limit=1001", "limit=", "limit=-1", "limit=+5", "limit=%205",
                "limit=1e2", "limit=007", "limit=2&limit=3", "offset=0", "offset=1000000000", "offset=1000000001",
                "offset=-1", "status=queued", "status=queued&status=running", "status=Queued", "status=",
                "status=queued&limit=1", "foo=bar", "limit=2&foo=1&offset=1", "offset=1&offset=2", "limit=abc",
                "limit=9999999999999", "status=pending&status=queued&limit=1&offset=1")
QUEUE_QUERIES = ("", "limit=1", "limit=10000", "limit=10001", "limit=0", "limit=", "offset=3", "offset=-1",
                 "limit=1&limit=2", "status=queued", "limit=1&offset=1")
ONE_JOB_PATHS = ("/api/training/jobs/", "/api/training/jobs/job_nope", "/api/training/jobs/job_nope?x=1",
                 "/api/training/jobs/a%2Fb", "/api/training/jobs/a/b", "/api/training/jobs/%20")


def _ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"{next(numbers):020x}"


def scenario(do: Callable[..., Any], core: Any, root: str) -> None:
    """Every request of the replay, in order, with the runner events between them."""
    jobs = "/api/training/jobs"
    spec = {"entrypoint": "steps:count_steps", "num_workers": 2, "name": "first", "config": {"lr": 0.1}}
    first = do("POST", jobs, json=spec)["job_id"]  # starts (pending)
    second = do("POST", jobs, json={**spec, "name": "second", "priority": 1})["job_id"]  # queued
    do("POST", jobs, json={**spec, "name": "keyed"}, headers={"Idempotency-Key": "key-1"})
    do("POST", jobs, json={**spec, "name": "keyed"}, headers={"Idempotency-Key": "key-1"})  # the same answer
    do("POST", jobs, json={**spec, "name": "other"}, headers={"Idempotency-Key": "key-1"})  # the key reused: 409?
    third = do("POST", jobs, json={"entrypoint": "steps:count_steps", "num_workers": 1})["job_id"]
    # refused submits
    for body in ({"entrypoint": "m:f", "num_workers": 0}, {"entrypoint": "m:f", "bogus": 1},
                 {"entrypoint": "not an entrypoint"}, {}, [spec], "a string",
                 {"entrypoint": "m:f", "num_workers": True}, {"entrypoint": "m:f", "num_workers": 64},
                 {"entrypoint": "m:f", "num_workers": "2"}):
        do("POST", jobs, json=body)
    for content, ctype in ((b"{not json", "application/json"), (b"\x80", "application/json"),
                           (b"", "application/json"), (json.dumps(spec).encode(), "text/plain"),
                           (json.dumps(spec).encode(), None)):
        do("POST", jobs, content=content, headers={"Content-Type": ctype} if ctype else {})
    for key in ("", "x" * 201, "tab\there"):
        do("POST", jobs, json=spec, headers={"Idempotency-Key": key})
    do("POST", jobs, json=spec, auth=None)
    do("POST", jobs, json=spec, auth={"Authorization": "Bearer wrong"})
    do("POST", jobs, content=b"{not json", headers={"Content-Type": "application/json"}, auth=None)
    do("POST", jobs, json={"bogus": 1}, auth=None)
    # reads
    for query in LIST_QUERIES:
        do("GET", f"{jobs}?{query}" if query else jobs)
    for query in QUEUE_QUERIES:
        do("GET", f"/api/training/queue?{query}" if query else "/api/training/queue")
    for path in ONE_JOB_PATHS:
        do("GET", path)
    for job_id in (first, second, third):
        do("GET", f"{jobs}/{job_id}")
    for path in (jobs, "/api/training/queue", f"{jobs}/{first}", f"{jobs}/job_nope"):
        do("GET", path, auth=None)
        do("GET", path, auth={"Authorization": f"bearer {TOKEN}"})
        do("GET", path, auth={"Authorization": TOKEN})
        do("GET", path, auth={"Authorization": f"Basic {TOKEN}"})
    do("OPTIONS", jobs)
    do("OPTIONS", f"{jobs}/{first}")
    # a run: reports, a checkpoint, a NaN metric; pause, resume, cancel and their refusals
    sim = RunnerSim(core, first, 1)
    sim.started()
    core.clock.advance(30)
    job_root = f"{root}/{first}"
    sim.report(1, f"{job_root}/attempt-1/ck1")
    core.clock.advance(30)
    core.on_runner_event({"kind": "report", "job_id": first, "attempt": 1, "seq": 2, "at": core.clock(),
                          "metrics": {"step": 2, "loss": float("nan")}, "checkpoint_path": f"{job_root}/attempt-1/ck2"})
    sim.seq = 2
    do("GET", f"{jobs}/{first}")
    do("GET", f"{jobs}/{first}/checkpoints")
    do("GET", f"{jobs}/job_nope/checkpoints")
    do("GET", f"{jobs}/{first}/checkpoints", auth=None)
    do("POST", f"/api/training/pause/{first}?deadline_s=-1")
    do("POST", f"/api/training/pause/{first}", auth=None)
    do("POST", "/api/training/pause/job_nope")
    do("POST", f"/api/training/pause/{first}?deadline_s=120")
    do("POST", f"/api/training/pause/{first}")  # pausing already
    do("GET", f"{jobs}?status=pausing")
    core.clock.advance(5)
    sim.report(3, f"{job_root}/attempt-1/ck3")
    sim.exit("paused", checkpoint=f"{job_root}/attempt-1/ck3")
    do("GET", f"{jobs}/{first}")
    do("GET", "/api/training/queue")
    do("POST", f"/api/training/resume/{first}?checkpoint_path=/etc")
    do("POST", f"/api/training/resume/{first}?checkpoint_path={job_root}/attempt-1/ck1")
    do("POST", f"/api/training/resume/{first}")  # queued already: 409
    do("POST", "/api/training/resume/job_nope")
    do("POST", f"/api/training/resume/{first}", auth=None)
    do("POST", f"/api/training/pause/{second}")  # a queued job
    do("POST", f"/api/training/resume/{second}", headers={"Idempotency-Key": "resume-1"})
    do("POST", f"/api/training/resume/{second}", headers={"Idempotency-Key": "resume-1"})
    do("POST", f"/api/training/cancel/{third}")
    do("POST", f"/api/training/cancel/{third}")  # cancelled already: the same answer again
    do("POST", "/api/training/cancel/job_nope")
    do("POST", f"/api/training/cancel/{second}", auth=None)
    do("POST", f"/api/training/cancel/{second}", headers={"Idempotency-Key": "x" * 201})
    do("GET", f"{jobs}/{third}")
    do("GET", jobs)
    do("GET", "/api/training/queue")
    do("GET", f"{jobs}/{first}/checkpoints")


def exchanges(tmp: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Run the scenario on a fresh app in ``tmp``: each (request, answer), the temp folder named ``<TMP>``."""
    from fastapi.testclient import TestClient

    import scheduler.jobs
    from api.app import create_app
    from api.backend import ServiceBackend
    from scheduler.config import Settings
    from scheduler.core import Scheduler
    from scheduler.service import SchedulerService
    from scheduler.store import SQLiteStore

    saved = scheduler.jobs.ordered_id
    scheduler.jobs.ordered_id = _ids()  # new_job_id's ids: numbered (request keys keep theirs: never sent)
    store = SQLiteStore(str(tmp / "trainq.db"))
    root = str(tmp / "storage")
    try:
        core = Scheduler(store, FakeLauncher(), FakeCluster({"CPU": 4}), storage_root=root, clock=FakeClock(),
                         checkpoint_fs=FakeCheckpointFS())
        service = SchedulerService(core, Settings(storage_root=root, db_path=":memory:"))
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        with TestClient(create_app(ServiceBackend(service), token=TOKEN, users=None)) as http:
            def do(method: str, path: str, json: Any = None, content: bytes | None = None,
                   headers: dict[str, str] | None = None, auth: dict[str, str] | None = AUTH) -> Any:
                sent = {**(auth or {}), **(headers or {})}
                r = http.request(method, path, json=json, content=content, headers=sent)
                request = {"method": method, "path": path.replace(str(tmp), "<TMP>"), "headers": sent}
                if json is not None:
                    request["json"] = json
                if content is not None:
                    request["content"] = content.decode("latin-1")
                answer = {"status": r.status_code, "headers": {h: r.headers[h] for h in HEADERS if h in r.headers},
                          "body": r.content.decode("utf-8").replace(str(tmp), "<TMP>")}
                assert int(r.headers["content-length"]) == len(r.content), (method, path)
                out.append((request, answer))
                return r.json() if r.headers.get("content-type", "").startswith("application/json") else None

            scenario(do, core, root)
        yield from out
    finally:
        scheduler.jobs.ordered_id = saved
        store.close()


def record() -> None:
    with tempfile.TemporaryDirectory(prefix="trainq-replay-") as tmp:
        got = [{"request": q, "answer": a} for q, a in exchanges(Path(tmp))]
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded {len(got)} exchanges in {FIXTURE}")


def test_every_answer_is_the_recorded_one_byte_for_byte(tmp_path: Path) -> None:
    recorded = json.loads(FIXTURE.read_text())
    got = list(exchanges(tmp_path))
    assert [q for q, _ in got] == [e["request"] for e in recorded]  # the same scenario
    differ = [(q["method"], q["path"], e["answer"], a) for (q, a), e in zip(got, recorded) if a != e["answer"]]
    assert not differ, f"{len(differ)} answers differ; the first: {differ[0]}"


@pytest.mark.parametrize("status", [201, 200, 401, 404, 405, 409, 422])
def test_the_recording_covers_every_status(status: int) -> None:
    assert any(e["answer"]["status"] == status for e in json.loads(FIXTURE.read_text()))


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    record()
