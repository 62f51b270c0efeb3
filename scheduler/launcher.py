"""A runner's whole life, seen from the scheduler: launch, watch, pause, stop, loss.

Every attempt runs on the runner host (``scheduler.runner_host.RunnerHost``, one detached actor on
the head node). ``RayLauncher`` is the core's ``Launcher``: the core calls it synchronously, and
whatever may take long (uploading a working_dir, looking an actor up by name, a graceful abort)
runs in background tasks off the scheduler actor's event loop. When a runner ends, or dies
without a word, the launcher tells the scheduler through ``Outcomes``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import ray

from . import raycompat, security
from .config import HEAD_RESOURCE, NAMESPACE, RUNNER_HOST_NAME, Settings, parse_runner_name, runner_name
from .core.runner_events import Exited
from .jobs import Attempt, Job
from .runtime_env import has_local

logger = logging.getLogger("trainq.scheduler")
#: environment every runner (and so its Ray Train controller and workers) gets
TRAIN_STATE_ENV = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


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
    """One attempt on the runner host, addressed by its runner name."""

    def __init__(self, host: Any, name: str, started: Any = None) -> None:
        self.host, self.name = host, name
        self._started = started  # the host's ``start`` call, for an attempt launched by us

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


class RayLauncher:
    """Starts attempts on the runner host, watches them, pauses and stops them."""

    def __init__(self, settings: Settings, spawn: Spawn, outcomes: Outcomes) -> None:
        self.settings = settings
        self._spawn = spawn
        self._outcomes = outcomes
        self.handles: dict[tuple[str, int], AttemptRef] = {}  # live attempts: a stop needs no lookup
        self._host: Any = None
        self.launching: set[tuple[str, int]] = set()  # runtime_env being prepared, no runner yet
        self._abandoned: set[tuple[str, int]] = set()  # stopped while launching

    # -- launch -----------------------------------------------------------------------------------
    def launch(self, job: Job, attempt: Attempt, run_root: str) -> None:
        key = (job.job_id, attempt.attempt)
        self.launching.add(key)
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
            host = await asyncio.to_thread(self.host)
            if key in self._abandoned:
                self._outcomes.runner_lost(*key, "stopped before its runner was started")
                return
            started = host.start.remote(job.job_id, attempt.attempt, job.spec, run_root, attempt.run_name,
                                        attempt.resumed_from, worker_env)
            self.adopt(*key, AttemptRef(host, runner_name(*key), started))
        except Exception as e:
            logger.exception("could not start a runner for %s attempt %s", *key)
            self._outcomes.launch_failed(*key, f"{type(e).__name__}: {e}")
        finally:
            self.launching.discard(key)
            self._abandoned.discard(key)

    def host(self) -> Any:
        """The runner host, created on first use (blocking: a GCS round trip; call in a thread)."""
        if self._host is None:
            from .runner_host import RunnerHost

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
        """Keep and watch a runner (one just launched, or one found alive after a restart)."""
        self.handles[(job_id, attempt)] = ref
        self._spawn(self._watch(job_id, attempt, ref))

    async def _watch(self, job_id: str, attempt: int, ref: AttemptRef) -> None:
        """Wait for a runner to finish; if it dies without a word, or its exit never reached the
        scheduler (the runner gives up on an event the scheduler raised on), say so."""
        try:
            await ref.ready()
            exit_event = await ref.wait()
        except ray.exceptions.RayActorError as e:
            self._host = None  # the host died with every attempt on it: the next launch starts a new one
            self._outcomes.runner_lost(job_id, attempt, f"the runner host died: {type(e).__name__}")
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
            self.handles.pop((job_id, attempt), None)
            self._outcomes.runner_ended()

    def watched(self) -> set[tuple[str, int]]:
        """Attempts whose runner is being started or watched: their end reaches the core anyway."""
        return set(self.handles) | self.launching

    # -- pause and stop ---------------------------------------------------------------------------
    def request_pause(self, job_id: str, attempt: int) -> None:
        self._spawn(self._tell(job_id, attempt, AttemptRef.request_pause))

    def request_checkpoint(self, job_id: str, attempt: int) -> None:
        self._spawn(self._tell(job_id, attempt, AttemptRef.request_checkpoint))

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
        """Every attempt the runner host carries now (blocking: GCS round trips)."""
        return set(self.alive())

    def alive(self) -> dict[tuple[str, int], AttemptRef]:
        """Every attempt the runner host carries now, by (job_id, attempt) (blocking)."""
        try:
            host = ray.get_actor(RUNNER_HOST_NAME, namespace=NAMESPACE)
            names: list[str] = ray.get(host.attempts.remote(), timeout=30)
        except (ValueError, ray.exceptions.RayActorError):
            return {}  # no host (yet), or it is gone with its attempts
        self._host = host
        found = {}
        for name in names:
            key = parse_runner_name(name)
            if key is not None:
                found[key] = AttemptRef(host, name)
        return found
