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
import atexit
import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import ray

from . import raycompat, security, wire
from .channel import ChannelServer
from .checkpoint_fs import BackgroundDeletes, StorageFS
from .config import (
    HEAD_RESOURCE,
    NAMESPACE,
    RUNNER_HOST_NAME,
    SCHEDULER_NAME,
    Settings,
    packages_root,
    parse_runner_name,
    runner_name,
)
from .core import Scheduler
from .errors import InvalidSpec, TrainqError
from .events import EventLog
from .eventstore import events_path
from .jobs import Attempt, Job
from .policy import Resources
from .states import JobStatus
from .store import SQLiteStore

logger = logging.getLogger("trainq.scheduler")
#: environment every runner (and so its Ray Train controller and workers) gets
TRAIN_STATE_ENV = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}


class RayCluster:
    """The cluster's size from Ray; an autoscaling cluster declares its maximum in settings.

    Ray's answers come from the GCS over the network, so they are fetched by ``refresh`` (in a
    thread, every housekeeping tick and after a run ends) and the core reads the copy: no Ray
    lookup ever blocks the actor's event loop.
    """

    def __init__(self, max_resources: str = "") -> None:
        self._max = {k: float(v) for k, v in json.loads(max_resources).items()} if max_resources else None
        self._capacity: Resources = {}
        self._nodes: list[Resources] = []
        self._nodes_free: list[Resources] = []

    def refresh(self) -> None:
        """Fetch capacity, nodes and free resources per node from Ray (blocking: call in a thread)."""
        capacity = {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
        nodes = [] if self._max is not None else \
            [_strip_node_markers(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        free = [] if self._max is not None else \
            [_strip_node_markers(f) for f in raycompat.available_resources_per_node().values()]
        self._capacity, self._nodes, self._nodes_free = capacity, nodes, free

    def capacity(self) -> Resources:
        return dict(self._capacity)

    def max_capacity(self) -> Resources:
        return dict(self._max) if self._max is not None else self.capacity()

    def nodes(self) -> list[Resources]:
        return [dict(n) for n in self._nodes]  # an autoscaling cluster's node types are its business

    def nodes_free(self) -> list[Resources] | None:
        if self._max is not None:
            return None  # nodes come and go with the autoscaler; totals and its hints decide
        return [dict(n) for n in self._nodes_free]

    def request(self, bundles: list[Resources]) -> None:
        if self._max is None:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)


def _strip_node_markers(resources: dict[str, Any]) -> Resources:
    return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}


class RayLauncher:
    """Starts runner actors on the head node, finds them by name, kills them.

    The core calls it synchronously; whatever may take long (uploading a working_dir, looking
    an actor up by name, the graceful abort) runs in background tasks, off the actor's loop.
    """

    def __init__(self, settings: Settings, watch: Any, spawn: Any, failed: Any, lost: Any) -> None:
        self.settings = settings
        self._watch = watch
        self._spawn = spawn
        self._failed = failed  # (job_id, attempt, error): the runner could not be started
        self._lost = lost  # (job_id, attempt, why): a launch abandoned before its runner existed
        self.handles: dict[tuple[str, int], AttemptRef] = {}  # live attempts: a stop needs no lookup
        self._host: Any = None
        self.launching: set[tuple[str, int]] = set()  # runtime_env being prepared, no runner yet
        self._abandoned: set[tuple[str, int]] = set()  # stopped while launching

    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        key = (job.job_id, attempt.attempt)
        self.launching.add(key)
        self._spawn(self._launch(job, attempt, run_root))

    async def _launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        key = (job.job_id, attempt.attempt)
        try:
            runtime_env = dict(job.spec.get("runtime_env") or {})
            if _has_local_dirs(runtime_env):
                # Zipping and pushing a folder to Ray takes seconds for a big one and holds the
                # GIL much of that time: a task on the head node does it, not this process.
                upload = ray.remote(raycompat.upload_local_dirs).options(
                    num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_retries=0)
                runtime_env = await upload.remote(runtime_env)
            worker_env = self.worker_env({**job.spec, "runtime_env": runtime_env})
            host = await asyncio.to_thread(self.host)
            if key in self._abandoned:
                self._lost(*key, "stopped before its runner was started")
                return
            started = host.start.remote(job.job_id, attempt.attempt, job.spec, run_root, attempt.run_name,
                                        attempt.resumed_from, worker_env)
            self.adopt(*key, AttemptRef(host, runner_name(*key), started))
        except Exception as e:
            logger.exception("could not start a runner for %s attempt %s", *key)
            self._failed(*key, f"{type(e).__name__}: {e}")
        finally:
            self.launching.discard(key)
            self._abandoned.discard(key)

    def host(self) -> Any:
        """The runner host, created on first use (blocking: a GCS round trip; call in a thread)."""
        if self._host is None:
            from .runner import RunnerHost

            self._host = ray.remote(RunnerHost).options(
                name=RUNNER_HOST_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_restarts=0, max_concurrency=100_000,
                # Only trainq's own switches: the host and the Ray Train controllers it starts
                # (which inherit this) run on the head node and never get a job's code or
                # packages. Ray Train's state tracking is off by default, which hides trainq's
                # runs from the Ray dashboard's Train API.
                runtime_env={"env_vars": dict(TRAIN_STATE_ENV)},
            ).remote(self.settings.report_poll_s)
        return self._host

    def host_lost(self) -> None:
        """The host died (with every attempt on it): the next launch starts a new one."""
        self._host = None

    def worker_env(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The runtime_env of a job's training workers: its own, with local folders uploaded (as
        ``ray job submit`` does; the head node reads and zips them, it never imports them), and
        the secrets named in ``TRAINQ_SECRET_ENV`` from this process's environment."""
        runtime_env = dict(spec.get("runtime_env") or {})
        if _has_local_dirs(runtime_env):
            runtime_env = raycompat.upload_local_dirs(runtime_env)
        secrets = security.secret_values(self.settings.secret_names(), os.environ)
        # A variable the job sets itself wins: it is the user's own (e.g. their own HF_TOKEN).
        runtime_env["env_vars"] = {**TRAIN_STATE_ENV, **secrets, **(runtime_env.get("env_vars") or {})}
        return runtime_env

    def adopt(self, job_id: str, attempt: int, handle: Any) -> None:
        """Keep and watch a runner (one just launched, or one found alive after a restart)."""
        self.handles[(job_id, attempt)] = handle
        self._watch(job_id, attempt, handle)

    def forget(self, job_id: str, attempt: int) -> None:
        self.handles.pop((job_id, attempt), None)

    def request_pause(self, job_id: str, attempt: int) -> None:
        self._spawn(self._call(job_id, attempt, "request_pause"))

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        self._spawn(self._call(job_id, attempt, "request_checkpoint"))

    def stop(self, job_id: str, attempt: int) -> None:
        if (job_id, attempt) in self.launching:
            self._abandoned.add((job_id, attempt))  # ``_launch`` stops short of starting it
            return
        self._spawn(self._stop(job_id, attempt))

    async def _call(self, job_id: str, attempt: int, method: str) -> None:
        ref = await self._find(job_id, attempt)
        if ref is not None:
            await ref.ready()
            ref.call(method)

    async def _stop(self, job_id: str, attempt: int) -> None:
        ref = await self._find(job_id, attempt)
        if ref is None:
            return
        # Graceful: the controller shuts its workers down and frees the placement group; the
        # run ends, its exit reaches the scheduler and the watcher forgets the attempt. If the
        # abort hangs, kill the controller (its workers go with it) and the run ends that way.
        try:
            await ref.ready()
            if await asyncio.wait_for(ref.call("abort", 15.0), timeout=60):
                return
            logger.warning("%s did not end after an abort; killing its controller", ref.name)
        except Exception as e:  # noqa: BLE001 - hung or gone: the kill settles it
            logger.warning("graceful abort of %s failed (%s); killing its controller", ref.name, e)
        ref.call("kill")

    async def _find(self, job_id: str, attempt: int) -> AttemptRef | None:
        ref = self.handles.get((job_id, attempt))
        return ref if ref is not None else await asyncio.to_thread(self.find, job_id, attempt)

    def find(self, job_id: str, attempt: int) -> AttemptRef | None:
        """An attempt on the runner host (blocking: GCS round trips), or None."""
        ref = self.handles.get((job_id, attempt))
        if ref is not None:
            return ref
        return self.alive().get((job_id, attempt))

    def watched(self) -> set[tuple[str, int]]:
        """Attempts whose runner is being started or watched: their end reaches the core anyway."""
        return set(self.handles) | self.launching

    def alive_keys(self) -> set[tuple[str, int]]:
        """Every attempt the runner host carries now (blocking: GCS round trips)."""
        return set(self.alive())

    def alive(self) -> dict[tuple[str, int], AttemptRef]:
        """Every attempt the runner host carries now, by (job_id, attempt) (blocking)."""
        try:
            host = ray.get_actor(RUNNER_HOST_NAME, namespace=NAMESPACE)
            names = ray.get(host.attempts.remote(), timeout=30)
        except (ValueError, ray.exceptions.RayActorError):
            return {}  # no host (yet), or it is gone with its attempts
        self._host = host
        found = {}
        for name in names:
            key = parse_runner_name(name)
            if key is not None:
                found[key] = AttemptRef(host, name)
        return found


class AttemptRef:
    """One attempt on the runner host: ``ref.call("abort")`` is ``host.abort.remote(key)``."""

    def __init__(self, host: Any, name: str, started: Any = None) -> None:
        self.host, self.name = host, name
        self._started = started  # the host's ``start`` call, for an attempt launched by us

    async def ready(self) -> None:
        """Wait until the host has the attempt: Ray does not run an async actor's calls in the
        order they were sent, so a call right after ``start`` could otherwise arrive first."""
        if self._started is not None:
            await self._started
            self._started = None

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.host, method).remote(self.name, *args)


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
    # A caller through Ray is trusted (Ray access is cluster access): it may name any ``owner``
    # and act on any job. The HTTP layer passes the token's user as ``owner`` / ``as_user``.
    async def submit(self, spec: dict[str, Any], idempotency_key: str | None = None,
                     owner: str | None = None) -> dict[str, Any]:
        """Submit a job; the same ``idempotency_key`` (and spec) returns the same job again."""
        self._tend()
        return self.core.submit(spec, idempotency_key, owner)

    async def get(self, job_id: str) -> dict[str, Any]:
        self._tend()
        return self.core.get(job_id)

    async def list(self, status: Any = None, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        self._tend()
        return self.core.list(status, limit, offset)

    # The HTTP API's hot reads, as JSON bytes: nothing to decode and encode again in between.
    async def get_json(self, job_id: str) -> bytes:
        """``get`` as JSON bytes."""
        self._tend()
        return self.core.get_json(job_id)

    async def page_json(self, status: Any = None, limit: int = 100, offset: int = 0) -> bytes:
        """One page of ``list`` with its ``count``, ``limit`` and ``offset``, in one call, as JSON bytes."""
        self._tend()
        return self.core.page_json(status, limit, offset)

    async def queue_json(self, limit: int | None = None, offset: int = 0) -> bytes:
        """``queue`` as JSON bytes."""
        self._tend()
        return self.core.queue_json(limit, offset)

    async def reads(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[bytes | TrainqError]:
        """Several hot reads in one call, for the HTTP API's coalescing (``api.coalesce``): one
        answer per ``(method, args)``, its JSON bytes or the typed error it raised."""
        self._tend()
        if unknown := {method for method, _ in calls} - wire.HOT_READS:
            raise ValueError(f"not a read: {sorted(unknown)} (reads: {sorted(wire.HOT_READS)})")
        out: list[bytes | TrainqError] = []
        for method, args in calls:
            try:
                out.append(getattr(self.core, method)(*args))
            except TrainqError as e:
                out.append(e)
        return out

    async def submit_json(self, items: list[tuple[Any, str | None, str | None]]) -> list[bytes | TrainqError]:
        """Several submits, ``(spec, idempotency_key, owner)`` each, stored with one commit: the HTTP
        API's group commit (``api.coalesce``). One answer per item: its job as JSON bytes, or the
        typed error that refused it; each is sent only once the commit is on disk."""
        self._tend()
        with self.log.batch():  # the batch's "submitted" events: one write to the event file
            return self.core.submit_json([tuple(item) for item in items])

    async def count(self, status: Any = None) -> int:
        self._tend()
        return self.core.count(status)

    async def queue(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        self._tend()
        return self.core.queue_jobs(limit, offset)

    async def pause(self, job_id: str, deadline_s: float | None = None, no_deadline: bool = False,
                    idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.pause(job_id, deadline_s, no_deadline, idempotency_key, as_user)

    async def resume(self, job_id: str, checkpoint_path: str | None = None,
                     idempotency_key: str | None = None, as_user: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.resume(job_id, checkpoint_path, idempotency_key, as_user)

    async def cancel(self, job_id: str, idempotency_key: str | None = None,
                     as_user: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.cancel(job_id, idempotency_key, as_user)

    async def set_priority(self, job_id: str, priority: int, as_user: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.set_priority(job_id, priority, as_user)

    async def checkpoint(self, job_id: str, as_user: str | None = None) -> dict[str, Any]:
        self._tend()
        return self.core.checkpoint(job_id, as_user)

    async def reload_users(self, path: str | None = None) -> dict[str, Any]:
        """Read the users file again (``path``, default the setting ``TRAINQ_USERS_FILE``) so edits
        to users, roles and quotas apply without a restart; an empty ``path`` ("") turns users off.
        A malformed file changes nothing and raises ``UsersFileError`` naming the line. Only for
        callers through Ray (trusted: Ray access is cluster access); no route exposes it."""
        self._tend()
        from .users import load_users

        target = self.settings.users_file if path is None else path
        users = load_users(target) if target else None
        self.core.set_users(users)
        return {"users": [u.public() for u in users.users] if users else None}

    async def usage(self, by: str = "user", since: float | str | None = None) -> dict[str, Any]:
        """Resource-seconds (GPU-hours, CPU-hours), lost work, preemptions and attempts per user or
        job since ``since`` (epoch seconds or an ISO time; None: all time)."""
        self._tend()
        return self.core.usage(by, _since(since))

    async def drain(self, grace_s: float) -> dict[str, Any]:
        """A shutdown: pause every active job to resume at the next start; see ``draining``."""
        self._tend()
        self.core.drain(grace_s)
        return await self.draining()

    async def draining(self) -> dict[str, Any]:
        """What a shutdown still waits for: every job whose run has not stopped yet."""
        self._tend()
        return {"draining": self.core.draining, "waiting": self.core.holding()}

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        self._tend()
        return self.core.checkpoints(job_id)

    async def pin_checkpoint(self, job_id: str, path: str, pinned: bool = True,
                             as_user: str | None = None) -> dict[str, Any]:
        """Pin (or unpin) a recorded checkpoint: pinned ones survive the retention rule."""
        self._tend()
        return self.core.pin_checkpoint(job_id, path, pinned, as_user)

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

        job = self.core.job(job_id)
        number = attempt or job.attempt
        record = self.core.attempt(job_id, number) if number else None
        # In a thread: on object storage a read takes a round trip or more (seconds when S3 is
        # unreachable), and the scheduler's event loop must keep answering meanwhile.
        out = await asyncio.to_thread(read_logs, self.core.job_root(job), number, tail,
                                      record.run_name if record else None)
        # A library that prints its token (or a loop that prints the environment) must not hand the
        # scheduler's secrets to everyone who may read this job's logs.
        secrets = security.secret_values(self.settings.secret_names(), os.environ).values()
        out["logs"] = {source: [security.redact(line, secrets) for line in lines]
                       for source, lines in out["logs"].items()}
        return out

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
        return self.core.cluster_use()

    async def health(self) -> dict[str, Any]:
        self._tend()
        return {"ok": True, "epoch": self.log.epoch, "started_at": self.started_at,
                "queued": len(self.core.queue), "active": len(self.core.held),
                "capacity": self.core.cluster.capacity(), "storage_root": self.settings.storage_root,
                "db_path": self.settings.db_path}

    # -- uploaded packages ---------------------------------------------------------------------------
    async def store_package(self, name: str, data: bytes) -> dict[str, Any]:
        """Store an uploaded folder (a zip) where jobs may use it; see ``scheduler.packages``."""
        self._tend()
        from . import packages

        limit = int(self.settings.max_package_mb * 2**20)
        return await asyncio.to_thread(packages.store, data, name, packages_root(self.core.storage_root), limit)

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



def _since(since: float | str | None) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time (``2026-11-29``, ``...T10:00:00Z``)."""
    if since is None or isinstance(since, (int, float)) and not isinstance(since, bool):
        return None if since is None else float(since)
    if isinstance(since, str):
        from datetime import datetime, timezone

        try:
            when = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidSpec(f"since must be an ISO 8601 time such as 2026-11-29T10:00:00Z, got {since!r}",
                              field="since") from None
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    raise InvalidSpec(f"since must be an ISO 8601 time or epoch seconds, got {since!r}", field="since")


class SchedulerActor(SchedulerService):
    """See the module docstring. Created by ``ensure_scheduler``."""

    def __init__(self, settings: dict[str, Any]) -> None:
        config = Settings(**settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deferred: list[Any] = []
        self._loop: asyncio.Task[None] | None = None
        self.loop_lag_s = 0.0  # the most the housekeeping tick woke late lately (a blocked loop)
        self._channel: ChannelServer | None = None
        self.launcher = RayLauncher(config, self._watch_later, self._spawn,
                                    failed=self._launch_failed, lost=self._launch_lost)
        cluster = RayCluster(config.max_resources)
        cluster.refresh()  # __init__ may block: Ray serves no call before it returns
        # Deleting a checkpoint folder (GBs on NFS or S3) happens in a thread, off the actor's calls.
        core = Scheduler(SQLiteStore(config.db_path), self.launcher, cluster,
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
        # What exists now (modules, Ray, the recovered registry) lives as long as the actor: frozen,
        # the collector no longer walks it. And a young collection every 20,000 new objects, not
        # every 700: a batch of submits makes thousands, nearly all freed by reference counting,
        # and the collections were a tenth of its CPU.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        # Background work (housekeeping, watching re-attached runners) needs the actor's event
        # loop, which runs only after __init__: a call to ourselves queued now starts it first
        # thing, so deadlines and orphans never wait for some client's first call.
        ray.get_runtime_context().current_actor.begin.remote()

    async def begin(self) -> bool:
        """Start the background work (idempotent; every call does it too)."""
        self._tend()
        return True

    async def channel(self) -> dict[str, Any]:
        """Where this actor serves its local channel (``scheduler.channel``), for an HTTP API on
        its machine: the socket's ``path`` and the ``secret`` to present. Started on the first
        call; only a caller with Ray access to the actor learns the secret."""
        self._tend()
        if self._channel is None:
            self._channel = ChannelServer(self)
            atexit.register(self._channel.close)
        path = await self._channel.start()
        return {"path": path, "secret": self._channel.secret}

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

    def _launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        self.core.on_launch_failed(job_id, attempt, error)

    def _launch_lost(self, job_id: str, attempt: int, why: str) -> None:
        self.core.on_runner_lost(job_id, attempt, why)

    async def _watch(self, job_id: str, attempt: int, handle: Any) -> None:
        """Wait for a runner to finish; if it dies without a word, or its exit never reached the
        core (the runner gives up on an event the scheduler raised on), tell the core."""
        try:
            await handle.ready()
            exit_event = await handle.call("wait")
        except ray.exceptions.RayActorError as e:
            self.launcher.host_lost()
            self.core.on_runner_lost(job_id, attempt, f"the runner host died: {type(e).__name__}")
        except ray.exceptions.RayTaskError as e:  # the host does not carry it (any more)
            self.core.on_runner_lost(job_id, attempt, f"the runner is gone: {e.cause}")
        else:
            if (job_id, attempt) in self.core.held:  # its exit event was lost on the way
                try:
                    self.core.on_runner_event(exit_event)
                except Exception as e:
                    logger.exception("the exit of %s attempt %s could not be applied", job_id, attempt)
                    self.core.on_runner_lost(job_id, attempt, f"its exit could not be recorded: {e}")
            handle.call("forget")  # its exit is recorded
        finally:
            self.launcher.forget(job_id, attempt)
            self._spawn(self._refresh_and_schedule())  # what it held shows as free in Ray now

    async def _refresh_and_schedule(self) -> None:
        await asyncio.to_thread(self.core.cluster.refresh)
        self.core.schedule()

    async def _housekeeping(self) -> None:
        last_gauges = last_reconcile = 0.0
        lags: list[float] = []
        while True:
            try:
                await asyncio.to_thread(self.core.cluster.refresh)
                self.core.tick()
                now = time.time()
                if now - last_reconcile >= self.settings.reconcile_s:
                    last_reconcile = now
                    await self._reconcile()
                if self._metrics is not None:
                    self._metrics.flush()
                if now - last_gauges > 5:
                    last_gauges = now
                    self._record_gauges()
            except Exception:  # keep ticking; a failed tick is logged, not fatal
                logger.exception("scheduler tick failed")
            asked = time.monotonic()
            await asyncio.sleep(self.settings.tick_s)
            # How late the loop woke up: anything blocking the loop shows here (and in health()).
            lags = [*lags[-59:], time.monotonic() - asked - self.settings.tick_s]
            self.loop_lag_s = max(lags)

    async def _reconcile(self) -> None:
        """Settle jobs whose runner is gone, stop runners of no job (``Scheduler.reconcile``)."""
        alive = await asyncio.to_thread(self.launcher.alive_keys)
        for line in self.core.reconcile(alive, self.launcher.watched()):
            logger.warning("reconciliation: %s", line)

    async def health(self) -> dict[str, Any]:
        return {**await super().health(), "loop_lag_s": round(self.loop_lag_s, 4),
                "local_channel_connections": self._channel.connections if self._channel is not None else 0}

    def _record_gauges(self) -> None:
        if self._metrics is None:
            return
        counts = {s: self.core.count(s.value) for s in JobStatus}  # kept as jobs change: no table scan
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
    # The secrets come from the environment of whoever starts trainq (``trainq serve``), which is
    # not the actor's when Ray runs elsewhere (`ray start`): they travel in the actor's env, never
    # in its settings, which the API shows.
    secrets = security.secret_values(settings.secret_names(), os.environ)
    return ray.remote(SchedulerActor).options(
        name=SCHEDULER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=-1, num_cpus=0, resources={HEAD_RESOURCE: 0.001},
        max_concurrency=1000, runtime_env={"env_vars": secrets} if secrets else None,
    ).remote(settings.with_overrides().to_dict())
