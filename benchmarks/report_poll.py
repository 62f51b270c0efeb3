"""What Ray Train's report poll costs the cluster (issue 30): ``TRAINQ_REPORT_POLL_S`` 0.2 s
against 0.5 s, side by side, each on a fresh local Ray of its own (a subprocess per setting:
``python -m benchmarks.report_poll DIR POLL``), never the bench's Ray.

``N`` running jobs of one worker each (a quarter CPU apiece, so all run at once on 2 CPUs), a
step a second and a report at each; once all run and settle, the CPU time of every Ray process on
the machine (controllers, workers, raylet, GCS, trainq's actors) over ``WINDOW_S``, per running
job. Each controller polls its workers every poll interval, so this is the price of a faster
move (a pause's checkpoint report and a run's end are both seen at the next poll).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

import psutil

from .common import JOBS_DIR, Row, median, run_apart

N = 6
WINDOW_S = 20.0
POLLS = (0.5, 0.2)


def _ray_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if line.startswith("ray::") or "raylet" in line or "gcs_server" in line or "dashboard" in line \
                or "runtime_env/agent" in line or "log_monitor" in line:
            out.append(p)
    return out


def _cpu_s(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def main(tmp: str, poll: float) -> dict[str, Any]:
    """CPU seconds per second of the Ray processes with ``N`` jobs running, at report poll ``poll``."""
    import ray

    import scheduler

    os.environ["TRAINQ_REPORT_POLL_S"] = str(poll)
    ray.init(num_cpus=2, namespace="trainq", log_to_driver=False, configure_logging=False)
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage-{poll}", db_path=f"{tmp}/trainq-{poll}.db")
        ids = [client.submit({"name": f"poll-{i}", "entrypoint": "steps:count_steps", "backend": "none",
                              "runtime_env": {"working_dir": JOBS_DIR}, "resources_per_worker": {"CPU": 0.25},
                              "config": {"total": 100_000, "every": 100_000, "step_s": 1.0}})["job_id"]
               for i in range(N)]
        deadline = time.monotonic() + 600
        while any(client.get(j)["status"] != "running" for j in ids):
            if time.monotonic() > deadline:
                raise TimeoutError("the jobs did not all start")
            time.sleep(0.5)
        time.sleep(10)  # every run past its start
        samples = []
        for _ in range(2):
            procs = _ray_processes()
            before, t0 = _cpu_s(procs), time.monotonic()
            time.sleep(WINDOW_S)
            after, t1 = _cpu_s(procs), time.monotonic()
            used = sum(after[pid] - before[pid] for pid in after if pid in before)
            samples.append(used / (t1 - t0))
        for j in ids:
            client.cancel(j)
        return {"cores": median(samples), "samples": samples}
    finally:
        ray.shutdown()


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """The rows (the bench's own client and Ray are not used: each setting starts a Ray of its own)."""
    tmp = tempfile.mkdtemp(prefix="trainq-poll-", dir=str(ws.dir))
    cores = {poll: run_apart("benchmarks.report_poll", tmp, str(poll))["cores"] for poll in POLLS}
    fast, slow = cores[POLLS[1]], cores[POLLS[0]]
    return [Row(f"report poll {POLLS[1]:g} s vs {POLLS[0]:g} s: CPU of all Ray processes per running job"
                f" ({N} jobs of 1 worker, a report a second)", 100 * fast / N, 100 * slow / N, "% of a core",
                "context", None, f"in all: {100 * fast:.0f}% vs {100 * slow:.0f}% of a core")]


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], float(sys.argv[2]))))
