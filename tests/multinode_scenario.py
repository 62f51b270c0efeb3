"""A multi-node scenario on ``ray.cluster_utils.Cluster``, run in its own process by test_multinode.py.

A head with no CPUs (trainq's scheduler and runners live there) and 1-CPU worker nodes:
1. a gang that fits the cluster's total but no node is refused at submit;
2. a 2-worker job spreads over two nodes; one of its nodes is removed mid-run; the job goes back
   to the queue by itself (an infrastructure failure) and waits, since one node is not enough;
3. a new node joins (as an autoscaler would add one) and the waiting gang starts and completes
   from its last checkpoint.
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
    from scheduler.errors import DoesNotFit

    out: dict = {}
    mark = timeline(out)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    mark("cluster up")
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        try:
            client.submit({"entrypoint": "steps:count_steps", "resources_per_worker": {"CPU": 2},
                           "runtime_env": {"working_dir": JOBS_DIR}})
            out["big_gang"] = "accepted"
        except DoesNotFit as e:
            out["big_gang"] = e.message

        log = f"{tmp}/spread.log"
        job = client.submit({"name": "spread", "entrypoint": "steps:count_steps", "num_workers": 2,
                             "backend": "none",
                             "runtime_env": {"working_dir": JOBS_DIR},
                             "config": {"total": 40, "every": 5, "step_s": 0.2, "log": log}})
        job_id = job["job_id"]
        mark("submitted")
        client.wait(job_id, "running", timeout_s=180)
        mark("running")
        wait_for(lambda: len(client.checkpoints(job_id)) >= 2, 180, "two checkpoints")
        mark("two checkpoints")
        cluster.remove_node(nodes[1])
        mark("node removed")
        out["removed_at"] = time.time()
        requeued = client.wait(job_id, "queued", timeout_s=180, poll_s=0.1)
        mark("requeued")
        out["requeued"] = {k: requeued[k] for k in ("status", "retries", "resume_from", "attempt")}
        time.sleep(3.0)  # one node is not enough: the gang waits
        out["while_one_node"] = client.get(job_id)["status"]
        cluster.add_node(num_cpus=1)
        mark("node added")
        done = client.wait(job_id, "completed", timeout_s=300)
        mark("completed")
        out["done"] = {k: done[k] for k in ("status", "attempt", "retries")}
        out["history"] = client.history(job_id)
        out["checkpoints"] = client.checkpoints(job_id)
        out["steps"] = [int(x) for x in Path(log).read_text().split()]
    finally:
        ray.shutdown()
        cluster.shutdown()
    mark("shut down")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TRAINQ_RETRY_BACKOFF_S", "1")
    result = main(sys.argv[1])
    print("RESULT " + json.dumps(result, default=str))
