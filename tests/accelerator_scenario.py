"""Accelerator types and node-aware preemption on ``ray.cluster_utils.Cluster``, run in its own
process by tests/e2e/test_accelerators.py.

A head with no CPUs (trainq's scheduler and runners live there) and four worker nodes: an A100
node and a T4 node (1 CPU, 1 logical GPU each, resource ``accelerator_type:<type>``) and two
2-CPU nodes ``a`` and ``b`` (resources ``frag_a`` / ``frag_b``, which pin one low-priority job to
each, so the cluster is fragmented: 1 of 2 CPUs used on each). The loops touch no CUDA.
1. refused at submit: a type the cluster lacks (naming its types), and a 2-GPU gang preferring
   A100 then T4 (one GPU of each: it would have to mix types);
2. two 1-GPU jobs preferring ["A100", "T4"]: the first gets A100, the second T4 (A100 taken);
3. a 2-worker STRICT_PACK job of priority 10 preempts exactly one of the two low jobs and runs
   whole on that job's node; the other is not touched.
Prints one JSON object with what happened; the test asserts on it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from scenario_kit import JOBS_DIR, timeline


def main(tmp: str) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    import scheduler
    from scheduler.errors import TrainqError

    out: dict = {}
    mark = timeline(out)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    named = {"A100": cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:A100": 1}),
             "T4": cluster.add_node(num_cpus=1, num_gpus=1, resources={"accelerator_type:T4": 1}),
             "a": cluster.add_node(num_cpus=2, resources={"frag_a": 1}),
             "b": cluster.add_node(num_cpus=2, resources={"frag_b": 1})}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    out["nodes"] = {n.node_id: name for name, n in named.items()}
    mark("cluster up")
    env = {"working_dir": JOBS_DIR}

    def job(name: str, entry: str = "where:where", **spec: object) -> dict:
        return {"name": name, "entrypoint": entry, "backend": "none", "runtime_env": env, "max_retries": 0, **spec}

    def where(prefix: str, ranks: int) -> list[str]:
        return [Path(f"{prefix}.{r}").read_text() for r in range(ranks)]

    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        refused = {}
        for what, spec in {"unknown": job("h100", use_gpu=True, accelerator_type="H100"),
                           "mixed": job("mixed", use_gpu=True, num_workers=2, accelerator_type=["A100", "T4"])}.items():
            try:
                client.submit(spec)
                refused[what] = "accepted"
            except TrainqError as e:
                refused[what] = {"type": type(e).__name__, "message": e.message}
        out["refused"] = refused

        gpu = {"use_gpu": True, "accelerator_type": ["A100", "T4"]}
        low = {"cooperative": True, "total": 100000, "every": 2, "step_s": 0.1}
        ids = {
            "first": client.submit(job("first", **gpu, config={"total": 2, "step_s": 0.1, "where": f"{tmp}/first"})),
            "second": client.submit(job("second", **gpu, config={"total": 2, "step_s": 0.1, "where": f"{tmp}/second"})),
            "low_a": client.submit(job("low_a", "steps:count_steps", min_runtime_s=0, config=low,
                                       resources_per_worker={"CPU": 1, "frag_a": 0.5})),
            "low_b": client.submit(job("low_b", "steps:count_steps", min_runtime_s=0, config=low,
                                       resources_per_worker={"CPU": 1, "frag_b": 0.5})),
        }
        ids = {k: v["job_id"] for k, v in ids.items()}
        mark("submitted")
        for name in ("low_a", "low_b"):
            client.wait(ids[name], "running", timeout_s=180)
            deadline = time.monotonic() + 120
            while not client.get(ids[name]).get("checkpoint_path") and time.monotonic() < deadline:
                time.sleep(0.2)
        mark("low jobs running with a checkpoint")
        high = client.submit(job("high", num_workers=2, placement_strategy="STRICT_PACK", priority=10,
                                 resources_per_worker={"CPU": 1},
                                 config={"total": 2, "step_s": 0.1, "where": f"{tmp}/high"}))["job_id"]
        ids["high"] = high
        seen = set()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the low jobs' states while the high one waits and starts
            for name in ("low_a", "low_b"):
                seen.add((name, client.get(ids[name])["status"]))
            if client.get(high)["status"] in ("running", "completed", "failed"):
                break
            time.sleep(0.2)
        out["low_states_seen"] = sorted(seen)
        mark("high running")
        for name in ("first", "second", "high"):
            client.wait(ids[name], {"completed", "failed"}, timeout_s=180)
        mark("completed")
        out["jobs"] = {name: {k: client.get(job_id)[k] for k in ("status", "preemptions", "preempted_by", "attempt")}
                       for name, job_id in ids.items()}
        out["attempt_types"] = {name: client.history(ids[name])["attempts"][0]["accelerator_type"]
                                for name in ("first", "second")}
        out["where"] = {"first": where(f"{tmp}/first", 1), "second": where(f"{tmp}/second", 1),
                        "high": where(f"{tmp}/high", 2)}
        for name in ("low_a", "low_b"):
            client.cancel(ids[name])
    finally:
        ray.shutdown()
        cluster.shutdown()
    mark("shut down")
    return out


if __name__ == "__main__":
    result = main(sys.argv[1])
    print("RESULT " + json.dumps(result, default=str))
