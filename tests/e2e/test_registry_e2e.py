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
