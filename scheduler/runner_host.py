"""The runner hosts: detached actors on the head node, each carrying the ``Runner`` of up to
``TRAINQ_RUNS_PER_HOST`` attempts.

See ``scheduler.runner`` for why a shared host and not an actor per attempt, and
``scheduler.launcher`` for how attempts are spread over hosts (so that one host's crash takes
only its own runs). The scheduler starts and stops attempts here; Ray Train's controllers and
workers call back in, to the host by its name, with an attempt's key (``runner:<job_id>:<attempt>``).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import raycompat
from .config import RUNNER_HOST_NAME, SCHEDULER_NAME, runner_name
from .core.runner_events import Exited
from .runner import Runner


class UnknownAttempt(KeyError):
    """The host carries no attempt by this key (never started here, or already forgotten)."""


class RunnerHost:
    """A detached actor that carries attempts' ``Runner``s (see the module docstring).

    The scheduler creates it on the head node when a launch needs room; each method names an
    attempt by its key. It holds no state the scheduler needs after a restart beyond its
    attempts, which the scheduler re-attaches with ``attempts()``. ``name``: its own actor name,
    which its runs use to call back.
    """

    def __init__(self, report_poll_s: float, name: str = RUNNER_HOST_NAME) -> None:
        self.name = name
        # Ray Train reads these in the process that calls fit() and hands them to each controller.
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(report_poll_s)
        # fit() blocks in a pool thread, not on the event loop; Ray's "blocking ray.get inside
        # async actor" warning cannot tell the difference.
        os.environ["RAY_WARN_BLOCKING_GET_INSIDE_ASYNC"] = "0"
        self._runners: dict[str, Runner] = {}
        # One thread per running attempt, made as needed (asyncio's default pool has only a few).
        self._pool = ThreadPoolExecutor(max_workers=100_000, thread_name_prefix="trainq-fit")

    def _get(self, name: str) -> Runner:
        runner = self._runners.get(name)
        if runner is None:
            raise UnknownAttempt(f"the runner host carries no attempt {name!r}")
        return runner

    # -- called by the scheduler ------------------------------------------------------------------
    async def start(self, job_id: str, attempt: int, spec: dict[str, Any], run_root: str, run_name: str,
                    resume_from: str | None, worker_env: dict[str, Any] | None = None,
                    scheduler: str = SCHEDULER_NAME) -> None:
        """Start an attempt (idempotent: a second start of the same attempt changes nothing);
        its events go to the scheduler actor named ``scheduler``."""
        name = runner_name(job_id, attempt)
        if name not in self._runners:
            self._runners[name] = Runner(job_id, attempt, spec, run_root, run_name, resume_from,
                                         worker_env, self._pool, host=self.name, scheduler=scheduler)
        await self._runners[name].start()

    async def follow(self, name: str, scheduler: str) -> None:
        """From now on, deliver the attempt's events to the scheduler actor named ``scheduler``
        (one that took over its registry, or a restarted one)."""
        self._get(name).follow(scheduler)

    async def attempts(self) -> list[str]:
        """Every attempt this host carries (running, or ended but not yet forgotten)."""
        return list(self._runners)

    async def wait(self, name: str) -> Exited:
        return await self._get(name).wait()

    async def request_pause(self, name: str) -> None:
        await self._get(name).request_pause()

    async def request_checkpoint(self, name: str) -> None:
        await self._get(name).request_checkpoint()

    async def abort(self, name: str, timeout_s: float = 30.0) -> bool:
        return await self._get(name).abort(timeout_s)

    async def placement_group(self, name: str) -> Any:
        """The attempt's placement group once reserved (None if it ended first): the launcher
        keeps it, to remove it should this host die with the attempt's controller."""
        return await self._get(name).placement_group_of()

    async def forget(self, name: str) -> None:
        """Drop an ended attempt (its exit was recorded)."""
        self._runners.pop(name, None)

    async def kill(self, name: str) -> None:
        """Last resort after an abort that did not end the run: kill the attempt's Ray Train
        controller (its workers go with it); the run ends and reports its exit as usual. Other
        attempts are not touched."""
        self._get(name).kill()

    # -- called from Ray Train's controller and workers -------------------------------------------
    async def hook(self, name: str) -> tuple[bool, bool]:
        return await self._get(name).hook()

    async def hook_state(self, name: str) -> tuple[bool, int]:
        return await self._get(name).hook_state()

    async def hook_told(self, name: str, pause: bool, gen: int) -> None:
        await self._get(name).hook_told(pause, gen)

    async def hook_publish(self, name: str, index: int, payload: Any, readers: int) -> None:
        self._get(name).hook_box.publish(index, payload, readers)

    async def hook_message(self, name: str, index: int) -> Any:
        return await self._get(name).hook_box.take(index)

    async def pause_requested(self, name: str) -> bool:
        return await self._get(name).pause_requested()

    async def on_checkpoint_read(self, name: str) -> None:
        await self._get(name).on_checkpoint_read()

    async def attach_controller(self, name: str, controller: Any) -> None:
        await self._get(name).attach_controller(controller)

    async def on_started(self, name: str) -> None:
        await self._get(name).on_started()

    async def on_placement_group(self, name: str, pg: Any) -> None:
        runner = self._runners.get(name)
        if runner is not None:  # an attempt already forgotten: its controller is on its way out
            await runner.on_placement_group(pg)
        else:
            await asyncio.to_thread(raycompat.remove_placement_group, pg)

    async def on_workers_released(self, name: str) -> None:
        runner = self._runners.get(name)
        if runner is not None:  # an attempt already forgotten has nothing left to release
            await runner.on_workers_released()

    async def on_report(self, name: str, metrics: dict[str, Any], checkpoint_path: str | None, at: float) -> bool:
        return await self._get(name).on_report(metrics, checkpoint_path, at)
