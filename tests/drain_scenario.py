"""Drains on ``ray.cluster_utils.Cluster``, run in its own process by tests/e2e/test_drains.py.

A head with no CPUs (trainq's scheduler and runners live there) and two worker nodes, A (2 CPUs)
and B (1 CPU); every case of issue 30 in one cluster, since starting it is the expensive part:
1. a cooperative 2-worker gang spreads over A and B, and a plain 1-worker loop (a checkpoint
   every 5 steps, no hook) runs on A beside it (it needs a "spot" resource, which A and C have);
2. A is drained through trainq (reason preemption, 30 s deadline): the gang checkpoints at once
   and the plain loop pauses after its next checkpoint report; both go back to the queue with the
   drain as their reason. The gang moves as a whole, and with B alone left it waits in the queue,
   saying so; a job submitted during the drain does not start on A;
3. a node C joins: everything starts again off A, from the checkpoints of the move;
4. A is then removed (Ray has already shut it down once idle, as a drained node does): no second
   restart; every job completes, the gang with no step redone, the
   plain loop with at most one checkpoint interval redone.
Prints one JSON object with what happened; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from scenario_kit import JOBS_DIR, timeline, wait_for


def _counts_b(message: str) -> bool:
    return "hold 1 now" in message or "1 free" in message


def steps_job(name: str, log: str, **config) -> dict:
    return {"name": name, "entrypoint": "steps:count_steps", "backend": "none",
            "runtime_env": {"working_dir": JOBS_DIR}, "config": {"log": log, **config}}


def main(tmp: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    import scheduler
    from scheduler.config import NAMESPACE, SCHEDULER_NAME

    out: dict = {}
    mark = timeline(out)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    # "spot" marks the nodes the plain job may use (A, and later C), so it lands on A for sure,
    # started beside the gang rather than after it.
    node_a = cluster.add_node(num_cpus=2, resources={"spot": 1}).node_id
    node_b = cluster.add_node(num_cpus=1).node_id
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    mark("cluster up")
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        actor = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)

        def nodes_of(job_id: str) -> set[str]:
            return {n["node_id"] for n in ray.get(actor.nodes.remote()) if job_id in n["jobs"]}

        logs = {"gang": f"{tmp}/gang.log", "plain": f"{tmp}/plain.log"}
        gang = client.submit({**steps_job("gang", logs["gang"], total=40, every=10, step_s=0.1, cooperative=True),
                              "num_workers": 2, "placement_strategy": "SPREAD"})["job_id"]
        plain = client.submit({**steps_job("plain", logs["plain"], total=30, every=5, step_s=0.2),
                               "resources_per_worker": {"CPU": 1, "spot": 1}})["job_id"]
        out["gang_nodes"] = sorted(wait_for(lambda: len(s := nodes_of(gang)) == 2 and s, 180, "the gang's nodes"))
        out["plain_nodes"] = sorted(wait_for(lambda: nodes_of(plain), 180, "the plain job's node"))
        wait_for(lambda: client.checkpoints(plain), 60, "the plain job's first checkpoint")
        mark("running on A")
        out["node_a"], out["node_b"] = node_a, node_b
        out["nodes_before"] = ray.get(actor.nodes.remote())
        out["drain"] = ray.get(actor.drain_node.remote(node_a, deadline_s=30, reason="preemption", message="spot"))
        # Now, while its jobs are still on it: a drained node that runs nothing shuts itself down.
        out["nodes_draining"] = ray.get(actor.nodes.remote())
        during = client.submit(steps_job("during", f"{tmp}/during.log", total=5, every=5, step_s=0.2))["job_id"]
        # B alone is left: the gang (2 workers) waits in the queue from its checkpoint, saying why.
        waiting = wait_for(lambda: (j := client.get(gang))["status"] == "queued" and j["resume_from"] and j,
                           60, "the gang back in the queue")
        # Its reason counts B's free CPU once Ray's per-node view shows the gang's worker gone there
        # (the raylets report every ~100 ms; seconds on a loaded machine): read it until it does.
        deadline = time.monotonic() + 20
        while not _counts_b(waiting["pending_reason"]["message"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            waiting = client.get(gang)
        out["waiting"] = {k: waiting[k] for k in ("retries", "resume_from", "preemptions", "pending_reason")}
        # Read after it: a drained node that runs nothing shuts itself down, and the reason names
        # the drain only while the node is there.
        out["a_there_after_waiting"] = node_a in {n["node_id"] for n in ray.get(actor.nodes.remote())}
        out["plain_requeued"] = wait_for(lambda: (j := client.get(plain))["resume_from"] and j["preemptions"]
                                         and j["status"] in ("queued", "pending", "running") and j, 60,
                                         "the plain job requeued")["resume_from"]
        out["nodes_during"] = ray.get(actor.nodes.remote())
        out["during_status"] = client.get(during)["status"]
        mark("queued")
        node_c = cluster.add_node(num_cpus=3, resources={"spot": 1}).node_id  # as an autoscaler would
        out["node_c"] = node_c
        client.wait(gang, "running", timeout_s=120)
        out["gang_moved_to"] = sorted(wait_for(lambda: len(s := nodes_of(gang)) == 2 and s, 120,
                                               "the gang's new nodes"))
        out["plain_moved_to"] = sorted(wait_for(lambda: nodes_of(plain) or client.get(plain)["status"] == "completed"
                                                and {"done"}, 120, "the plain job's new node"))
        out["during_on"] = sorted(wait_for(lambda: nodes_of(during) or client.get(during)["status"] == "completed"
                                           and {"done"}, 120, "the job submitted during the drain"))
        mark("running again")
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node_a))
        mark("A removed")
        for name, job_id in (("gang", gang), ("plain", plain), ("during", during)):
            done = client.wait(job_id, "completed", timeout_s=180)
            out[f"{name}_done"] = {k: done[k] for k in ("status", "attempt", "retries")}
        mark("completed")
        out["history"] = client.history(gang)
        out["checkpoints"] = client.checkpoints(gang)
        out["steps"] = {name: [int(x) for x in Path(log).read_text().split()] for name, log in logs.items()}
    finally:
        ray.shutdown()
        cluster.shutdown()
    mark("shut down")
    return out


if __name__ == "__main__":
    os.environ.setdefault("TRAINQ_RETRY_BACKOFF_S", "1")
    result = main(sys.argv[1])
    print("RESULT " + json.dumps(result, default=str))
