"""Elastic jobs on ``ray.cluster_utils.Cluster`` (issue 31), run in the background by tests/e2e/test_elastic.py.

A head with no CPUs (trainq's scheduler and runners live there) and one 2-CPU worker node; a
cooperative job of 1-CPU workers, ``{"min": 1, "max": 3}``, with ``TRAINQ_RESIZE_MIN_INTERVAL_S=4``:
1. it starts with the 2 workers that fit;
2. a 1-CPU node joins: the job grows to 3 at its next checkpoint (the hook: at once) and goes on
   from it;
3. a priority-10 one-worker job arrives: the elastic job shrinks by one instead of pausing, and the
   high job runs beside it;
4. the job is told to finish (a file appears) and completes.
The loop logs every step rank 0 runs and, at each start, its world size, so the test checks that
no step ran twice or was skipped and that Ray really ran each attempt at the recorded size.
Prints one JSON object with what happened; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from scenario_kit import JOBS_DIR, timeline, wait_for


def main(tmp: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    import scheduler

    out: dict = {}
    mark = timeline(out)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    mark("cluster up")
    log, sizes, until = f"{tmp}/elastic.log", f"{tmp}/sizes.log", f"{tmp}/finish"
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        job = client.submit({"name": "elastic", "entrypoint": "steps:count_steps", "backend": "none",
                             "num_workers": {"min": 1, "max": 3}, "min_runtime_s": 0,
                             "runtime_env": {"working_dir": JOBS_DIR},
                             "config": {"total": 100000, "every": 10, "step_s": 0.1, "cooperative": True,
                                        "log": log, "sizes": sizes, "until": until}})["job_id"]
        started = client.wait(job, "running", timeout_s=180)
        out["first_workers"] = started["workers"]
        mark("running")
        wait_for(lambda: client.checkpoints(job), 120, "a first checkpoint")
        cluster.add_node(num_cpus=1)
        mark("node added")
        grown = wait_for(lambda: (j := client.get(job))["attempt"] >= 2 and j["status"] == "running" and j, 240,
                         "the job grown and running again")
        out["grown"] = {k: grown[k] for k in ("workers", "attempt", "retries", "preemptions")}
        mark("grown")
        wait_for(lambda: len(client.checkpoints(job)) >= 3, 120, "a checkpoint after the grow")
        high = client.submit({"name": "high", "entrypoint": "steps:count_steps", "backend": "none", "priority": 10,
                              "runtime_env": {"working_dir": JOBS_DIR}, "config": {"total": 3, "step_s": 0.1}})
        high = high["job_id"]
        seen = set()
        deadline = time.monotonic() + 240
        while client.get(high)["status"] not in ("running", "completed", "failed") and time.monotonic() < deadline:
            seen.add(client.get(job)["status"])  # never "paused": a shrink goes back to the queue by itself
            time.sleep(0.2)
        mark("high running")
        out["elastic_states_while_high_waited"] = sorted(seen)
        # Its attempt after the shrink, as recorded: on a loaded machine the high job can end, and
        # this one grow again (the interval is 4 s here), before a poll sees that attempt running.
        shrunk = wait_for(lambda: (j := client.get(job))["attempt"] >= 3 and j, 240, "the job started again after"
                          " the shrink")
        third = client.history(job)["attempts"][2]
        out["shrunk"] = {"workers": third["workers"], "attempt": third["attempt"],
                         **{k: shrunk[k] for k in ("preempted_by", "preemptions")}}
        mark("shrunk")
        out["high"] = client.wait(high, {"completed", "failed"}, timeout_s=180)["status"]
        Path(until).touch()
        done = client.wait(job, {"completed", "failed"}, timeout_s=240)
        mark("completed")
        out["done"] = {k: done[k] for k in ("status", "retries", "workers")}
        out["history"] = client.history(job)
        out["steps"] = [int(x) for x in Path(log).read_text().split()]
        out["sizes"] = [[int(x) for x in line.split()] for line in Path(sizes).read_text().splitlines()]
    finally:
        ray.shutdown()
        cluster.shutdown()
    mark("shut down")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TRAINQ_RESIZE_MIN_INTERVAL_S", "4")
    result = main(sys.argv[1])
    print("RESULT " + json.dumps(result, default=str))
