"""The registry in Postgres on a real Ray: one active scheduler per registry (a standby takes over
when the leader dies), and a scheduler never touches a run of another registry's jobs."""

from __future__ import annotations

import pytest
import ray
from helpers import JOBS_DIR, wait_until

from scheduler.actor import SchedulerActor
from scheduler.client import RayClient
from scheduler.config import HEAD_RESOURCE, NAMESPACE, Settings
from scheduler.errors import NotReady

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _scheduler(name: str, settings: Settings, restarts: int = 0) -> RayClient:
    """A scheduler actor of its own name on the session's Ray (as ``ensure_scheduler`` makes one)."""
    handle = ray.remote(SchedulerActor).options(
        name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=restarts, max_task_retries=-1 if restarts
        else 0, num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_concurrency=1000).remote(settings.to_dict())
    return RayClient(handle)


def _steps(log) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def test_a_standby_takes_over_when_the_leader_dies_and_the_run_goes_on_once(client, new_pg_registry, tmp_path):
    """Two schedulers on one Postgres registry: the second waits as a standby (health says so and
    who leads; verbs answer 503) while the first runs a job; the first is killed for good; the
    second takes over when the lease expires, adopts the run, and the job completes in its first
    attempt, every step once. Meanwhile the session's own scheduler (another registry, same Ray)
    sees this run on the shared runner host and leaves it alone."""
    url = new_pg_registry()
    settings = Settings().with_overrides(storage_root=str(tmp_path / "storage"), db_path=url, allowed_dirs=JOBS_DIR,
                                         lease_ttl_s=3.0)
    first = _scheduler("scheduler-first", settings)
    log = tmp_path / "steps.log"
    spec = {"name": "once", "entrypoint": "steps:count_steps", "backend": "none", "num_workers": 1,
            "runtime_env": {"working_dir": JOBS_DIR}, "config": {"total": 60, "every": 4, "step_s": 0.1,
                                                                  "log": str(log)}}
    job = first.submit(spec)["job_id"]
    first.wait(job, "running", timeout_s=120)
    second = _scheduler("scheduler-second", settings)
    try:
        health = ray.get(second.handle.health.remote())
        assert health["role"] == "standby" and health["leader"]["holder"].startswith("scheduler-first@")
        assert "s3cret-pw" not in str(health) and "***" in health["db_path"]
        with pytest.raises(NotReady, match="standby: scheduler-first@"):
            second.get(job)
        wait_until(lambda: first.checkpoints(job), 60, "a first checkpoint")
        ray.kill(first.handle, no_restart=True)  # the leader dies and is not restarted
        wait_until(lambda: ray.get(second.handle.health.remote())["role"] == "leader", 60, "the standby took over")
        done = second.wait(job, "completed", timeout_s=180)
        assert done["attempt"] == 1 and done["retries"] == 0  # adopted: not restarted, not requeued
        assert _steps(log) == list(range(60))  # every step once, in order: the run never stopped
        assert len(second.reports(job)) == 60  # every report reached a scheduler, none twice
        assert ray.get(client.handle.health.remote())["role"] == "leader"  # the session's one, untouched
    finally:
        ray.kill(second.handle, no_restart=True)


# One side of a cluster replacement, in a process of its own with a Ray of its own ("first": start
# jobs, then lose the whole cluster, head node and all, with no chance to pause; "second": a fresh
# cluster's scheduler on the same registry and storage). It prints what it saw as one JSON line.
CLUSTER = r"""
import json, sys, time
import ray
from scheduler.actor import ensure_scheduler
from scheduler.client import RayClient
from scheduler.config import Settings

phase, url, storage, log, jobs_dir = sys.argv[1:6]
ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="trainq", log_to_driver=False,
         configure_logging=False)
settings = Settings().with_overrides(storage_root=storage, db_path=url, allowed_dirs=jobs_dir, lease_ttl_s=3.0)
c = RayClient(ensure_scheduler(settings))

def spec(name, total, workers=1, log_file=None):
    config = {"total": total, "every": 5, "step_s": 0.1, **({"log": log_file} if log_file else {})}
    return {"name": name, "entrypoint": "steps:count_steps", "backend": "none", "num_workers": workers,
            "runtime_env": {"working_dir": jobs_dir}, "config": config}

def steps():
    try:
        return [int(x) for x in open(log).read().split()]
    except FileNotFoundError:
        return []

def until(predicate, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.1)

if phase == "first":
    long = c.submit(spec("long", 80, log_file=log))["job_id"]
    c.wait(long, "running", timeout_s=120)
    held = c.submit(spec("held", 2, workers=2), owner="carol")["job_id"]
    c.pause(held)  # queued behind the running job: paused, and it must stay paused
    queued = [c.submit(spec(f"q{i}", 2, workers=2), owner=owner)["job_id"] for i, owner in enumerate(["alice", "bob"])]
    until(lambda: c.checkpoints(long) and len(steps()) >= 22)
    out = {"long": long, "held": held, "queued": [(j["job_id"], j["owner"]) for j in c.queue()],
           "steps_at_loss": len(steps())}
    ray.shutdown()  # the cluster is lost: the scheduler, the runner and the workers, all at once
else:
    until(lambda: ray.get(c.handle.health.remote()).get("role") == "leader", 60)
    first = json.loads(sys.argv[6])
    long = first["long"]
    done = c.wait(long, "completed", timeout_s=240)
    queued = {job_id: c.wait(job_id, {"completed", "failed"}, timeout_s=240) for job_id, _ in first["queued"]}
    started = {job_id: next(t["at"] for t in c.history(job_id)["transitions"] if t["to_status"] == "pending")
               for job_id in queued}
    out = {"queued_after": queued, "started": started, "done": done, "history": c.history(long),
           "held": c.get(first["held"]), "checkpoints": c.checkpoints(long)}
    ray.shutdown()
print("RESULT " + json.dumps(out, default=str), flush=True)
"""


def _side(phase: str, url: str, storage: str, log: str, *extra: str) -> dict:
    import json
    import os
    import subprocess
    import sys

    from helpers import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINQ_RETRY_BACKOFF_S": "1", "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, "-c", CLUSTER, phase, url, storage, log, JOBS_DIR, *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=400, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{phase} side failed ({done.returncode}):\n{done.stderr[-3000:]}"
    assert "s3cret-pw" not in done.stdout + done.stderr  # the registry's password is never shown
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.own_cluster
def test_a_cluster_lost_head_node_and_all_is_replaced_without_losing_a_job(new_pg_registry, tmp_path) -> None:
    """A whole Ray cluster is lost while a job runs; a fresh cluster's scheduler on the same
    Postgres registry and storage takes over: the running job is requeued from its last checkpoint
    (a retry, with the reason) and completes, every step after that checkpoint done once; the
    paused job stays paused; the queued jobs keep their order and owners; nothing runs twice."""
    import json

    url, storage, log = new_pg_registry(), str(tmp_path / "storage"), str(tmp_path / "long.log")
    assert "s3cret-pw" in url  # the URL carries a password, which no output shows
    first = _side("first", url, storage, log)
    second = _side("second", url, storage, log, json.dumps(first))
    # the queued jobs kept their owners and their order (they started in it), and ran
    assert [owner for _, owner in first["queued"]] == ["alice", "bob"]
    for job_id, owner in first["queued"]:
        assert second["queued_after"][job_id]["owner"] == owner
        assert second["queued_after"][job_id]["status"] == "completed"
    (alice, _), (bob, _) = first["queued"]
    assert second["started"][alice] <= second["started"][bob]
    assert second["held"]["status"] == "paused"

    done, history = second["done"], second["history"]
    assert done["status"] == "completed" and done["attempt"] == 2 and done["retries"] == 1
    lost = next(t for t in history["transitions"] if t["attempt"] == 1 and t["to_status"] == "queued")
    assert "not found after a scheduler restart" in lost["reason"]
    one, two = history["attempts"]
    assert one["ended_at"] <= two["started_at"]  # never two attempts at once
    resumed = next(c["metrics"]["step"] for c in second["checkpoints"] if c["path"] == two["resumed_from"])
    steps = _steps(tmp_path / "long.log")
    second_run = list(range(resumed + 1, 80))
    assert steps[-len(second_run):] == second_run  # the new cluster: from its checkpoint on, every step once
    lost_run = steps[:-len(second_run)]
    assert lost_run[:resumed + 1] == list(range(resumed + 1))  # the lost cluster up to that checkpoint, once
    assert len(lost_run) >= first["steps_at_loss"]  # the steps past the checkpoint were lost with the cluster
