"""A runner's whole life, seen from the scheduler: launch, watch, pause, stop, loss.

Every attempt runs on a runner host (``scheduler.runner_host.RunnerHost``, detached actors on the
head node), at most ``TRAINQ_RUNS_PER_HOST`` to a host: a host that dies (out of memory, a bug)
takes only its own runs with it, and those alone are requeued (``choose_slot``).
``RayLauncher`` is the core's ``Launcher``: the core calls it synchronously, and
whatever may take long (uploading a working_dir, looking an actor up by name, a graceful abort)
runs in background tasks off the scheduler actor's event loop. When a runner ends, or dies
without a word, the launcher tells the scheduler through ``Outcomes``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import ray

from . import raycompat, security
from .config import (
    HEAD_RESOURCE,
    NAMESPACE,
    SCHEDULER_NAME,
    Settings,
    parse_runner_host_name,
    parse_runner_name,
    runner_host_name,
    runner_name,
)
from .core.runner_events import Exited
from .jobs import Attempt, Job
from .runtime_env import has_local

logger = logging.getLogger("trainq.scheduler")
#: environment every runner (and so its Ray Train controller and workers) gets
TRAIN_STATE_ENV = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


def choose_slot(loads: Mapping[int, int], runs_per_host: int) -> int:
    """The runner host for a new attempt: the first (lowest slot) carrying fewer than
    ``runs_per_host`` attempts, so runs fill few hosts and a new host starts only when all are full.
    ``loads``: attempts per host slot (slots carrying none may be absent)."""
    slot = 0
    while loads.get(slot, 0) >= runs_per_host:
        slot += 1
    return slot


class Outcomes(Protocol):
    """Where the launcher reports what became of a runner (the scheduler actor, to its core)."""

    def recovered_exit(self, event: Exited) -> None:
        """An exit event the watcher recovered (the runner's own delivery was lost)."""

    def runner_lost(self, job_id: str, attempt: int, why: str) -> None:
        """The runner is gone without saying how its attempt ended."""

    def launch_failed(self, job_id: str, attempt: int, error: str) -> None:
        """No runner could be started for the attempt."""

    def holds(self, job_id: str, attempt: int) -> bool:
        """Whether the scheduler still counts the attempt as holding resources."""

    def runner_ended(self) -> None:
        """A runner finished: what it held is free in Ray now (refresh the cluster, schedule)."""


class AttemptRef:
    """One attempt on a runner host (the one in ``slot``), addressed by its runner name."""

    def __init__(self, host: Any, name: str, started: Any = None, slot: int = 0) -> None:
        self.host, self.name, self.slot = host, name, slot
        self._started = started  # the host's ``start`` call, for an attempt launched by us
        self.found = started is None  # found alive on a host (not launched by this launcher)
        self.placement_group: Any = None  # the run's, once reserved: removed here if the host dies

    async def ready(self) -> None:
        """Wait until the host has the attempt: Ray does not run an async actor's calls in the
        order they were sent, so a call right after ``start`` could otherwise arrive first."""
        if self._started is not None:
            await self._started
            self._started = None

    def wait(self) -> Any:
        """The attempt's exit event, once its run has ended (an ObjectRef)."""
        return self.host.wait.remote(self.name)

    def request_pause(self) -> Any:
        return self.host.request_pause.remote(self.name)

    def request_checkpoint(self) -> Any:
        return self.host.request_checkpoint.remote(self.name)

    def abort(self, timeout_s: float) -> Any:
        """Ray Train's graceful abort; resolves to whether the run ended within ``timeout_s``."""
        return self.host.abort.remote(self.name, timeout_s)

    def kill(self) -> Any:
        return self.host.kill.remote(self.name)

    def forget(self) -> Any:
        return self.host.forget.remote(self.name)

    async def learn_placement_group(self) -> None:
        """Keep the run's placement group once its workers reserved it (the host answers then)."""
        try:
            self.placement_group = await self.host.placement_group.remote(self.name)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
            pass  # the host died, or forgot an attempt that ended: ``_watch`` sees to both


class RayLauncher:
    """Starts attempts on the runner hosts, watches them, pauses and stops them."""

    def __init__(self, settings: Settings, spawn: Spawn, outcomes: Outcomes, scheduler_name: str = SCHEDULER_NAME
                 ) -> None:
        self.settings = settings
        self.scheduler_name = scheduler_name  # where runners deliver their events
        self._spawn = spawn
        self._outcomes = outcomes
        self.handles: dict[tuple[str, int], AttemptRef] = {}  # live attempts: a stop needs no lookup
        self._hosts: dict[int, Any] = {}  # runner hosts by slot, created when a launch needs one
        self._slots: dict[tuple[str, int], int] = {}  # live attempts (launching or watched): their host's slot
        self.launching: set[tuple[str, int]] = set()  # runtime_env being prepared, no runner yet
        self._abandoned: set[tuple[str, int]] = set()  # stopped while launching

    # -- launch -----------------------------------------------------------------------------------
    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        key = (job.job_id, attempt.attempt)
        self.launching.add(key)
        # Chosen now, not in the task: launches in flight count toward their host's load.
        self._slots[key] = choose_slot(Counter(self._slots.values()), self.settings.runs_per_host)
        self._spawn(self._launch(job, attempt, run_root))

    async def _launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        key = (job.job_id, attempt.attempt)
        try:
            runtime_env = dict(job.spec.get("runtime_env") or {})
            if has_local(runtime_env):
                # Zipping and pushing a folder to Ray takes seconds for a big one and holds the
                # GIL much of that time: a task on the head node does it, not this process.
                upload = ray.remote(raycompat.upload_local_dirs).options(
                    num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_retries=0)
                runtime_env = await upload.remote(runtime_env)
            worker_env = self.worker_env({**job.spec, "runtime_env": runtime_env})
            slot = self._slots.get(key, 0)
            host = await asyncio.to_thread(self.host, slot)
            if key in self._abandoned:
                self._slots.pop(key, None)
                self._outcomes.runner_lost(*key, "stopped before its runner was started")
                return
            started = host.start.remote(job.job_id, attempt.attempt, job.spec, run_root, attempt.run_name,
                                        attempt.resumed_from, worker_env, self.scheduler_name)
            self.adopt(*key, AttemptRef(host, runner_name(*key), started, slot))
        except Exception as e:
            logger.exception("could not start a runner for %s attempt %s", *key)
            self._slots.pop(key, None)
            self._outcomes.launch_failed(*key, f"{type(e).__name__}: {e}")
        finally:
            self.launching.discard(key)
            self._abandoned.discard(key)

    def host(self, slot: int = 0) -> Any:
        """The runner host in ``slot``, created on first use (blocking: a GCS round trip; call in a thread)."""
        if slot not in self._hosts:
            from .runner_host import RunnerHost

            name = runner_host_name(slot)
            self._hosts[slot] = ray.remote(RunnerHost).options(
                name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_restarts=0, max_concurrency=100_000,
                # Only trainq's own switches: the host and the Ray Train controllers it starts
                # (which inherit this) run on the head node and never get a job's code or
                # packages. Ray Train's state tracking is off by default, which hides trainq's
                # runs from the Ray dashboard's Train API.
                runtime_env={"env_vars": dict(TRAIN_STATE_ENV)},
            ).remote(self.settings.report_poll_s, name)
        return self._hosts[slot]

    def worker_env(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The runtime_env of a job's training workers: its own, with local folders uploaded (as
        ``ray job submit`` does; the head node reads and zips them, it never imports them), and
        the secrets named in ``TRAINQ_SECRET_ENV`` from this process's environment."""
        runtime_env = dict(spec.get("runtime_env") or {})
        if has_local(runtime_env):
            runtime_env = raycompat.upload_local_dirs(runtime_env)
        secrets = security.secret_values(self.settings.secret_names(), os.environ)
        # A variable the job sets itself wins: it is the user's own (e.g. their own HF_TOKEN).
        runtime_env["env_vars"] = {**TRAIN_STATE_ENV, **secrets, **(runtime_env.get("env_vars") or {})}
        return runtime_env

    # -- watch ------------------------------------------------------------------------------------
    def adopt(self, job_id: str, attempt: int, ref: AttemptRef) -> None:
        """Keep and watch a runner (one just launched, or one found alive after a restart, which
        is told to deliver its events here from now on)."""
        self.handles[(job_id, attempt)] = ref
        self._slots[(job_id, attempt)] = ref.slot
        if ref.found:
            ref.host.follow.remote(ref.name, self.scheduler_name)
        self._spawn(self._watch(job_id, attempt, ref))

    async def _watch(self, job_id: str, attempt: int, ref: AttemptRef) -> None:
        """Wait for a runner to finish; if it dies without a word, or its exit never reached the
        scheduler (the runner gives up on an event the scheduler raised on), say so."""
        learning = None
        try:
            await ref.ready()
            learning = asyncio.ensure_future(ref.learn_placement_group())
            exit_event = await ref.wait()
        except ray.exceptions.RayActorError as e:
            # The host died with the attempts on it (and only those): the next launch that needs
            # its slot starts a new one. Its controllers died with it, their placement groups not.
            if self._hosts.get(ref.slot) is ref.host:
                self._hosts.pop(ref.slot, None)
            if learning is not None:
                await asyncio.wait({learning})
            if ref.placement_group is not None:
                await asyncio.to_thread(raycompat.remove_placement_group, ref.placement_group)
            self._outcomes.runner_lost(job_id, attempt, f"its runner host {runner_host_name(ref.slot)} died:"
                                                        f" {type(e).__name__}")
        except ray.exceptions.RayTaskError as e:  # the host does not carry it (any more)
            self._outcomes.runner_lost(job_id, attempt, f"the runner is gone: {e.cause}")
        else:
            if self._outcomes.holds(job_id, attempt):  # its exit event was lost on the way
                try:
                    self._outcomes.recovered_exit(exit_event)
                except Exception as e:
                    logger.exception("the exit of %s attempt %s could not be applied", job_id, attempt)
                    self._outcomes.runner_lost(job_id, attempt, f"its exit could not be recorded: {e}")
            ref.forget()  # its exit is recorded
        finally:
            if learning is not None:
                learning.cancel()
            self.handles.pop((job_id, attempt), None)
            self._slots.pop((job_id, attempt), None)
            self._outcomes.runner_ended()

    def watched(self) -> set[tuple[str, int]]:
        """Attempts whose runner is being started or watched: their end reaches the core anyway."""
        return set(self.handles) | self.launching

    # -- pause and stop ---------------------------------------------------------------------------
    def request_pause(self, job_id: str, attempt: int) -> None:
        self._spawn(self._tell(job_id, attempt, AttemptRef.request_pause))

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        self._spawn(self._tell(job_id, attempt, AttemptRef.request_checkpoint))

    def stop_all(self) -> None:
        """Stop every run this launcher started or adopted (its scheduler lost the registry)."""
        for job_id, attempt in sorted(self.watched()):
            self.stop(job_id, attempt)

    def stop(self, job_id: str, attempt: int) -> None:
        if (job_id, attempt) in self.launching:
            self._abandoned.add((job_id, attempt))  # ``_launch`` stops short of starting it
            return
        self._spawn(self._stop(job_id, attempt))

    async def _tell(self, job_id: str, attempt: int, what: Callable[[AttemptRef], Any]) -> None:
        ref = await self._find(job_id, attempt)
        if ref is not None:
            await ref.ready()
            what(ref)

    async def _stop(self, job_id: str, attempt: int) -> None:
        ref = await self._find(job_id, attempt)
        if ref is None:
            return
        # Graceful: the controller shuts its workers down and frees the placement group; the
        # run ends, its exit reaches the scheduler and the watcher forgets the attempt. If the
        # abort hangs, kill the controller (its workers go with it) and the run ends that way.
        try:
            await ref.ready()
            if await asyncio.wait_for(ref.abort(15.0), timeout=60):
                return
            logger.warning("%s did not end after an abort; killing its controller", ref.name)
        except Exception as e:  # noqa: BLE001 - hung or gone: the kill settles it
            logger.warning("graceful abort of %s failed (%s); killing its controller", ref.name, e)
        ref.kill()

    # -- finding runners --------------------------------------------------------------------------
    async def _find(self, job_id: str, attempt: int) -> AttemptRef | None:
        ref = self.handles.get((job_id, attempt))
        return ref if ref is not None else await asyncio.to_thread(self.find, job_id, attempt)

    def find(self, job_id: str, attempt: int) -> AttemptRef | None:
        """An attempt on the runner host (blocking: GCS round trips), or None."""
        ref = self.handles.get((job_id, attempt))
        if ref is not None:
            return ref
        return self.alive().get((job_id, attempt))

    def alive_keys(self) -> set[tuple[str, int]]:
        """Every attempt the runner hosts carry now (blocking: GCS round trips)."""
        return set(self.alive())

    def alive(self) -> dict[tuple[str, int], AttemptRef]:
        """Every attempt the runner hosts carry now, by (job_id, attempt) (blocking)."""
        found = {}
        for slot, host in self._live_hosts().items():
            try:
                names: list[str] = ray.get(host.attempts.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                continue  # gone with its attempts
            self._hosts.setdefault(slot, host)
            for name in names:
                key = parse_runner_name(name)
                if key is not None:
                    found[key] = AttemptRef(host, name, slot=slot)
        return found

    @staticmethod
    def _live_hosts() -> dict[int, Any]:
        """The runner hosts alive in Ray now, by slot (blocking)."""
        hosts = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            slot = parse_runner_host_name(entry["name"]) if entry["namespace"] == NAMESPACE else None
            if slot is None:
                continue
            try:
                hosts[slot] = ray.get_actor(entry["name"], namespace=NAMESPACE)
            except ValueError:
                continue  # it died since the listing
        return hosts
