"""The runners: one ``Runner`` per attempt, which owns that attempt's ``fit()``, carried by
long-lived, detached actors, the ``RunnerHost``s (``scheduler.runner_host``), up to
``TRAINQ_RUNS_PER_HOST`` runs to a host.

The host outlives a scheduler restart (Ray Train's controller fate-shares with whoever calls
``fit()``, so that must not be the scheduler). Each runner relays every report to the scheduler
in order, with retries, and stops the run right after a checkpoint report once a pause was
requested: the report callback runs in Ray Train's controller and asks it to abort.

Why a shared host and not an actor per attempt: a runner only builds a trainer and waits on
``fit()`` in a thread, so a process of its own (a Python with Ray, Ray Train and torch loaded,
~390 MB, started anew for every attempt) cost as much as Ray Train's own controller and seconds
of every start. The host imports neither torch (``raycompat.lazy_torch_config``) nor any user
code (the entrypoint is imported in the workers, ``scheduler.train.wrap``), and a job's
``runtime_env`` goes to its workers (``worker_runtime_env``), never to the host or the
controller: one attempt's environment cannot leak into another's. An attempt is addressed by
its key, ``runner:<job_id>:<attempt>`` (``config.runner_name``).

Hard stops (cancel, a pause deadline, a pause while starting) come from the scheduler as
``abort``: the runner asks the controller to abort, so Ray Train shuts the workers down and
frees the placement group itself; the scheduler then ``forget``s the attempt (or ``kill``s its
controller if the abort hung: the runner removes the placement group once ``fit()`` has ended,
as Ray Train's per-run cleaner would have; ``raycompat.trainer_class``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from . import logs, raycompat, workloads
from . import train as train_helpers
from .config import NAMESPACE, RUNNER_HOST_NAME, SCHEDULER_NAME, join_path, runner_name
from .core.runner_events import Exited, HookSeen, Reported, RunnerEvent, Started
from .errors import NotReady
from .hook_mailbox import HookMailbox
from .run_callbacks import (
    ReportRelay,
    checkpoint_uri,
    tell_controller,
    tell_placement_group,
    tell_released,
    tell_started,
)
from .run_failures import describe_failure, failure_kind
from .spec import JobSpec

logger = logging.getLogger("trainq.runner")

#: How long a cooperative loop that was told to pause may take to return after its checkpoint.
COOPERATIVE_STOP_S = 3.0


class Runner:
    """One attempt of one job, inside the ``RunnerHost``; see the module docstring."""

    def __init__(self, job_id: str, attempt: int, spec: dict[str, Any], run_root: str,
                 run_name: str, resume_from: str | None, worker_env: dict[str, Any] | None = None,
                 pool: ThreadPoolExecutor | None = None, host: str = RUNNER_HOST_NAME,
                 scheduler: str = SCHEDULER_NAME) -> None:
        self.job_id, self.attempt = job_id, attempt
        self.scheduler_name = scheduler  # the scheduler actor its events go to (``follow`` changes it)
        self.host = host  # the name of the runner host carrying it: callbacks from the run find it so
        self.spec = JobSpec.model_validate(spec)
        #: The job's runtime_env as Ray Train's workers get it (folders already uploaded, secrets
        #: added). Only the workers get it: the runner and the controller never load user code.
        self.worker_env = worker_env or {}
        self.run_root, self.run_name, self.resume_from = run_root, run_name, resume_from
        self.name = runner_name(job_id, attempt)
        self.pause_at: float | None = None
        self.checkpoint_at: float | None = None  # a checkpoint-now waiting for its report
        self.checkpoint_told = False  # the loop was told (once) to save it
        self.checkpoint_gen = 0  # checkpoint-now requests so far (the hook answers each once)
        self.hook_seen = False  # the loop calls scheduler.train's hook
        self.pause_told = False  # the loop heard "pause": it returns right after its checkpoint
        self.hook_box = HookMailbox()
        self.read_checkpoint = False  # some rank called ray.train.get_checkpoint() this attempt
        self.stopped_for_pause = False
        self.last_checkpoint: str | None = None  # the newest checkpoint reported this attempt
        self.aborting = False
        self.killing = False
        self._controller: Any = None
        self.placement_group: Any = None  # the run's, removed once fit() ends (raycompat.trainer_class)
        self._placed = asyncio.Event()
        self.seq = 0
        self.exit_event: Exited | None = None
        self._pool = pool
        self._scheduler: Any = None
        self._outbox: asyncio.Queue[RunnerEvent] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._done: asyncio.Event | None = None

    # -- called by the scheduler ------------------------------------------------------------------
    async def start(self) -> None:
        """Start the attempt (idempotent)."""
        if self._tasks:
            return
        self._outbox, self._done = asyncio.Queue(), asyncio.Event()
        self._tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._run())]

    async def wait(self) -> Exited:
        """Return the exit event once the attempt ended and every event was delivered."""
        await self.start()
        assert self._done is not None
        await self._done.wait()
        assert self.exit_event is not None
        return self.exit_event

    async def request_pause(self) -> None:
        """Stop right after the next checkpoint report (idempotent)."""
        if self.pause_at is None:
            self.pause_at = time.time()

    async def request_checkpoint(self) -> None:
        """Have a cooperative loop checkpoint at its next step and go on (idempotent)."""
        if self.checkpoint_at is None:
            self.checkpoint_at, self.checkpoint_told = time.time(), False
            self.checkpoint_gen += 1

    async def pause_requested(self) -> bool:
        """Asked by older workers' ``scheduler.train.pause_requested()`` on rank 0."""
        return (await self.hook())[0]

    async def hook_state(self) -> tuple[bool, int]:
        """``(pause asked, checkpoint-now generation)``, polled by rank 0 of a loop that uses the
        hook (``scheduler.train.HookSync``); the first poll marks the job cooperative."""
        if not self.hook_seen:
            self.hook_seen = True
            self._emit(HookSeen(self.job_id, self.attempt))
        return self.pause_at is not None, self.checkpoint_gen

    async def hook_told(self, pause: bool, gen: int) -> None:
        """The loop's ranks agreed on a pause (it returns after its checkpoint) or a checkpoint-now."""
        self.pause_told = self.pause_told or pause
        self.checkpoint_told = self.checkpoint_told or gen >= self.checkpoint_gen

    async def hook(self) -> tuple[bool, bool]:
        """``(pause, checkpoint)``: asked by ``scheduler.train``'s hook on rank 0, once per step."""
        if not self.hook_seen:
            self.hook_seen = True
            self._emit(HookSeen(self.job_id, self.attempt))
        # A checkpoint-now is answered once: its report reaches us only after the controller's next
        # poll, and the loop must not save again at every step until then.
        checkpoint = self.checkpoint_at is not None and not self.checkpoint_told
        self.checkpoint_told = self.checkpoint_told or checkpoint
        pause = self.pause_at is not None
        self.pause_told = self.pause_told or pause
        return pause, pause or checkpoint

    async def on_checkpoint_read(self) -> None:
        """A worker called ``ray.train.get_checkpoint()``; it waits for this answer before going on,
        so the note always arrives before that worker's next report."""
        self.read_checkpoint = True

    async def abort(self, timeout_s: float = 30.0) -> bool:
        """Stop the run now and wait (bounded) until Ray Train has released its resources;
        True when the run has ended (its exit is on its way to the scheduler)."""
        self.aborting = True
        await self._abort_controller()
        if self._done is not None:
            try:
                await asyncio.wait_for(self._done.wait(), timeout_s)
            except asyncio.TimeoutError:
                logger.warning("run of %s did not end %ss after abort", self.job_id, timeout_s)
        return self._done is not None and self._done.is_set()

    def kill(self) -> None:
        """Kill the run's Ray Train controller (its workers go with it), now or when it starts:
        for a run that an abort did not end (e.g. a controller still waiting for its workers)."""
        self.aborting = self.killing = True
        if self._controller is not None:
            ray.kill(self._controller, no_restart=True)

    async def attach_controller(self, controller: Any) -> None:
        """Ray Train's controller, from the lifecycle callback, so ``abort`` can reach it."""
        self._controller = controller
        if self.killing:
            ray.kill(controller, no_restart=True)
        elif self.aborting:
            await self._abort_controller()

    async def _abort_controller(self) -> None:
        if self._controller is None:
            return  # not started yet: attach_controller aborts it on arrival
        try:
            await self._controller.abort.remote()
        except ray.exceptions.RayActorError:
            pass  # abort ends the controller; its death is the answer

    async def placement_group_of(self) -> Any:
        """The run's placement group once reserved, None if the attempt ended first (the launcher's)."""
        await self.start()
        assert self._done is not None
        waits = {asyncio.ensure_future(self._placed.wait()), asyncio.ensure_future(self._done.wait())}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        return self.placement_group

    # -- called from Ray Train's controller -------------------------------------------------------
    async def on_placement_group(self, pg: Any) -> None:
        """A worker group reserved ``pg`` (a new one after each restart of the group)."""
        self.placement_group = pg
        self._placed.set()
        if self.killing:  # killed before this arrived: nothing will remove it now
            await asyncio.to_thread(raycompat.remove_placement_group, pg)

    async def on_started(self) -> None:
        self._emit(Started(self.job_id, self.attempt))

    async def on_report(self, metrics: dict[str, Any], checkpoint_path: str | None, at: float) -> bool:
        """Relay a report; True tells the controller to stop the run now (a pause)."""
        self.seq += 1
        self.last_checkpoint = checkpoint_path or self.last_checkpoint
        self._emit(Reported(self.job_id, self.attempt, self.seq, at, metrics, checkpoint_path, self.read_checkpoint))
        if checkpoint_path and self.checkpoint_at is not None and at >= self.checkpoint_at:
            self.checkpoint_at = None
        if checkpoint_path and self.pause_at is not None:
            self.stopped_for_pause = True
            if self.pause_told:
                # A cooperative loop returns by itself right after this report, and Ray Train sees
                # that at its next poll, sooner than an abort the controller asks of itself takes
                # to start (0.6-0.9 s measured on 2 cores); abort only if it lingers.
                asyncio.get_running_loop().call_later(COOPERATIVE_STOP_S, self._abort_if_running)
                return False
            # A loop that uses the hook but saved this checkpoint before it heard the pause (its own
            # schedule) runs on until an abort lands, and would redo those steps: it hears the pause
            # at its next call, saves again and returns. The pause deadline bounds the wait.
            return not self.hook_seen
        return False

    def _abort_if_running(self) -> None:
        if self._done is not None and not self._done.is_set():
            self._tasks.append(asyncio.ensure_future(self._abort_controller()))

    # -- internals --------------------------------------------------------------------------------
    async def _run(self) -> None:
        event: dict[str, Any] = {}
        opened = logs.open_log(join_path(self.run_root, self.run_name), "runner")
        handler = logs.AttemptLog(self.name, *opened) if opened else None
        logs.route(handler, attach=True)
        logs.ATTEMPT.set(self.name)
        try:
            trainer = self._build_trainer()
            # fit() blocks for the whole run: in a thread of the host's pool (one per running
            # attempt), with this task's context so its log records find this attempt's file.
            fit = functools.partial(contextvars.copy_context().run, trainer.fit)
            result = await asyncio.get_running_loop().run_in_executor(self._pool, fit)
            final = checkpoint_uri(result.checkpoint) if result.checkpoint is not None else None
            event.update(outcome="paused" if self.stopped_for_pause else "completed", checkpoint_path=final)
        except BaseException as e:
            if self.stopped_for_pause:
                event.update(outcome="paused")  # our own abort, right after the checkpoint
            elif self.aborting:
                event.update(outcome="stopped")  # the scheduler stopped it and already said why
            else:
                logger.exception("attempt %s of %s failed", self.attempt, self.job_id)
                event.update(outcome="failed", error=describe_failure(e), failure=failure_kind(e))
        finally:
            logs.route(handler, attach=False)
            if handler is not None:
                handler.close()
        if self.placement_group is not None:
            # A controller that ended well removed it already (removing again is harmless); one
            # that was killed or died did not, and its job's lifetime would keep it.
            await asyncio.to_thread(raycompat.remove_placement_group, self.placement_group)
        if self.exit_event is None:  # not already ended when its workers were released
            await self._exit(**event)

    async def _exit(self, **event: Any) -> None:
        """Send the attempt's exit (once), and mark it done once the scheduler has it."""
        self.exit_event = Exited(self.job_id, self.attempt, at=time.time(), **event)
        self._emit(self.exit_event)
        assert self._outbox is not None and self._done is not None
        await self._outbox.join()
        self._done.set()

    async def on_workers_released(self) -> None:
        """Ray Train shut the run's workers down and removed its placement group (a callback from
        its controller). A run being stopped, for a pause or by the scheduler, has ended for
        trainq here: its exit goes out now, not when ``fit()`` returns. Its controller takes up to
        seconds more to go (an aborted one exits its process, and ``fit()`` learns of that only
        through Ray's actor-death notice), and the next job waits for this one's room. The abort
        after it makes sure nothing restarts the workers (it does nothing to a finished run)."""
        if self.exit_event is not None or not (self.stopped_for_pause or self.aborting):
            return
        paused = self.stopped_for_pause
        ended = self._exit(outcome="paused" if paused else "stopped",
                           checkpoint_path=self.last_checkpoint if paused else None)
        self._tasks.append(asyncio.ensure_future(self._abort_controller()))
        await ended

    def _build_trainer(self) -> Any:
        from ray.train import FailureConfig, RunConfig, ScalingConfig

        spec = self.spec
        entrypoint = spec.entrypoint or workloads.entrypoint_of(str(spec.workload))
        attempt_dir = join_path(self.run_root, self.run_name)
        train_loop = train_helpers.wrap(entrypoint, self.name, self.resume_from, attempt_dir, host=self.host)
        return raycompat.trainer_class()(
            train_loop,
            train_loop_config=dict(spec.config),
            backend_config=raycompat.lazy_torch_config(spec.use_gpu) if spec.backend == "torch" else None,
            # The scheduler hands each attempt the one type admission chose and, for an elastic job,
            # the one size (spec narrowed at launch): Ray Train's own elastic sizing is never used.
            scaling_config=ScalingConfig(num_workers=spec.min_workers, use_gpu=spec.use_gpu,
                                         resources_per_worker=spec.resources_per_worker,
                                         accelerator_type=next(iter(spec.accelerator_types()), None),
                                         placement_strategy=spec.placement_strategy),
            run_config=RunConfig(
                name=self.run_name,
                storage_path=self.run_root,
                # A drain is trainq's to handle (core.drains: move the job at a checkpoint, to
                # wherever its gang fits, in its place in the queue): Ray Train's own restart in
                # place would bypass the queue, so a preemption it sees ends the run instead.
                failure_config=FailureConfig(max_failures=spec.max_failures, max_preemption_failures=0),
                worker_runtime_env=self.worker_env,
                callbacks=[ReportRelay(self.name, self.host), raycompat.lifecycle_callback(
                    functools.partial(tell_controller, self.host, self.name),
                    functools.partial(tell_started, self.host, self.name),
                    functools.partial(tell_released, self.host, self.name),
                    functools.partial(tell_placement_group, self.host, self.name))],
            ),
        )

    def _emit(self, event: RunnerEvent) -> None:
        assert self._outbox is not None
        self._outbox.put_nowait(event)

    async def _pump(self) -> None:
        """Deliver events to the scheduler one at a time, in order, until each is accepted."""
        assert self._outbox is not None
        while True:
            event = await self._outbox.get()
            await self._deliver(event)
            self._outbox.task_done()

    def follow(self, scheduler: str) -> None:
        """Deliver events to the scheduler actor named ``scheduler`` from now on (the one waiting
        is sent there too)."""
        self.scheduler_name, self._scheduler = scheduler, None

    async def _deliver(self, event: RunnerEvent) -> None:
        delay_s = 0.1
        while True:
            try:
                if self._scheduler is None:
                    self._scheduler = ray.get_actor(self.scheduler_name, namespace=NAMESPACE)
                await self._scheduler.runner_event.remote(event)
                return
            except (ray.exceptions.RayActorError, ValueError) as e:
                # The scheduler is restarting (or briefly unnamed); the event waits for it.
                logger.warning("scheduler unreachable (%s); retrying in %.1fs", e, delay_s)
                self._scheduler = None
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, NotReady):  # a standby, about to take over: the event waits
                    logger.warning("scheduler not ready (%s); retrying in %.1fs", e.cause, delay_s)
                else:
                    # The scheduler rejected the event: a bug, not an outage. Retrying cannot help.
                    logger.exception("scheduler rejected event %s", event)
                    return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)
