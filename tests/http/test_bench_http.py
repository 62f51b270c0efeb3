"""The HTTP benchmark's own pieces against a real uvicorn server: the lean load client counts
every answer and stops at the first error, and trainq's app over the instant backend answers the
hot reads as the no-scheduler baseline does (both are what the ``control_plane`` rows compare)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from serving import ServerThread

from benchmarks.control_plane import _http_load
from benchmarks.serve import InstantBackend, bare_app, baseline_app

JOB = {"job_id": "job_bench0000001", "name": "bench", "status": "completed", "priority": 0}


@pytest.fixture(scope="module")
def baseline() -> Iterator[str]:
    with ServerThread(baseline_app(JOB)) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def instant() -> Iterator[str]:
    from api.app import create_app

    with ServerThread(create_app(InstantBackend(JOB), token=None)) as srv:
        yield srv.url


def test_the_load_client_makes_every_request_and_times_each(baseline) -> None:
    rate, latencies = asyncio.run(_http_load(baseline, f"/api/training/jobs/{JOB['job_id']}", 250, 8))
    assert len(latencies) == 250 and rate > 0 and all(0 < t < 10 for t in latencies)
    # A POST with a body is answered 201 and counted too.
    _, posted = asyncio.run(_http_load(baseline, "/api/training/jobs", 20, 4, "POST", {"entrypoint": "x:y"}))
    assert len(posted) == 20


def test_the_load_client_stops_at_an_error_and_names_it(baseline) -> None:
    with pytest.raises(RuntimeError, match="404"):
        asyncio.run(_http_load(baseline, "/api/training/nothing-here", 10, 2))


def test_the_instant_backend_and_the_bare_app_answer_like_the_baseline(baseline, instant) -> None:
    import httpx

    with ServerThread(bare_app(JOB)) as bare:
        for path in (f"/api/training/jobs/{JOB['job_id']}", "/api/training/jobs?limit=100",
                     "/api/training/queue?limit=100"):
            theirs = httpx.get(baseline + path)
            for ours in (httpx.get(instant + path), httpx.get(bare.url + path)):
                assert ours.status_code == theirs.status_code == 200
                assert json.loads(ours.content) == json.loads(theirs.content), path
        posted = [httpx.post(url + "/api/training/jobs", json={"entrypoint": "x:y"}) for url in (baseline, bare.url)]
        assert [p.status_code for p in posted] == [201, 201] and posted[0].json() == posted[1].json()
