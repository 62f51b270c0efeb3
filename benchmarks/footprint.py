"""What each running job costs the head node: N tiny jobs at once (N = 1, 4, 8), the memory of
trainq's runner host against Ray Train's own per-run controller, measured side by side.

Memory is each process's USS (what it alone holds: freed if it exited), from /proc, so pages
shared between Ray processes (libraries, the Python binary) are not counted once per process.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from .common import Row, Workspace, steps_spec, wait_status


def _processes() -> dict[str, list[psutil.Process]]:
    """Ray's worker processes on this machine, by the actor class in their title."""
    out: dict[str, list[psutil.Process]] = {}
    for p in psutil.process_iter(["cmdline"]):
        title = " ".join(p.info["cmdline"] or [])
        if not title.startswith("ray::"):
            continue
        actor = title[len("ray::"):].split(".")[0].split()[0]
        out.setdefault(actor, []).append(p)
    return out


def _uss_mb(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            total += p.memory_full_info().uss / 2**20
        except psutil.Error:
            pass
    return total


def _measure(client: Any, ws: Workspace, n: int) -> dict[str, float]:
    per_worker = round(1.6 / n, 3)  # all n fit at once on the 2 CPUs
    ids = []
    for i in range(n):
        spec = steps_spec(f"fp{n}-{i}", str(ws.dir / f"fp{n}-{i}.log"), total=400, every=1000, step_s=0.1)
        spec["resources_per_worker"] = {"CPU": per_worker}
        ids.append(client.submit(spec)["job_id"])
    for job_id in ids:
        wait_status(client, job_id, {"running"}, timeout_s=600)
    time.sleep(3)  # settle: every run past its start
    procs = _processes()
    result = {"host": _uss_mb(procs.get("RunnerHost", [])), "controllers": _uss_mb(procs.get("TrainController", [])),
              "n_controllers": len(procs.get("TrainController", [])),
              "train_helpers": _uss_mb([p for k, ps in procs.items() if k not in
                                        ("RunnerHost", "TrainController", "RayTrainWorker", "SchedulerActor")
                                        for p in ps])}
    for job_id in ids:
        client.cancel(job_id)
    for job_id in ids:
        wait_status(client, job_id, {"cancelled"}, timeout_s=120)
    time.sleep(5)  # the runs' processes exit
    return result


def run(client: Any, ws: Workspace, quick: bool) -> list[Row]:
    rows = []
    measured = {n: _measure(client, ws, n) for n in (1, 4, 8)}
    for n, m in measured.items():
        controller = m["controllers"] / max(m["n_controllers"], 1)
        per_job = m["host"] / n
        rows.append(Row(f"footprint: trainq's runner host per running job, {n} at once (baseline: one Ray Train"
                        " controller, USS)", per_job, controller, "MB", "ratio ≤ 0.2", per_job <= 0.2 * controller,
                        note=f"host {m['host']:.0f} MB in all"))
    slope = (measured[8]["host"] - measured[1]["host"]) / 7
    controller = measured[8]["controllers"] / max(measured[8]["n_controllers"], 1)
    rows.append(Row("footprint: each more running job adds to the runner host (slope 1→8; baseline: one"
                    " controller)", slope, controller, "MB", "ratio ≤ 0.2", slope <= 0.2 * controller))
    return rows
