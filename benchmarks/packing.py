"""Packing: a burst of 20 short jobs of mixed sizes (1 or 2 workers) on the 2-CPU cluster, in strict
order and with backfill, in the same run; each makespan over its ideal (the work ÷ the capacity).

Every job declares a time limit (what it may take at most, 60 s plus its step count, several times
its true run time), as the backfill needs known ends. The scheduler is started again between the
two passes with ``TRAINQ_BACKFILL`` off, then on (one scheduler per cluster: two would stop each
other's runners as orphans), and left as it was found.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any

from .common import Row, Workspace, steps_spec, wait_status


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _restart(client: Any, ws: Workspace, backfill: bool | None) -> None:
    """The scheduler actor again, with backfill on, off, or (None) as configured."""
    import ray

    from scheduler.actor import ensure_scheduler
    from scheduler.config import NAMESPACE, SCHEDULER_NAME, Settings

    ray.kill(client.handle, no_restart=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
        except ValueError:
            break
        time.sleep(0.2)
    settings = Settings().with_overrides(storage_root=ws.storage, db_path=ws.db, backfill=backfill)
    client.handle = ensure_scheduler(settings)
    client.list(limit=1)  # answers once it has recovered from the store


def _workload(client: Any, ws: Workspace, tag: str, n: int, capacity: int) -> tuple[float, float]:
    """(makespan, ideal) of ``n`` mixed jobs submitted at once (the same jobs for every ``tag``)."""
    rng = random.Random(1)
    t0 = time.time()
    jobs = []
    for i in range(n):
        workers, total = rng.choice([1, 1, 2]), rng.randint(5, 15)
        spec = steps_spec(f"pack{tag}{i}", str(ws.dir / f"pack{tag}{i}.log"), num_workers=workers, total=total,
                          every=5, step_s=0.1)
        spec["time_limit_s"] = 60 + total
        jobs.append((client.submit(spec)["job_id"], workers))
    work = 0.0
    end = 0.0
    for job_id, workers in jobs:
        done = wait_status(client, job_id, {"completed", "failed"}, timeout_s=900)
        assert done["status"] == "completed", f"{job_id}: {done.get('error')}"
        started = [t for t in client.history(job_id)["transitions"] if t["to_status"] == "pending"][-1]["at"]
        work += (_ts(done["finished_at"]) - _ts(started)) * workers
        end = max(end, _ts(done["finished_at"]))
    return end - t0, work / capacity


def run(client, ws: Workspace, quick: bool, capacity: int = 2) -> list[Row]:
    n = 6 if quick else 20
    try:
        _restart(client, ws, backfill=False)
        strict, strict_ideal = _workload(client, ws, "s", n, capacity)
        _restart(client, ws, backfill=True)
        filled, filled_ideal = _workload(client, ws, "b", n, capacity)
    finally:
        _restart(client, ws, backfill=None)
    return [
        Row(f"packing: makespan of {n} mixed 1-2 worker jobs / ideal (work ÷ capacity), backfill (baseline:"
            " strict order, same jobs, same run)", filled / filled_ideal, strict / strict_ideal, "×", "≤ 1.10",
            filled / filled_ideal <= 1.10, f"backfill {filled:.0f} s over {filled_ideal:.0f} s ideal;"
            f" strict {strict:.0f} s over {strict_ideal:.0f} s"),
    ]
