"""A drain on ``ray.cluster_utils.Cluster``, run in its own process by tests/e2e/test_drains.py.

A head with no CPUs (trainq's scheduler and runners live there) and three 1-CPU worker nodes:
1. a 1-worker cooperative job runs on node A and checkpoints;
2. A is drained through trainq (reason preemption, 30 s deadline): the job checkpoints at once,
   goes back to the queue with the drain as its reason and runs again on another node from that
   checkpoint; a job submitted during the drain starts elsewhere, never on A;
3. A is then removed: no second restart; both jobs complete.
Prints one JSON object with what happened; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

JOBS_DIR = str(Path(__file__).parent / "jobs")


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def main(tmp: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    import scheduler
    from scheduler.config import NAMESPACE, SCHEDULER_NAME

    out: dict = {"timeline": {}}
    t0 = time.monotonic()

    def mark(what: str) -> None:  # where the scenario's time goes, for whoever makes it faster
        out["timeline"][what] = round(time.monotonic() - t0, 1)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = {cluster.add_node(num_cpus=1).node_id: None for _ in range(3)}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    mark("cluster up")
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        actor = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)

        def on_node(job_id: str) -> str | None:
            for node in ray.get(actor.nodes.remote()):
                if job_id in node["jobs"]:
                    return node["node_id"]
            return None

        log = f"{tmp}/moved.log"
        job_id = client.submit({"name": "moved", "entrypoint": "steps:count_steps", "backend": "none",
                                "runtime_env": {"working_dir": JOBS_DIR},
                                "config": {"total": 60, "every": 10, "step_s": 0.3, "log": log,
                                           "cooperative": True}})["job_id"]
        client.wait(job_id, "running", timeout_s=180)
        wait_for(lambda: client.checkpoints(job_id), 120, "a first checkpoint")
        node_a = wait_for(lambda: on_node(job_id), 60, "the job's node")
        mark("running on A")
        out["node_a"], out["worker_nodes"] = node_a, sorted(workers)
        out["nodes_before"] = ray.get(actor.nodes.remote())
        out["drained_at"] = time.time()
        out["drain"] = ray.get(actor.drain_node.remote(node_a, deadline_s=30, reason="preemption", message="spot"))
        other = client.submit({"name": "during", "entrypoint": "steps:count_steps", "backend": "none",
                               "runtime_env": {"working_dir": JOBS_DIR},
                               "config": {"total": 10, "every": 5, "step_s": 0.2}})["job_id"]
        # Back in the queue for a moment only: it starts again at once where a node is free.
        moved = wait_for(lambda: (j := client.get(job_id))["attempt"] >= 2 and j, 60, "the job's second attempt")
        mark("requeued")
        out["requeued"] = {k: moved[k] for k in ("retries", "resume_from", "attempt", "preemptions")}
        client.wait(job_id, "running", timeout_s=120)
        out["moved_to"] = wait_for(lambda: on_node(job_id), 60, "the job's new node")
        out["other_on"] = wait_for(lambda: on_node(other) or client.get(other)["status"] == "completed" and "done",
                                   120, "the other job's node")
        out["nodes_during"] = ray.get(actor.nodes.remote())
        mark("running again")
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_a))
        mark("A removed")
        done = client.wait(job_id, "completed", timeout_s=180)
        out["done"] = {k: done[k] for k in ("status", "attempt", "retries")}
        out["other_done"] = client.wait(other, "completed", timeout_s=120)["status"]
        mark("completed")
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
