"""Drains: what a node going away costs a job, with Ray's notice and without it (issue 30).

On a ``ray.cluster_utils.Cluster`` of its own (a head with no CPUs, where trainq's scheduler and
runners live, and two 1-CPU worker nodes), in a subprocess (``python -m benchmarks.drain DIR``)
so it never mixes with the bench's local Ray. For a cooperative loop (the hook) and a plain one
(a checkpoint every ``EVERY`` steps), one job each time, side by side in one run:

- *drained*: the job's node is drained through trainq (reason preemption, 30 s deadline); the job
  moves to the other node at a checkpoint. Measured: steps redone, and the time from the notice
  to the job's first step on the other node.
- *removed without notice* (trainq's behaviour before drains, and what a reclaim that gives no
  notice still does): the job's node is removed; the run fails, and trainq restarts the job on
  the other node from its last checkpoint as a retry. Measured the same way, from the removal.

Between cases the used node is removed and a fresh one added, so each case starts with two nodes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import JOBS_DIR, Row, run_apart

STEP_S = 0.1
EVERY = 10  # the checkpoint interval of both loops, in steps
TOTAL = 40
DEADLINE_S = 30.0


def _steps(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _wait(predicate: Any, timeout_s: float, what: str, every_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise TimeoutError(what)


def _case(cluster: Any, client: Any, actor: Any, tmp: str, kind: str, how: str) -> dict[str, Any]:
    """One job of ``kind`` (cooperative or plain) losing its node ``how`` (drained or removed)."""
    import ray

    log = Path(tmp) / f"{kind}-{how}.log"
    config = {"total": TOTAL, "every": EVERY, "step_s": STEP_S, "log": str(log), "cooperative": kind == "cooperative"}
    job_id = client.submit({"name": f"{kind}-{how}", "entrypoint": "steps:count_steps", "backend": "none",
                            "runtime_env": {"working_dir": JOBS_DIR}, "config": config})["job_id"]

    def node_of() -> str | None:
        return next((n["node_id"] for n in ray.get(actor.nodes.remote()) if job_id in n["jobs"]), None)

    node = _wait(node_of, 300, "the job's node", every_s=0.2)
    _wait(lambda: len(_steps(log)) >= EVERY + EVERY // 2, 120, "steps past the first checkpoint")
    at = time.time()
    if how == "drained":
        ray.get(actor.drain_node.remote(node, deadline_s=DEADLINE_S, reason="preemption", message="bench"))
    else:
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node))
    # The next attempt's first step: the log grows again once the job runs as attempt 2.
    _wait(lambda: client.get(job_id)["attempt"] >= 2, 120, "the job's second attempt")
    before = len(_steps(log))
    _wait(lambda: len(_steps(log)) > before, 120, "the first step elsewhere")
    first_step_s = time.time() - at
    done = _wait(lambda: (j := client.get(job_id))["status"] in ("completed", "failed") and j, 300, "the end",
                 every_s=0.2)
    steps = _steps(log)
    if how == "drained":
        cluster.remove_node(next(n for n in cluster.worker_nodes if n.node_id == node))
    cluster.add_node(num_cpus=1)  # two free nodes again for the next case
    cluster.wait_for_nodes()
    return {"redone": len(steps) - len(set(steps)), "first_step_s": first_step_s, "status": done["status"],
            "retries": done["retries"], "complete": sorted(set(steps)) == list(range(TOTAL))}


def main(tmp: str) -> dict[str, Any]:
    """Run every case on one cluster; the results by ``<kind>-<how>``."""
    import ray
    from ray.cluster_utils import Cluster

    import scheduler
    from scheduler.config import NAMESPACE, SCHEDULER_NAME

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="trainq", log_to_driver=False)
    try:
        client = scheduler.connect(storage_root=f"{tmp}/storage", db_path=f"{tmp}/trainq.db")
        actor = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
        return {f"{kind}-{how}": _case(cluster, client, actor, tmp, kind, how)
                for kind in ("cooperative", "plain") for how in ("drained", "removed")}
    finally:
        ray.shutdown()
        cluster.shutdown()


def run(client: Any, ws: Any, quick: bool) -> list[Row]:
    """The rows (the bench's own client and Ray are not used: the cluster is this module's)."""
    tmp = tempfile.mkdtemp(prefix="trainq-drain-", dir=str(ws.dir))
    backoff = os.environ.get("TRAINQ_RETRY_BACKOFF_S", "0")  # the removal's retry starts as soon as it can
    r = run_apart("benchmarks.drain", tmp, env={"TRAINQ_RETRY_BACKOFF_S": backoff})
    assert all(c["status"] == "completed" and c["complete"] for c in r.values()), r
    assert r["cooperative-drained"]["retries"] == 0 and r["plain-drained"]["retries"] == 0, r
    rows = []
    for kind, target, bound in (("cooperative", "0 steps", 0), ("plain", f"≤ one interval ({EVERY} steps)", EVERY)):
        drained, removed = r[f"{kind}-drained"], r[f"{kind}-removed"]
        rows.append(Row(f"drain, {kind} loop (checkpoint every {EVERY} steps): steps redone per drain (baseline:"
                        " the node removed without notice)", drained["redone"], removed["redone"], "steps",
                        target, drained["redone"] <= bound,
                        f"removed: a retry ({removed['retries']}) from its last checkpoint"))
        rows.append(Row(f"drain, {kind} loop: drain notice → its first step on the other node (baseline: removal"
                        " → first step)", drained["first_step_s"], removed["first_step_s"], "s", "context", None))
    return rows


if __name__ == "__main__":
    os.environ.setdefault("TRAINQ_RETRY_BACKOFF_S", "0")
    print("RESULT " + json.dumps(main(sys.argv[1])))
