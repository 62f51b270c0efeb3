"""What each running job costs the head node: N tiny jobs at once (N = 1, 4, 8), the memory of
trainq's runner host against Ray Train's own per-run controller, measured side by side.

Memory is each process's USS (what it alone holds: freed if it exited), from /proc, so pages
shared between Ray processes (libraries, the Python binary) are not counted once per process.
"""

from __future__ import annotations

import os
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


#: The actors Ray Train 2.60 may start beside each run's controller and workers: the checkpoint
#: barrier's, the placement group cleaner (left out by trainq), the datasets' (left out without datasets).
PER_RUN_HELPERS = ("SynchronizationActor", "PlacementGroupCleaner", "DatasetManager")


def _measure(client: Any, ws: Workspace, n: int) -> dict[str, Any]:
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
    # Ray Train's other per-run actors (what trainq's trainer leaves out does not appear here:
    # ``raycompat.trainer_class``); Ray's own per-node processes are not actors of a run.
    helpers = {k: ps for k, ps in procs.items() if k in PER_RUN_HELPERS}
    result = {"host": _uss_mb(procs.get("RunnerHost", [])), "controllers": _uss_mb(procs.get("TrainController", [])),
              "n_controllers": len(procs.get("TrainController", [])),
              "train_helpers": _uss_mb([p for ps in helpers.values() for p in ps]),
              "helper_counts": {k: len(ps) for k, ps in sorted(helpers.items())}}
    for job_id in ids:
        client.cancel(job_id)
    for job_id in ids:
        wait_status(client, job_id, {"cancelled"}, timeout_s=120)
    time.sleep(5)  # the runs' processes exit
    return result


def _idle_actor_mb() -> float:
    """The USS of an idle Ray actor process that has imported Ray Train (as the host must, to
    call ``fit()``): the least any process that carries runs can cost."""
    import ray

    @ray.remote(num_cpus=0)
    class Idle:
        def pid(self) -> int:
            import ray.train  # noqa: F401

            return os.getpid()

    actor = Idle.remote()
    pid = ray.get(actor.pid.remote())
    time.sleep(1)
    mb = psutil.Process(pid).memory_full_info().uss / 2**20
    ray.kill(actor)
    return mb


def run(client: Any, ws: Workspace, quick: bool) -> list[Row]:
    measured = {n: _measure(client, ws, n) for n in (1, 4, 8)}
    controller = measured[8]["controllers"] / max(measured[8]["n_controllers"], 1)
    # What each running job costs is what it adds; the host itself is paid once per cluster, as
    # the scheduler actor is, whether 1 job runs or 200.
    slope = (measured[8]["host"] - measured[1]["host"]) / 7
    rows = [Row("footprint: what each running job adds to trainq's runner host (slope 1→8; baseline: one Ray"
                " Train controller, USS)", slope, controller, "MB", "ratio ≤ 0.2", slope <= 0.2 * controller)]
    idle = _idle_actor_mb()
    rows.append(Row("footprint: trainq's runner host, once per cluster like the scheduler actor (baseline: one"
                    " controller)", measured[1]["host"], controller, "MB", "context", None,
                    note=f"an idle Ray actor that imported Ray Train is {idle:.0f} MB by itself"))
    eight = measured[8]
    rows.append(Row("footprint: Ray Train's helper actors per running job, 8 jobs (baseline: one controller)",
                    eight["train_helpers"] / 8, controller, "MB", "context", None,
                    note=", ".join(f"{k} ×{v}" for k, v in eight["helper_counts"].items()) or "none"))
    for n, m in measured.items():
        per_run = m["controllers"] / max(m["n_controllers"], 1)
        rows.append(Row(f"footprint: the host shared by {n} running job(s), per job (baseline: one controller)",
                        m["host"] / n, per_run, "MB", "context", None, note=f"host {m['host']:.0f} MB in all"))
    return rows
