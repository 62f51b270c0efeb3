"""The registry on Postgres beside SQLite, in one run: submit (an insert with its transition and
request key, one commit each), get, a page of list, and a scheduling pass of the real core (a
fake launcher and cluster, no Ray) that starts queued jobs. Each row is Postgres against SQLite
(ratio = Postgres / SQLite), on a local server started for the run (Debian's postgresql, fsync
on as in production; ``tests/pg.py``) and a temp SQLite file (synchronous=FULL, as trainq runs it).

Run alone with ``python -m benchmarks.store [--full]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Row, median, table
from .scale import SPEC, _Cluster, _Launcher

_PG = Path(__file__).resolve().parent.parent / "tests" / "pg.py"


def _pg_module() -> Any:
    spec = importlib.util.spec_from_file_location("trainq_tests_pg", _PG)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _GrowingCluster(_Cluster):
    """Capacity grows by hand between passes; any job may fit once it has grown (an autoscaler)."""

    def max_capacity(self) -> dict[str, float]:
        return {"CPU": 1e9}


def _rate(n: int, run: Callable[[int], None]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        run(i)
    return n / (time.perf_counter() - t0)


def fencing(directory: Path, jobs: int, rounds: int) -> tuple[float, float]:
    """SQLite submits a second with the lease's fence (a store holding the lease) and without,
    interleaved: what the epoch check in every write transaction costs on the hot path."""
    from scheduler.jobs import Job, Transition
    from scheduler.states import JobStatus
    from scheduler.store import SQLiteStore

    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for fenced in (False, True):
            store = SQLiteStore(str(directory / f"fence-{r}-{fenced}.db"))
            if fenced:
                store.acquire_lease("bench", ttl_s=3600, now=1.0)

            def submit(i: int, store: SQLiteStore = store) -> None:
                job = Job(job_id=f"j{i}", name="b", spec=dict(SPEC), priority=0, seq=0, created_at=1.0, updated_at=1.0)
                store.insert_jobs([(job, Transition(job.job_id, None, JobStatus.QUEUED, 1.0, "submitted", 0), None)])
            rates[fenced].append(_rate(jobs, submit))
            store.close()
    return median(rates[True]), median(rates[False])


def measure(location: str, core_location: str, jobs: int, rounds: int) -> dict[str, float]:
    """Operations a second against the registry at ``location``, and the core's pass over an empty
    one at ``core_location`` (each the median of ``rounds``)."""
    from scheduler.core import Scheduler
    from scheduler.jobs import Job, Transition
    from scheduler.states import JobStatus
    from scheduler.store import Request, open_store

    store = open_store(location)
    made = [0]

    def submit(_: int) -> None:
        made[0] += 1
        job_id = f"job_{made[0]:07d}"
        job = Job(job_id=job_id, name="bench", spec=dict(SPEC), priority=0, seq=0, created_at=1.0, updated_at=1.0)
        store.insert_jobs([(job, Transition(job_id, None, JobStatus.QUEUED, 1.0, "submitted", 0),
                            Request(f"key-{job_id}", "submit", "fp"))])

    rng = random.Random(1)
    figures: dict[str, list[float]] = {"submit": [], "get": [], "list": [], "start": []}
    for _ in range(rounds):
        figures["submit"].append(_rate(jobs, submit))
        ids = [f"job_{rng.randint(1, made[0]):07d}" for _ in range(jobs)]
        figures["get"].append(_rate(jobs, lambda i, ids=ids: store.get_job(ids[i])))
        figures["list"].append(_rate(max(jobs // 10, 10), lambda i: store.list_jobs(limit=100, offset=(i % 10) * 100)))
    store.close()

    # A scheduling pass of the core over the registry: capacity for ``starts`` more jobs each round.
    store = open_store(core_location)
    cluster = _GrowingCluster(0)
    core = Scheduler(store, _Launcher(), cluster, storage_root=tempfile.mkdtemp(prefix="trainq-bench-store-"),
                     clock=lambda: 1_800_000_000.0)
    starts = max(jobs // 20, 10)
    for _ in range(starts * (rounds + 1)):
        core.submit(SPEC)
    for _ in range(rounds):
        cluster.total["CPU"] += starts
        t0 = time.perf_counter()
        started = core.schedule()
        elapsed = time.perf_counter() - t0
        assert len(started) == starts, (len(started), starts)
        figures["start"].append(starts / elapsed)
    store.close()
    return {name: median(values) for name, values in figures.items()}


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """Part of ``python -m benchmarks`` (needs no Ray; the client is unused)."""
    jobs, rounds = (500, 3) if quick else (2_000, 5)
    pg = _pg_module()
    if pg.bin_dir() is None:
        print(f"[bench] store: Postgres skipped: {pg.INSTALL_HINT}", file=sys.stderr)
        return []
    server = pg.PostgresServer(fsync=True)
    server.start()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="trainq-bench-store-"))
        # The core's pass runs on an empty registry of its own: a second database (a second file).
        server.create_database("bench")
        server.create_database("bench_core")
        lite = measure(str(tmp / "trainq.db"), str(tmp / "core.db"), jobs, rounds)
        fenced, unfenced = fencing(tmp, jobs, rounds)
        post = measure(server.url("bench"), server.url("bench_core"), jobs, rounds)
    finally:
        server.destroy()
    where = f"{jobs:,} per round, median of {rounds}; Postgres 15 on 127.0.0.1 vs an SQLite file"
    names = {"submit": "submit (insert job + transition + request key, one commit each)",
             "get": "get a job by id", "list": "list, a page of 100",
             "start": "scheduling pass of the core, jobs started a second"}
    notes = {"get": "SQLite answers from its decoded copies of unchanged jobs; Postgres keeps none"}
    return [Row(f"store on Postgres vs SQLite: {names[k]} ({where})", post[k], lite[k], "/s", "context", None,
                notes.get(k, "")) for k in ("submit", "get", "list", "start")] + [
        Row(f"store, SQLite: submit with the lease's fence vs without ({jobs:,} per round, median of {rounds},"
            " interleaved)", fenced, unfenced, "/s", "ratio ≥ 0.95 (the check is cheap)", fenced >= 0.95 * unfenced)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store", description=__doc__)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    print(table(run(None, None, quick=not args.full)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
