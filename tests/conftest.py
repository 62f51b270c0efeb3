"""Fixtures. Pure-core tests use fakes; Ray tests share one local Ray for the whole session."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler.core import Scheduler
from scheduler.store import SQLiteStore

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher
from helpers import API_TOKEN, JOBS_DIR, RAY_CPUS, SECRET_VALUE, SECRET_VAR
from pg import INSTALL_HINT, PostgresServer, bin_dir
from scenarios import Scenarios

# Every Ray the tests start (the session's, the multi-node clusters, each `trainq serve`) inherits these.
#: Ray Train's preemption watcher (an actor per run that polls for node drains) is off: no test
#: drains a node, trainq does not rely on it, and it costs every run a process start (about 0.5 s
#: on 2 cores). Ray Train's controller polls the workers every 0.2 s, not trainq's default 0.5:
#: a run's end (and a pause) is noticed about a second sooner, on each of the suite's ~150
#: attempts. Housekeeping ticks twice as often (``tq`` waits one tick for a fresh view of the
#: cluster). Deployments keep the defaults.
TEST_ENV = {"RAY_DEDUP_LOGS": "0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "TRAINQ_REPORT_POLL_S": "0.2",
            "TRAINQ_TICK_S": "0.5"}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Orders the session so its clusters overlap least where they would slow each other and most
    where they wait. First the tests marked ``own_cluster`` (they start Ray clusters of their own
    in subprocesses), before the session's shared Ray is up: on 2 cores a Ray beside them made
    them take up to twice as long; so do the modules that read a scenario's result (``SCENARIO``,
    see ``scenarios``). The sort is stable: the rest keep their order."""

    def rank(item: pytest.Item) -> int:
        # The scenarios too run first, each in its turn: beside the shared-Ray tests, on a loaded
        # machine, their Ray state reads timed out and a resize redid a step (a fresh-clone run).
        own = item.get_closest_marker("own_cluster") is not None
        return 0 if own or getattr(getattr(item, "module", None), "SCENARIO", None) else 1

    items.sort(key=rank)


#: run the scenarios in the background beside the shared-Ray tests (``TRAINQ_SCENARIOS_ALONGSIDE=1``):
#: ~3 minutes sooner, but flaky on a loaded 2-core machine; by default each runs when its module does
ALONGSIDE = os.environ.get("TRAINQ_SCENARIOS_ALONGSIDE") == "1"
#: the session's scenarios, until the tests with clusters of their own are done (``pytest_runtest_call``)
_DEFERRED: list[tuple[Scenarios, list[str]]] = []


@pytest.fixture(scope="session", autouse=True)
def scenarios(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenarios:
    """The multi-node scenarios of the selected test modules (their ``SCENARIO``), run in the
    background (tests/scenarios.py) from the first test that does not start a cluster of its own:
    beside those they slowed each other down (the cluster-lost test took 139 s, not 66 s). A
    module's fixture waits for its result (and starts its scenario at once if it must)."""
    runs = Scenarios(tmp_path_factory.mktemp("scenarios"))
    _DEFERRED.append((runs, [script for item in request.session.items
                             if (script := getattr(getattr(item, "module", None), "SCENARIO", None))]))
    return runs


def pytest_runtest_call(item: pytest.Item) -> None:
    if _DEFERRED and ALONGSIDE and item.get_closest_marker("own_cluster") is None:
        runs, scripts = _DEFERRED.pop()
        runs.start(scripts)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "trainq.db"))
    yield s
    s.close()


@pytest.fixture
def make_core(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    """Factory: a core over a temp SQLite file with a fake launcher, cluster and clock."""
    stores: list[SQLiteStore] = []

    def make(cluster: FakeCluster | None = None, launcher: FakeLauncher | None = None,
             clock: FakeClock | None = None, db: str = "trainq.db",
             checkpoint_fs: object | None = None, settings: object | None = None) -> Scheduler:
        store = SQLiteStore(str(tmp_path / db))
        stores.append(store)
        return Scheduler(store, launcher or FakeLauncher(), cluster or FakeCluster(),
                         storage_root=str(tmp_path / "storage"), clock=clock or FakeClock(),
                         checkpoint_fs=checkpoint_fs or FakeCheckpointFS(), settings=settings)

    yield make
    for s in stores:
        s.close()


# -- real Ray ----------------------------------------------------------------------------------
S3_BUCKET = "trainq-test"


@pytest.fixture(scope="session")
def local_s3() -> Iterator[dict]:
    """A local S3 (moto's server on 127.0.0.1) with bucket ``trainq-test``; its address in AWS_* variables.

    Ray's processes inherit the variables when Ray starts after this (``ray_cluster`` depends on
    it), so pyarrow's S3 client in the scheduler, the runners and the workers all reach it, as
    they would reach a cluster's real S3 (or MinIO) given the same variables. Every variable is
    restored at the end; ``AWS_EC2_METADATA_DISABLED`` keeps the SDK from asking a metadata service.
    """
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "trainq-test",
           "AWS_SECRET_ACCESS_KEY": "trainq-test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true",
           # the bucket is a storage root jobs may name (the scheduler actor reads this at creation)
           "TRAINQ_STORAGE_ROOTS": ",".join(filter(None, [os.environ.get("TRAINQ_STORAGE_ROOTS"), f"s3://{S3_BUCKET}"]))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
    yield {"bucket": S3_BUCKET, "root": f"s3://{S3_BUCKET}", **env}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, local_s3: dict) -> Iterator[dict]:
    """One local Ray (2 logical CPUs) for the whole test session (it can reach ``local_s3``)."""
    import ray

    # With the dashboard, as deployed: Ray Train's PlacementGroupCleaner relies on its State API.
    # address "local": always a Ray of our own, never one another test left running.
    ray.init(address="local", num_cpus=RAY_CPUS, include_dashboard=True, namespace="trainq",
             configure_logging=False, log_to_driver=False)
    root = tmp_path_factory.mktemp("trainq")
    yield {"storage_root": str(root / "storage"), "db_path": str(root / "trainq.db")}
    ray.shutdown()


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A local HuggingFace hub serving a tiny model as ``tiny/gpt2`` (slow enough to show progress)."""
    from hub import Hub, publish_tiny_model

    root = tmp_path_factory.mktemp("hub")
    publish_tiny_model(root)
    with Hub(root, delay_s=0.4) as h:
        yield h


@pytest.fixture(scope="session")
def client(ray_cluster: dict, hub):
    """The scheduler actor on the shared Ray, through the Python client (its hub: the local one).

    As a shared deployment runs it: the only head-node folder a job may name is the tests' own
    job folder (as an admin may allow a shared code folder; any other folder is uploaded by the
    client that submits it) and a secret from this process's environment goes to the workers.
    """
    from scheduler.actor import ensure_scheduler
    from scheduler.client import RayClient
    from scheduler.config import Settings

    os.environ["HF_ENDPOINT"] = hub.url
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    # A pause of a job with no checkpoint yet waits 10 s here, not 30 (the tests' jobs are short).
    os.environ.setdefault("TRAINQ_PAUSE_DEFAULT_DEADLINE_S", "10")
    os.environ.setdefault("TRAINQ_RETRY_BACKOFF_S", "1")
    os.environ[SECRET_VAR] = SECRET_VALUE
    settings = Settings().with_overrides(storage_root=ray_cluster["storage_root"], db_path=ray_cluster["db_path"],
                                         allowed_dirs=JOBS_DIR, secret_env=f"HF_TOKEN,{SECRET_VAR}")
    return RayClient(ensure_scheduler(settings))


@pytest.fixture(scope="session")
def server(client) -> Iterator[str]:
    """A real uvicorn server with the API over the shared scheduler actor; yields its URL."""
    from serving import ServerThread

    from api.app import create_app
    from api.backend import ActorBackend

    with ServerThread(create_app(ActorBackend(client.handle), token=API_TOKEN)) as srv:
        yield srv.url


@pytest.fixture
def tq(client, tmp_path: Path):
    """The client, with a helper to build step-counting jobs; cancels what a test left running.

    Each test starts on an idle cluster: every CPU free in Ray's view and in the scheduler's copy
    of it (refreshed every housekeeping tick), so what the test submits starts as it expects.
    """
    import time

    import ray

    if ray.available_resources().get("CPU", 0) < RAY_CPUS:
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) < RAY_CPUS and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.6)  # one tick of the scheduler's housekeeping (TRAINQ_TICK_S), which refreshes its view
    submitted: list[str] = []

    class Helper:
        c = client
        log_dir = tmp_path

        def steps_spec(self, name: str = "steps", **config: object) -> dict:
            config.setdefault("log", str(tmp_path / f"{name}.log"))
            extra = {k: config.pop(k) for k in ("num_workers", "priority", "max_failures", "max_retries",
                                                 "preemptible", "min_runtime_s") if k in config}
            # backend "none": the step counter needs no torch process group (the HF and torch
            # example tests run torch's), and a run starts seconds sooner without one
            return {"name": name, "entrypoint": "steps:count_steps", "config": config, "backend": "none",
                    "runtime_env": {"working_dir": JOBS_DIR}, "num_workers": 1, **extra}

        def submit(self, job_spec: dict) -> dict:
            job = client.submit(job_spec)
            submitted.append(job["job_id"])
            return job

        def steps_run(self, name: str = "steps") -> list[int]:
            path = tmp_path / f"{name}.log"
            return [int(x) for x in path.read_text().split()] if path.exists() else []

    yield Helper()
    for job_id in submitted:
        # Best effort: a test may have ended with the scheduler restarting; the next one waits for it.
        with contextlib.suppress(Exception):
            if client.get(job_id)["status"] in ("queued", "pending", "running", "pausing", "paused"):
                client.cancel(job_id)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One local Postgres server for the session, the store suite's and the end-to-end tests' (skips
    the test where none can be had: tests/pg.py says how to install the server)."""
    if bin_dir() is None:
        pytest.skip(INSTALL_HINT)
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()
