"""Packing: a burst of short jobs of mixed sizes on the 2-CPU cluster; makespan over the ideal."""

from __future__ import annotations

import datetime as dt
import random
import time

from .common import Row, Workspace, steps_spec, wait_status


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run(client, ws: Workspace, quick: bool, capacity: int = 2) -> list[Row]:
    n = 6 if quick else 20
    rng = random.Random(1)
    t0 = time.time()
    jobs = []
    for i in range(n):
        workers = rng.choice([1, 1, 2])
        jobs.append((client.submit(steps_spec(f"pack{i}", str(ws.dir / f"pack{i}.log"), num_workers=workers,
                                               total=rng.randint(5, 15), every=5, step_s=0.1))["job_id"], workers))
    work = 0.0
    end = 0.0
    for job_id, workers in jobs:
        done = wait_status(client, job_id, {"completed", "failed"}, timeout_s=900)
        started = [t for t in client.history(job_id)["transitions"] if t["to_status"] == "pending"][-1]["at"]
        work += (_ts(done["finished_at"]) - _ts(started)) * workers
        end = max(end, _ts(done["finished_at"]))
    makespan = end - t0
    ideal = work / capacity
    return [Row(f"packing: makespan of {n} mixed 1-2 worker jobs / ideal (work ÷ capacity)", makespan, ideal,
                "s", "ratio ≤ 1.15", makespan / ideal <= 1.15)]
