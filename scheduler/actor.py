"""The scheduler actor: the Ray shell around the core (``scheduler.service`` plus Ray).

One named, detached actor (``scheduler`` in namespace ``trainq``). It acts on the core's
decisions through the ``RayLauncher`` (``scheduler.launcher``), sees the cluster through
``RayCluster`` and runs the housekeeping loop. When Ray restarts it, ``__init__`` rebuilds the
core from the store and re-attaches to runners still alive before any call is served.

It acts only while it holds its registry's lease (``scheduler.leadership``): without it, it is a
standby that answers ``health`` alone and takes over when the lease expires; a scheduler that
loses the lease stops the runs it started and becomes a standby.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any

import ray

from . import raycompat, security
from .channel import ChannelServer
from .checkpoint_fs import BackgroundDeletes, StorageFS, sweep_leftovers
from .config import HEAD_RESOURCE, NAMESPACE, SCHEDULER_NAME, Settings
from .core import Exited, Scheduler
from .errors import LeaseLost
from .launcher import RayLauncher
from .leadership import Leadership, holder_name
from .nodes import RayNodes, real_resources
from .policy import Resources
from .service import SchedulerService
from .states import JobStatus
from .store import open_event_store, open_store

__all__ = ["RayCluster", "RayLauncher", "SchedulerActor", "SchedulerService", "ensure_scheduler"]
logger = logging.getLogger("trainq.scheduler")
#: after a run ends, when to look at Ray's free room and schedule (each after the one before, until a start)
RELEASE_LOOKS_S = (0.0, 0.2, 0.3)


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
        self._nodes_free: dict[str, Resources] = {}  # by node id
        #: nodes Ray is draining: node id -> deadline (epoch s, None: none); nothing new lands there
        self.draining: dict[str, float | None] = {}

    def refresh(self) -> None:
        """Fetch capacity, nodes, free resources per node and drains from Ray (blocking: call in a thread)."""
        capacity = real_resources(ray.cluster_resources())
        nodes = [] if self._max is not None else \
            [real_resources(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        free = {} if self._max is not None else \
            {n: real_resources(f) for n, f in raycompat.available_resources_per_node().items()}
        draining = raycompat.draining_nodes()
        self._capacity, self._nodes, self._nodes_free, self.draining = capacity, nodes, free, draining

    def capacity(self) -> Resources:
        return dict(self._capacity)

    def max_capacity(self) -> Resources:
        return dict(self._max) if self._max is not None else self.capacity()

    def nodes(self) -> list[Resources]:
        return [dict(n) for n in self._nodes]  # an autoscaling cluster's node types are its business

    def nodes_free(self) -> list[Resources] | None:
        if self._max is not None:
            return None  # nodes come and go with the autoscaler; totals and its hints decide
        return list(self._usable().values())

    def nodes_free_by_id(self) -> dict[str, Resources] | None:
        if self._max is not None:
            return None
        return self._usable()

    def _usable(self) -> dict[str, Resources]:
        """Free room on the nodes not draining: a draining node takes nothing new (Ray would not
        place a new gang there either, and the job would wait for a node about to go)."""
        return {node_id: dict(n) for node_id, n in self._nodes_free.items() if node_id not in self.draining}

    def request(self, bundles: list[Resources]) -> None:
        if self._max is None:
            return
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=bundles)


class SchedulerActor(SchedulerService):
    """See the module docstring. Created by ``ensure_scheduler``."""

    def __init__(self, settings: dict[str, Any]) -> None:
        config = Settings(**settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deferred: list[Coroutine[Any, Any, Any]] = []
        self._loop: asyncio.Task[None] | None = None
        self.loop_lag_s = 0.0  # the most the housekeeping tick woke late lately (a blocked loop)
        self._channel: ChannelServer | None = None
        context = ray.get_runtime_context()
        # Runners deliver their events to the scheduler that started (or adopted) them, by name.
        name = context.get_actor_name() or SCHEDULER_NAME
        self.launcher = RayLauncher(config, self._spawn, self, scheduler_name=name)
        self.ray_cluster = RayCluster(config.max_resources)
        self.ray_cluster.refresh()  # __init__ may block: Ray serves no call before it returns
        self.ray_nodes = RayNodes()
        self._store = store = open_store(config.db_path)
        super().__init__(None, config, events=open_event_store(config.db_path))
        self._metrics = _make_metrics()
        # A restarted scheduler (or one started again on this machine after a kill) finds the
        # lease's holder process gone and takes it back at once rather than waiting for it to expire.
        self.leadership = Leadership(store, holder=holder_name(name, context.get_actor_id()), ttl_s=config.lease_ttl_s)
        if self.leadership.take():
            self._lead()  # recovery before the first call is served: Ray runs __init__ to completion first
        else:
            logger.warning("standby: %s", self.leadership.standby_message())
        # What exists now (modules, Ray, the recovered registry) lives as long as the actor: frozen,
        # the collector no longer walks it. And a young collection every 20,000 new objects, not
        # every 700: a batch of submits makes thousands, nearly all freed by reference counting,
        # and the collections were a tenth of its CPU.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        # Background work (housekeeping, watching re-attached runners, launches recovery made)
        # needs the actor's event loop, which runs only after __init__: a call to ourselves
        # queued now starts it first thing, once, so it never waits for some client's first call.
        ray.get_runtime_context().current_actor.begin.remote()

    def _lead(self) -> None:
        """This scheduler holds the lease: build the core over the registry (its writes fenced by
        the lease's epoch), re-attach to this registry's runners still alive, and recover."""
        assert self.leadership.lease is not None
        self._store.fence(self.leadership.lease.epoch)
        # Deleting a checkpoint folder (GBs on NFS or S3) happens in a thread, off the actor's calls.
        core = Scheduler(self._store, self.launcher, self.ray_cluster, storage_root=self.settings.storage_root,
                         settings=self.settings, checkpoint_fs=BackgroundDeletes(StorageFS()))
        if self._metrics is not None:
            core.listeners.append(self._metrics.observe)
        # Runs of jobs this registry does not know belong to another scheduler: never adopted.
        alive = {key: ref for key, ref in self.launcher.alive().items() if self._store.get_job(key[0]) is not None}
        for (job_id, attempt), ref in alive.items():
            self.launcher.adopt(job_id, attempt, ref)
        core.recover(set(alive))
        self.attach(core)
        # Checkpoints recorded as deleted but still on storage (a crash between the two): removed
        # in the background, so a slow store never holds up the start.
        self._spawn(sweep_leftovers(core.checkpointing, core.ctx.checkpoint_fs))

    def _step_down(self, why: str) -> None:
        """The lease is lost: stop acting, stop the runs this scheduler started (the new leader
        may be on another cluster, and a job must not run twice), and wait as a standby."""
        logger.error("lost the registry's lease (%s): stopping this scheduler's runs; standby now", why)
        self.leadership.lose()
        self.detach()
        self.launcher.stop_all()

    def standby_message(self) -> str:
        return self.leadership.standby_message()

    async def begin(self) -> bool:
        """Start the background work: the housekeeping loop and what ``__init__`` deferred (idempotent)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._housekeeping())
        while self._deferred:
            self._spawn(self._deferred.pop(0))
        return True

    async def channel(self) -> dict[str, Any]:
        """Where this actor serves its local channel (``scheduler.channel``), for an HTTP API on
        its machine: the socket's ``path`` and the ``secret`` to present. Started on the first
        call; only a caller with Ray access to the actor learns the secret."""
        if self._channel is None:
            self._channel = ChannelServer(self)
            atexit.register(self._channel.close)
        path = await self._channel.start()
        return {"path": path, "secret": self._channel.secret}

    # -- background work, and what the launcher reports (``launcher.Outcomes``) -----------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background (deferred until the loop runs, in __init__)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._deferred.append(coro)
            return
        task = loop.create_task(coro)
        self._tasks.add(task)  # keep a reference until done, or asyncio may drop it
        task.add_done_callback(self._tasks.discard)

    # After a step down (no core) what the runs of the old term report is the new leader's to
    # settle, from the registry: nothing is recorded here.
    def recovered_exit(self, event: Exited) -> None:
        """An exit event the launcher's watcher recovered."""
        if self._core is not None:
            self._core.on_runner_event(event)

    def runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        if self._core is not None:
            self._core.on_runner_lost(job_id, attempt, why)

    def launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        if self._core is not None:
            self._core.on_launch_failed(job_id, attempt, error)

    def holds(self, job_id: str, attempt: int) -> bool:
        return self._core is not None and (job_id, attempt) in self._core.held

    def runner_ended(self) -> None:
        self._spawn(self._refresh_and_schedule())  # what it held shows as free in Ray now

    async def _refresh_and_schedule(self) -> None:
        # A run's end reaches us as soon as Ray Train removed its placement group, and Ray's
        # per-node view shows the room a moment later (raylets report every ~100 ms): when the
        # first look starts nothing, look again shortly rather than at the next tick (1 s).
        for delay_s in RELEASE_LOOKS_S:
            await asyncio.sleep(delay_s)
            await asyncio.to_thread(self.ray_cluster.refresh)
            if self._core is None or self._core.schedule():
                return

    async def _housekeeping(self) -> None:
        last_gauges = last_reconcile = 0.0
        lags: list[float] = []
        while True:
            try:
                if not await self._hold_lease():
                    await asyncio.sleep(self.settings.tick_s)
                    continue
                await asyncio.to_thread(self.ray_cluster.refresh)
                self.core.tick()
                await self._follow_drains()
                now = time.time()
                if now - last_reconcile >= self.settings.reconcile_s:
                    last_reconcile = now
                    await self._reconcile()
                if self._metrics is not None:
                    self._metrics.flush()
                if now - last_gauges > 5:
                    last_gauges = now
                    self._record_gauges()
            except LeaseLost as e:
                self._step_down(str(e))
            except Exception:  # keep ticking; a failed tick is logged, not fatal
                logger.exception("scheduler tick failed")
            asked = time.monotonic()
            await asyncio.sleep(self.settings.tick_s)
            # How late the loop woke up: anything blocking the loop shows here (and in health()).
            lags = [*lags[-59:], time.monotonic() - asked - self.settings.tick_s]
            self.loop_lag_s = max(lags)

    async def _hold_lease(self) -> bool:
        """Keep the lease while leading; take it over when it expires while standing by. True
        when this scheduler leads (and may act) now."""
        if self.leadership.leading:
            if self.leadership.keep():
                return True
            self._step_down("another scheduler took it")
            return False
        if not await asyncio.to_thread(self.leadership.take):
            return False
        logger.warning("took over the registry (epoch %s)", self.leadership.lease.epoch if self.leadership.lease
                       else "?")
        self._lead()
        return True

    async def _follow_drains(self) -> None:
        """Move the jobs on nodes Ray is draining (``core.drains``), every tick while one drains:
        where their workers are is asked of Ray then only (in a thread), and handed over as data."""
        draining = self.ray_cluster.draining
        fresh = self.ray_nodes.new_drains(draining)
        if fresh and self._metrics is not None:
            self._metrics.node_drains(fresh)
        if not draining:
            self.core.on_drains([], {})  # a drain that ended (its node gone) no longer explains a wait
            return
        placements = await asyncio.to_thread(self.ray_nodes.placements, self.ray_nodes.run_names(self.core))
        for move in self.core.on_drains(self.ray_nodes.notices(draining), placements):
            logger.warning("drain of node %s: job %s %s", move.node_id, move.job_id, move.how)

    async def nodes(self) -> list[dict[str, Any]]:
        """The live nodes: resources, free room, jobs on each, drains (``scheduler.nodes``)."""
        return await self.ray_nodes.views(self.core, self.ray_cluster.draining)

    async def drain_node(self, node_id: str, deadline_s: float | None = None, reason: str = "preemption",
                         message: str = "", as_user: str | None = None) -> dict[str, Any]:
        """Ask Ray to drain a node (an admin's, with a users file); its jobs move at a checkpoint
        within a tick or two, as for a drain Ray's autoscaler starts."""
        self.authorize_admin(as_user, "drain nodes")
        answer = await asyncio.to_thread(self.ray_nodes.drain, node_id, deadline_s, reason, message,
                                         self.ray_nodes.run_names(self.core))
        await asyncio.to_thread(self.ray_cluster.refresh)
        await self._follow_drains()  # at once, not at the next tick
        return answer

    async def _reconcile(self) -> None:
        """Settle jobs whose runner is gone, stop runners of no job (``Scheduler.reconcile``)."""
        alive = await asyncio.to_thread(self.launcher.alive_keys)
        for line in self.core.reconcile(alive, self.launcher.watched()):
            logger.warning("reconciliation: %s", line)

    async def health(self) -> dict[str, Any]:
        return {**await super().health(), **self.leadership.describe(), "loop_lag_s": round(self.loop_lag_s, 4),
                "local_channel_connections": self._channel.connections if self._channel is not None else 0}

    def _record_gauges(self) -> None:
        if self._metrics is None:
            return
        counts = {s: self.core.count(s.value) for s in JobStatus}  # kept as jobs change: no table scan
        self._metrics.snapshot(counts, counts[JobStatus.QUEUED])


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
