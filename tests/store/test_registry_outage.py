"""Faults of the registry's database (issue 29, item 4), through the whole stack without Ray.

``trainq serve`` opens (and migrates) a reachable registry before it starts anything, and refuses
one whose server is down, naming host:port.

Lost while the scheduler runs: the real core over a Postgres registry (fenced by its lease, as the
actor runs it), ``SchedulerService`` and the API on a real HTTP server, and a real Postgres server
stopped and started again under them. While the server is down the API answers 503 with trainq's
error body naming the database (never its password), ``/health`` too; a verb commits nothing and
launches nothing, and a failed housekeeping tick leaves the core as it was. When the server returns,
the same scheduler carries on: the tick starts what fits, a runner's event delivered again is applied once,
and a submit retried with its Idempotency-Key creates exactly one job, whether or not the first try
had committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec
from pg import PostgresServer
from serving import ServerThread

from api.app import create_app
from api.backend import ServiceBackend
from scheduler.cli.commands import UsageError
from scheduler.cli.serve import registry_settings
from scheduler.config import Settings
from scheduler.core import Scheduler
from scheduler.errors import RegistryUnavailable
from scheduler.service import SchedulerService
from scheduler.store import open_event_store, open_store

SECRET = "pw-not-shown"
JOBS = "/api/training/jobs"


class Stack:
    """The scheduler as ``trainq serve`` runs it, minus Ray: core, service and API over one registry."""

    def __init__(self, url: str, root: Path) -> None:
        self.store = open_store(url)
        lease = self.store.acquire_lease("outage-test", ttl_s=3600, now=1.0)
        assert lease is not None
        self.store.fence(lease.epoch)  # as the actor does: every write checks the lease in its transaction
        self.launcher = FakeLauncher()
        self.cluster = FakeCluster({"CPU": 1})
        self.core = Scheduler(self.store, self.launcher, self.cluster, storage_root=str(root / "storage"),
                              clock=FakeClock(), checkpoint_fs=FakeCheckpointFS())
        self.events = open_event_store(url)
        settings = Settings(storage_root=str(root / "storage"), db_path=url)
        self.service = SchedulerService(self.core, settings, events=self.events)

    def close(self) -> None:
        self.store.close()
        if self.events is not None:
            self.events.close()


@pytest.fixture
def server(pg_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session's Postgres, started again after the test whatever happened in it."""
    yield pg_server
    if not pg_server.running:
        pg_server.start()


@pytest.fixture
def stack(server: PostgresServer, fresh_pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    # A password in the URL (trust authentication ignores it): it must show nowhere.
    built = Stack(fresh_pg_url.replace("postgres@", f"postgres:{SECRET}@"), tmp_path)
    yield built
    built.close()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with ServerThread(create_app(ServiceBackend(stack.service), token=None)) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as client:
        yield client


def _submit(api: httpx.Client, name: str, key: str) -> httpx.Response:
    return api.post(JOBS, json=spec(name=name), headers={"Idempotency-Key": key})


def _assert_unavailable(answer: httpx.Response, port: int) -> None:
    assert answer.status_code == 503, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == "unavailable" and body["where"] == f"127.0.0.1:{port}"
    assert body["message"].startswith(f"the job registry at 127.0.0.1:{port} is unavailable")
    assert SECRET not in answer.text and "Traceback" not in answer.text


def test_a_lost_database_is_a_503_commits_nothing_and_the_scheduler_carries_on_when_it_returns(
        server: PostgresServer, stack: Stack, api: httpx.Client) -> None:
    first = _submit(api, "first", "key-first")
    assert first.status_code == 201 and first.json()["status"] == "pending"
    first_id = first.json()["job_id"]
    runner = RunnerSim(stack.core, first_id, 1)
    runner.started()
    second = _submit(api, "second", "key-second").json()
    assert second["status"] == "queued"  # one CPU, held by the first job
    committed = _submit(api, "committed", "key-committed")  # its answer may be lost on the way back
    assert committed.status_code == 201
    before = (stack.core.count("queued"), stack.core.count("running"), list(stack.launcher.launched))
    assert api.get("/health").json()["ok"] is True

    server.stop()
    # A scheduler that can change nothing is not healthy: a monitor hears it, as a caller would.
    _assert_unavailable(api.get("/health"), server.port)
    _assert_unavailable(_submit(api, "third", "key-third"), server.port)
    _assert_unavailable(_submit(api, "committed", "key-committed"), server.port)  # the client retries
    _assert_unavailable(api.get(JOBS), server.port)
    _assert_unavailable(api.post(f"/api/training/cancel/{second['job_id']}", headers={"Idempotency-Key": "key-cancel"}),
                        server.port)
    # The first job's runner ends and tells the scheduler: refused (a runner delivers again until heard).
    with pytest.raises(RegistryUnavailable):
        runner.exit("completed")
    # A node joins, so the queued job would fit: the housekeeping tick tries, and fails before it
    # launches anything (the job's move to pending is written before its runner is started).
    stack.cluster.total = {"CPU": 2}
    with pytest.raises(RegistryUnavailable):
        stack.core.tick()
    # Nothing that was refused changed the scheduler's own view of the registry either.
    assert (stack.core.count("queued"), stack.core.count("running"), stack.launcher.launched) == before

    server.start()
    assert api.get("/health").json()["ok"] is True
    stack.core.tick()  # the same core, the same store object: it reconnects by itself
    assert stack.launcher.launched == [*before[2], (second["job_id"], 1, None)]  # started once, after the outage
    runner.exit("completed")  # delivered again: applied once, and its CPU goes to the next in line
    stack.core.tick()
    assert stack.launcher.launched == [*before[2], (second["job_id"], 1, None), (committed.json()["job_id"], 1, None)]
    assert api.get(f"{JOBS}/{first_id}").json()["status"] == "completed"
    assert [t["to_status"] for t in api.get(f"{JOBS}/{first_id}/history").json()["transitions"]].count("completed") == 1

    # Retried with their keys: the one that never committed acts now, once; the one that had
    # committed before the outage answers its job again.
    third = _submit(api, "third", "key-third")
    assert third.status_code == 201
    assert _submit(api, "third", "key-third").json()["job_id"] == third.json()["job_id"]
    assert _submit(api, "committed", "key-committed").json()["job_id"] == committed.json()["job_id"]
    listing = api.get(JOBS).json()
    assert listing["total"] == 4 == stack.store.count_jobs()
    assert sorted(j["name"] for j in listing["jobs"]) == ["committed", "first", "second", "third"]
    # The cancel refused during the outage did nothing: the second job still runs its only attempt.
    assert api.get(f"{JOBS}/{second['job_id']}").json()["status"] == "pending"
    assert stack.launcher.stops == []



def test_serve_opens_a_reachable_registry_before_it_starts_and_refuses_it_once_its_server_is_down(
        server: PostgresServer, fresh_pg_url: str) -> None:
    url = fresh_pg_url.replace("postgres@", f"postgres:{SECRET}@")
    assert registry_settings(None, url, None).db_path == url
    assert server.psql("SELECT count(*) FROM lease", database=url.rsplit("/", 1)[1]) == "1"  # migrated by serve
    server.stop()
    with pytest.raises(UsageError) as refused:
        registry_settings(None, url, None)
    assert refused.value.fields["where"] == f"127.0.0.1:{server.port}" and SECRET not in str(refused.value)
