"""A slow launch must not stall the scheduler: another client's ``get`` latency while a job with a
90 MB working_dir is launched (the client uploads it, the scheduler zips it for Ray), side by side
with the same polling while nothing launches (the baseline).

The polling client runs in a process of its own, as another user's would: this process's GIL is
busy zipping and sending the folder. The test (``tests/e2e/test_reliability_e2e.py``) checks the
behaviour (the loop answered within half of the launch, reports kept arriving); the figure is here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import JOBS_DIR, Row, Workspace, percentile, steps_spec, wait_status

POLLER = """
import json, pathlib, sys, time
import ray
ray.init(address=sys.argv[1], namespace="trainq", log_to_driver=False, configure_logging=False)
handle = ray.get_actor("scheduler", namespace="trainq")
ray.get(handle.get.remote(sys.argv[2]))
stop = pathlib.Path(sys.argv[3])
pathlib.Path(sys.argv[3] + ".ready").touch()
latencies = []
while not stop.exists():
    asked = time.monotonic()
    ray.get(handle.get.remote(sys.argv[2]))
    latencies.append(time.monotonic() - asked)
    time.sleep(0.05)
print(json.dumps(latencies))
"""


def _poll_while(job_id: str, stop: Path, during: Any) -> list[float]:
    """``get(job_id)`` every 50 ms from another process for as long as ``during()`` takes."""
    import ray

    poller = subprocess.Popen([sys.executable, "-c", POLLER, ray.get_runtime_context().gcs_address, job_id,
                               str(stop)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not Path(str(stop) + ".ready").exists() and poller.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    during()
    stop.touch()
    return list(json.loads(poller.communicate(timeout=60)[0]))


def run(client: Any, ws: Workspace, quick: bool) -> list[Row]:
    busy = client.submit(steps_spec("busy", str(ws.dir / "busy.log"), total=100_000, every=100_000,
                                    step_s=0.1))["job_id"]
    wait_status(client, busy, {"running"})
    big = ws.dir / "big"
    big.mkdir(exist_ok=True)
    shutil.copy(Path(JOBS_DIR) / "steps.py", big / "steps.py")
    for i in range(2):  # random bytes do not compress: zipping and hashing take real time
        (big / f"blob{i}.bin").write_bytes(os.urandom(45 * 1024 * 1024))
    window: dict[str, float] = {}

    def idle() -> None:
        time.sleep(window.get("launch", 6.0))

    def launch() -> None:
        spec = steps_spec("slowlaunch", str(ws.dir / "slow.log"), total=2, step_s=0.01)
        spec["runtime_env"] = {"working_dir": str(big)}
        t0 = time.monotonic()
        job_id = client.submit(spec)["job_id"]
        wait_status(client, job_id, {"running", "completed", "failed"})
        window["launch"] = time.monotonic() - t0
        if client.get(job_id)["status"] == "running":
            client.cancel(job_id)

    during = _poll_while(busy, ws.dir / "stop-launch", launch)
    baseline = _poll_while(busy, ws.dir / "stop-idle", idle)
    client.cancel(busy)
    shutil.rmtree(big, ignore_errors=True)
    note = f"launch {window['launch']:.1f} s; {len(during)} gets during it, {len(baseline)} idle"
    return [
        Row("launch stall: another client's get, worst, during a 90 MB working_dir launch (baseline: the same"
            " polling with no launch)", max(during), max(baseline), "s", "≤ 0.5 s", max(during) <= 0.5, note),
        Row("launch stall: another client's get, p50, during the launch (baseline: no launch)",
            percentile(during, 0.5), percentile(baseline, 0.5), "s", "ratio ≤ 2",
            percentile(during, 0.5) <= 2 * percentile(baseline, 0.5)),
    ]
