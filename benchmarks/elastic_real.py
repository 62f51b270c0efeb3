"""Elastic jobs for real on 2 CPUs (issue 31): the simulated comparison's small real twin.

Three jobs arrive over 20 s on a local Ray of 2 CPUs: A and C data parallel (a step's work is
shared by the workers: ``step_s / k ** 0.9`` on ``k``), B a plain 1-worker job between them. Each
loop uses the cooperative hook, so a resize loses no step. Side by side, each mode on a fresh Ray
of its own (``python -m benchmarks.elastic_real DIR MODE`` in a subprocess, never the bench's Ray):

- **fixed**: A and C pinned at 2 workers (all the cluster has: what a user alone would ask for);
- **elastic**: A and C ``{"min": 1, "max": 2}``, ``TRAINQ_RESIZE_MIN_INTERVAL_S`` 10 s (a real
  cluster keeps the 300 s default; the jobs here last a minute, not hours).

Measured: mean job completion time (submit → completed, the driver's clock) and makespan. A
relaunch costs a start of Ray Train workers (seconds on 2 cores), which the simulation charges as
``RESTART_S``; here it is real.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import JOBS_DIR, Row, run_apart

STEP_S = 0.5
#: (name, arrival s, steps, elastic?)
TRACE = (("A", 0.0, 160, True), ("B", 10.0, 40, False), ("C", 20.0, 120, True))
INTERVAL_S = 10


def _steps(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def main(tmp: str, mode: str) -> dict[str, Any]:
    """Run the trace in ``mode`` (``fixed`` or ``elastic``) on a fresh local Ray; per job its
    completion time, sizes per attempt and whether every step ran once."""
    import ray

    import scheduler

    os.environ["TRAINQ_RESIZE_MIN_INTERVAL_S"] = str(INTERVAL_S)
    ray.init(num_cpus=2, namespace="trainq", log_to_driver=False, configure_logging=False)
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage-{mode}", db_path=f"{tmp}/trainq-{mode}.db")
        t0 = time.monotonic()
        submitted: dict[str, tuple[str, float]] = {}
        ended: dict[str, float] = {}
        pending = list(TRACE)
        while pending or len(ended) < len(TRACE):
            now = time.monotonic() - t0
            while pending and pending[0][1] <= now:
                name, _, total, elastic = pending.pop(0)
                workers: Any = ({"min": 1, "max": 2} if mode == "elastic" else 2) if elastic else 1
                config = {"total": total, "every": 10_000, "step_s": STEP_S, "cooperative": True,
                          "log": f"{tmp}/{mode}-{name}.log", "sizes": f"{tmp}/{mode}-{name}.sizes",
                          **({"alpha": 0.9} if elastic else {})}
                job_id = client.submit({"name": name, "entrypoint": "steps:count_steps", "backend": "none",
                                        "runtime_env": {"working_dir": JOBS_DIR}, "num_workers": workers,
                                        "min_runtime_s": 0, "config": config})["job_id"]
                submitted[name] = (job_id, now)
            for name, (job_id, at) in submitted.items():
                if name not in ended:
                    status = client.get(job_id)["status"]
                    if status in ("completed", "failed", "cancelled"):
                        if status != "completed":
                            raise RuntimeError(f"{name} ended {status}: {client.get(job_id)}")
                        ended[name] = time.monotonic() - t0 - at
            if now > 900:
                raise TimeoutError(f"the {mode} trace did not end: {ended}")
            time.sleep(0.2)
        out = {}
        for name, _, total, _ in TRACE:
            steps = _steps(Path(f"{tmp}/{mode}-{name}.log"))
            sizes = Path(f"{tmp}/{mode}-{name}.sizes").read_text().split("\n")
            out[name] = {"jct_s": ended[name], "once": sorted(steps) == list(range(total)),
                         "sizes": [int(line.split()[1]) for line in sizes if line.strip()]}
        out["makespan_s"] = max(submitted[n][1] + ended[n] for n in ended)
        return out
    finally:
        ray.shutdown()


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """The rows (the bench's own client and Ray are not used: each mode starts a Ray of its own)."""
    tmp = tempfile.mkdtemp(prefix="trainq-elastic-", dir=str(ws.dir))
    results = {mode: run_apart("benchmarks.elastic_real", tmp, mode) for mode in ("fixed", "elastic")}
    fixed, grown = results["fixed"], results["elastic"]
    names = [t[0] for t in TRACE]
    assert all(r[n]["once"] for r in results.values() for n in names), results  # no step lost or run twice
    jct = statistics.fmean(grown[n]["jct_s"] for n in names)
    jct0 = statistics.fmean(fixed[n]["jct_s"] for n in names)
    sizes = "; ".join(f"{n} {'→'.join(map(str, grown[n]['sizes']))}" for n in names)
    return [
        Row("elastic, real on 2 CPUs: mean job completion time, 3 jobs (A, C data parallel; B 1 worker)", jct, jct0,
            "s", "context", None, f"baseline: A and C at 2 workers; elastic sizes per attempt: {sizes}"),
        Row("elastic, real on 2 CPUs: makespan", grown["makespan_s"], fixed["makespan_s"], "s", "context", None,
            "baseline: the same jobs at a fixed size"),
    ]


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2])))
