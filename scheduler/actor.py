"""The scheduler actor: the Ray shell around ``core.Scheduler``.

One named, detached actor (``scheduler`` in namespace ``trainq``). Its public methods take
and return plain dicts, so any Ray driver can call them through
``ray.get_actor("scheduler", namespace="trainq")``. It acts on the core's decisions: starts
and kills runner actors, watches them, and runs the housekeeping loop. When Ray restarts it,
``__init__`` rebuilds the core from the store and re-attaches to runners still alive before
any call is served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import ray

from . import raycompat
from .checkpoint_fs import BackgroundDeletes, StorageFS
from .config import HEAD_RESOURCE, NAMESPACE, SCHEDULER_NAME, Settings, parse_runner_name, runner_name
from .core import Scheduler
from .errors import JobNotFound
from .events import EventLog
from .eventstore import events_path
from .jobs import Attempt, Job, iso, step_of
from .policy import Resources
from .states import JobStatus
from .store import SQLiteStore

logger = logging.getLogger("trainq.scheduler")
#: environment every runner (and so its Ray Train controller and workers) gets
TRAIN_STATE_ENV = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}


class RayCluster:
    """The cluster's size from Ray; an autoscaling cluster declares its maximum in settings."""

    def __init__(self, max_resources: str = "") -> None:
        self._max = {k: float(v) for k, v in json.loads(max_resources).items()} if max_resources else None

    def capacity(self) -> Resources:
        return {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}

    def max_capacity(self) -> Resources:
        return dict(self._max) if self._max is not None else self.capacity()

    def nodes(self) -> list[Resources]:
        if self._max is not None:
            return []  # node types of an autoscaling cluster are the autoscaler's business
        return [_strip_node_markers(n["Resources"]) for n in ray.nodes() if n.get("Alive")]

    def nodes_free(self) -> list[Resources] | None:
        if self._max is not None:
            return None  # nodes come and go with the autoscaler; totals and its hints decide
        return [_strip_node_markers(free) for free in raycompat.available_resources_per_node().values()]

    def request(self, bundles: list[Resources]) -> None:
        if self._max is None:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)


def _strip_node_markers(resources: dict[str, Any]) -> Resources:
    return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}


class RayLauncher:
    """Starts runner actors on the head node, finds them by name, kills them."""

    def __init__(self, settings: Settings, watch: Any, spawn: Any) -> None:
        self.settings = settings
        self._watch = watch
        self._spawn = spawn
        self.handles: dict[tuple[str, int], Any] = {}  # live runners, so a stop never needs a lookup

    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        from .runner import Runner

        runtime_env = dict(job.spec.get("runtime_env") or {})
        if _has_local_dirs(runtime_env):
            runtime_env = raycompat.upload_local_dirs(runtime_env)
        # Ray Train's state tracking is off by default, which hides trainq's runs from the Ray
        # dashboard's Train API. The runner's env reaches its controller and workers on every node.
        runtime_env["env_vars"] = {**TRAIN_STATE_ENV, **(runtime_env.get("env_vars") or {})}
        handle = ray.remote(Runner).options(
            name=runner_name(job.job_id, attempt.attempt), namespace=NAMESPACE, lifetime="detached",
            num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_restarts=0,
            runtime_env=runtime_env or None,
        ).remote(job.job_id, attempt.attempt, job.spec, run_root, attempt.run_name,
                 attempt.resumed_from, self.settings.report_poll_s)
        handle.start.remote()
        self.adopt(job.job_id, attempt.attempt, handle)

    def adopt(self, job_id: str, attempt: int, handle: Any) -> None:
        """Keep and watch a runner (one just launched, or one found alive after a restart)."""
        self.handles[(job_id, attempt)] = handle
        self._watch(job_id, attempt, handle)

    def forget(self, job_id: str, attempt: int) -> None:
        self.handles.pop((job_id, attempt), None)

    def request_pause(self, job_id: str, attempt: int) -> None:
        handle = self.find(job_id, attempt)
        if handle is not None:
            handle.request_pause.remote()

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        handle = self.find(job_id, attempt)
        if handle is not None:
            handle.request_checkpoint.remote()

    def stop(self, job_id: str, attempt: int) -> None:
        handle = self.find(job_id, attempt)
        if handle is not None:
            self._spawn(self._stop(handle))

    async def _stop(self, handle: Any) -> None:
        # Graceful first: the controller shuts its workers down and frees the placement group.
        # Then the kill, which also takes the controller and workers down if abort hung.
        try:
            await asyncio.wait_for(handle.abort.remote(), timeout=60)
        except Exception as e:  # noqa: BLE001 - dead, hung or gone: the kill below settles it
            logger.warning("graceful abort of a runner failed (%s); killing it", e)
        ray.kill(handle, no_restart=True)

    def find(self, job_id: str, attempt: int) -> Any:
        handle = self.handles.get((job_id, attempt))
        if handle is not None:
            return handle
        try:
            return ray.get_actor(runner_name(job_id, attempt), namespace=NAMESPACE)
        except ValueError:
            return None

    def alive(self) -> dict[tuple[str, int], Any]:
        """Every runner actor alive now, by (job_id, attempt)."""
        found = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            key = parse_runner_name(entry["name"]) if entry["namespace"] == NAMESPACE else None
            if key is not None:
                handle = self.find(*key)
                if handle is not None:
                    found[key] = handle
        return found


def _has_local_dirs(runtime_env: dict[str, Any]) -> bool:
    paths = [runtime_env.get("working_dir"), *(runtime_env.get("py_modules") or [])]
    return any(isinstance(p, str) and "://" not in p for p in paths if p)


class SchedulerService:
    """The scheduler's public API over a core and an event log, with no Ray in it.

    ``SchedulerActor`` is this plus Ray; tests and the API's TestClient use it directly.
    """

    def __init__(self, core: Scheduler, settings: Settings) -> None:
        self.core = core
        self.settings = settings
        self.log = EventLog(path=events_path(settings.db_path))
        self.core.listeners.append(self.log.append)
        self.started_at = time.time()
        self._downloads: dict[str, asyncio.Task[Any]] = {}
        if "://" not in settings.storage_root:
            self.models.recover()

    def _tend(self) -> None:
        """Hook run at the start of every call (the actor starts its background work here)."""

    # -- public API: plain dicts in and out ---------------------------------------------------------
    async def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._tend()
        return self.core.submit(spec)

    async def get(self, job_id: str) -> dict[str, Any]:
        self._tend()
        return self.core.get(job_id)

    async def list(self, status: Any = None, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        self._tend()
        return self.core.list(status, limit, offset)

    async def count(self, status: Any = None) -> int:
        self._tend()
        return self.core.count(status)

    async def queue(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        self._tend()
        return self.core.queue_jobs(limit, offset)

    async def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False) -> dict[str, Any]:
        self._tend()
        return self.core.pause(job_id, deadline_s, no_deadline)

    async def resume(self, job_id: str, checkpoint_path: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.resume(job_id, checkpoint_path)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        self._tend()
        return self.core.cancel(job_id)

    async def set_priority(self, job_id: str, priority: int) -> dict[str, Any]:
        self._tend()
        return self.core.set_priority(job_id, priority)

    async def checkpoint(self, job_id: str) -> dict[str, Any]:
        self._tend()
        return self.core.checkpoint(job_id)

    async def drain(self, grace_s: float) -> dict[str, Any]:
        """A shutdown: pause every active job to resume at the next start; see ``draining``."""
        self._tend()
        self.core.drain(grace_s)
        return await self.draining()

    async def draining(self) -> dict[str, Any]:
        """What a shutdown still waits for: every job whose run has not stopped yet."""
        self._tend()
        waiting = []
        for job_id in sorted({job_id for job_id, _ in self.core.held}):
            job = self.core.store.get_job(job_id)
            if job is not None:
                waiting.append({"job_id": job_id, "name": job.name, "status": job.status.value,
                                "step": step_of(job.metrics), "deadline_at": iso(job.pause_deadline_at)})
        return {"draining": self.core.draining, "waiting": waiting}

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        self._tend()
        return self.core.checkpoints(job_id)

    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True) -> dict[str, Any]:
        """Pin (or unpin) a recorded checkpoint: pinned ones survive the retention rule."""
        self._tend()
        return self.core.pin_checkpoint(job_id, path, pinned)

    async def reports(self, job_id: str, after_id: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        self._tend()
        return self.core.reports(job_id, after_id, limit)

    async def history(self, job_id: str) -> dict[str, Any]:
        self._tend()
        return self.core.history(job_id)

    async def logs(self, job_id: str, attempt: int | None = None, tail: int = 200) -> dict[str, Any]:
        """The last lines of each log (runner, every worker rank) of one attempt (default: latest)."""
        self._tend()
        from .logs import read_logs

        job = self.core.store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        number = attempt or job.attempt
        record = self.core.store.get_attempt(job_id, number) if number else None
        # In a thread: on object storage a read takes a round trip or more (seconds when S3 is
        # unreachable), and the scheduler's event loop must keep answering meanwhile.
        return await asyncio.to_thread(read_logs, self.core.job_root(job), number, tail,
                                       record.run_name if record else None)

    async def events(self, after: int = 0, job_id: str | None = None, timeout_s: float = 15.0) -> dict[str, Any]:
        """Events numbered above ``after``, waiting up to ``timeout_s`` for one (long poll)."""
        self._tend()
        return await self.log.wait(after, job_id, min(timeout_s, 60.0))

    async def cluster(self) -> dict[str, Any]:
        """Capacity used and free per resource, running and queued counts, and usage per owner.

        ``used`` is what trainq handed out: active jobs (pending, running, pausing) and attempts
        still releasing it.
        """
        self._tend()
        capacity = self.core.cluster.capacity()
        used: dict[str, float] = {}
        by_user: dict[str, dict[str, float]] = {}
        for (job_id, _attempt), demand in self.core.held.items():
            job = self.core.store.get_job(job_id)
            owner = getattr(job, "owner", None) if job is not None else None
            for key, amount in demand.items():
                used[key] = used.get(key, 0.0) + amount
                if owner:
                    mine = by_user.setdefault(owner, {})
                    mine[key] = mine.get(key, 0.0) + amount
        resources = {key: {"total": capacity.get(key, 0.0), "used": used.get(key, 0.0),
                           "free": max(0.0, capacity.get(key, 0.0) - used.get(key, 0.0))}
                     for key in sorted(set(capacity) | set(used))}
        return {"resources": resources, "running": self.core.count(["running", "pausing"]),
                "starting": self.core.count(["pending"]), "queued": len(self.core.queue),
                "paused": self.core.count(["paused"]), "by_user": by_user,
                "max_capacity": self.core.cluster.max_capacity()}

    async def health(self) -> dict[str, Any]:
        self._tend()
        return {"ok": True, "epoch": self.log.epoch, "started_at": self.started_at,
                "queued": len(self.core.queue), "active": len(self.core.held),
                "capacity": self.core.cluster.capacity(), "storage_root": self.settings.storage_root,
                "db_path": self.settings.db_path}

    # -- the model cache ----------------------------------------------------------------------------
    @property
    def models(self) -> Any:
        from .models import ModelCache

        return ModelCache(str(Path(self.settings.storage_root) / "models") if "://" not in self.settings.storage_root
                          else ModelCache.default_root(), endpoint=self.settings.hf_endpoint or None)

    async def models_pull(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        """Start downloading a model in the background (idempotent while it downloads)."""
        self._tend()
        cache = self.models
        entry = cache.start(model_id, revision)
        if model_id not in self._downloads:
            loop = asyncio.get_running_loop()

            def progress(e: dict[str, Any]) -> None:
                loop.call_soon_threadsafe(self.log.append, {"type": "model", **e})

            task = loop.create_task(asyncio.to_thread(cache.download, model_id, revision, progress))
            self._downloads[model_id] = task
            task.add_done_callback(lambda _: self._downloads.pop(model_id, None))
        return entry

    async def models_list(self) -> list[dict[str, Any]]:
        self._tend()
        return self.models.list()

    async def models_get(self, model_id: str) -> dict[str, Any]:
        self._tend()
        return self.models.entry(model_id)

    async def models_delete(self, model_id: str) -> dict[str, Any]:
        self._tend()
        return self.models.delete(model_id)

    async def runner_event(self, event: dict[str, Any]) -> None:
        """Runners deliver ``started``/``report``/``exit`` events here (idempotent)."""
        self._tend()
        self.core.on_runner_event(event)



class SchedulerActor(SchedulerService):
    """See the module docstring. Created by ``ensure_scheduler``."""

    def __init__(self, settings: dict[str, Any]) -> None:
        config = Settings(**settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deferred: list[Any] = []
        self._loop: asyncio.Task[None] | None = None
        self.launcher = RayLauncher(config, self._watch_later, self._spawn)
        # Deleting a checkpoint folder (GBs on NFS or S3) happens in a thread, off the actor's calls.
        core = Scheduler(SQLiteStore(config.db_path), self.launcher, RayCluster(config.max_resources),
                         storage_root=config.storage_root, settings=config,
                         checkpoint_fs=BackgroundDeletes(StorageFS()))
        super().__init__(core, config)
        self._metrics = _make_metrics()
        if self._metrics is not None:
            self.core.listeners.append(self._metrics.observe)
        # Recovery happens before the first call is served: Ray runs __init__ to completion first.
        alive = self.launcher.alive()
        for (job_id, attempt), handle in alive.items():
            self.launcher.adopt(job_id, attempt, handle)
        self.core.recover(set(alive))

    # -- acting on the core's decisions ----------------------------------------------------------------
    def _tend(self) -> None:
        """Start the housekeeping loop and deferred work (they need the running event loop)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._housekeeping())
        while self._deferred:
            self._spawn(self._deferred.pop(0))

    def _spawn(self, coro: Any) -> None:
        """Run a coroutine in the background (deferred until the loop runs, in __init__)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._deferred.append(coro)
            return
        task = loop.create_task(coro)
        self._tasks.add(task)  # keep a reference until done, or asyncio may drop it
        task.add_done_callback(self._tasks.discard)

    def _watch_later(self, job_id: str, attempt: int, handle: Any) -> None:
        self._spawn(self._watch(job_id, attempt, handle))

    async def _watch(self, job_id: str, attempt: int, handle: Any) -> None:
        """Wait for a runner to finish; if it dies without a word, tell the core."""
        try:
            await handle.wait.remote()
        except ray.exceptions.RayActorError as e:
            self.core.on_runner_lost(job_id, attempt, f"runner actor died: {type(e).__name__}")
        else:
            ray.kill(handle, no_restart=True)  # its exit event was delivered; free the name
        finally:
            self.launcher.forget(job_id, attempt)

    async def _housekeeping(self) -> None:
        last_gauges = 0.0
        while True:
            try:
                self.core.tick()
                if time.time() - last_gauges > 5:
                    last_gauges = time.time()
                    self._record_gauges()
            except Exception:  # keep ticking; a failed tick is logged, not fatal
                logger.exception("scheduler tick failed")
            await asyncio.sleep(self.settings.tick_s)

    def _record_gauges(self) -> None:
        if self._metrics is None:
            return
        counts = {s: self.core.store.count_jobs([s]) for s in JobStatus}
        self._metrics.snapshot(counts, len(self.core.queue))


def _make_metrics() -> Any:
    try:
        from .metrics import SchedulerMetrics

        return SchedulerMetrics()
    except Exception:  # metrics are for the dashboard; never fail the scheduler over them
        logger.exception("metrics disabled")
        return None


def ensure_scheduler(settings: Settings | None = None) -> Any:
    """Create the scheduler actor if it does not exist yet; return its handle.

    An existing actor keeps the settings it was created with.
    """
    settings = settings or Settings()
    try:
        return ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
    except ValueError:
        pass
    return ray.remote(SchedulerActor).options(
        name=SCHEDULER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=-1, num_cpus=0, resources={HEAD_RESOURCE: 0.001},
        max_concurrency=1000,
    ).remote(settings.with_overrides().to_dict())
