"""Helpers for train functions that run under trainq (all optional).

A plain Ray Train function works unchanged: it is paused right after its next checkpoint
report and, on resume, ``ray.train.get_checkpoint()`` returns the checkpoint trainq recorded.
A function that wants a pause (or a preemption) to lose nothing, and that can save a
checkpoint when asked (``trainq checkpoint JOB``), uses the hook each step::

    for step in range(start, total):
        loss = train_one_step()
        if scheduler.train.should_checkpoint() or step % 100 == 99:
            ray.train.report({"step": step, "loss": loss}, checkpoint=save(step))
            if scheduler.train.pause_requested():
                return      # paused right after that checkpoint: nothing is redone

``should_checkpoint()`` is true on every rank when a pause or a checkpoint was asked for;
``pause_requested()`` only for a pause (asked right after the checkpoint, it costs nothing on
other steps). Both are collective: every rank calls them the same number of times and all
ranks get the same answer at the same call, so they act together (``HookSync`` says how that
stays nearly free: no call to the runner and no broadcast on most steps).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import NAMESPACE, RUNNER_HOST_NAME

#: Set by the trainq wrapper in each worker process: the actor name of this attempt's runner.
RUNNER_ENV = "TRAINQ_RUNNER"
_runner: tuple[str, Any] | None = None  # (name, handle): a reused process must not ask an old runner


def pause_requested() -> bool:
    """True on every rank when trainq asked this run to pause. A collective call.

    Every rank gets the same answer at the same call (``HookSync``); call it the same number of
    times on every rank. Outside trainq it returns False.
    """
    return _ask()[0]


def should_checkpoint() -> bool:
    """True on every rank when trainq asked for a checkpoint now: a pause or a checkpoint-now.

    A collective call, like ``pause_requested()``. After reporting that checkpoint, a loop
    asks ``pause_requested()`` to know whether to stop there or go on.
    """
    return _ask()[1]


class HookSync:
    """How the ranks agree on the hook's answers cheaply (one per worker process and attempt).

    Asking the runner and broadcasting at every step cost ~5 ms a call on 2 workers (more with
    more ranks). Instead, rank 0 keeps the runner's state fresh in a background thread
    (``state``: ``(pause asked, checkpoint-now generation)``), and the ranks exchange it with one
    broadcast only at *sync calls*: every rank counts its calls (the hook is a collective call,
    made as often on every rank), and each sync also carries how many calls until the next one,
    chosen by rank 0 so syncs come about every ``target_s``. Between syncs a call costs a counter.
    So all ranks always return the same answer at the same call, a request lands within about
    ``target_s`` + one step, and the broadcast's cost is spread over ``target_s`` of steps.

    A pause, once agreed, stays: every later call answers ``(True, True)`` with no broadcast,
    until the loop returns. A checkpoint-now is answered once. Pure: the broadcast, the state
    and the clock are given, so the protocol is tested with threads standing in for ranks.
    """

    def __init__(self, rank: int, world_size: int, broadcast: Callable[[Any], Any],
                 state: Callable[[], tuple[bool, int]], clock: Callable[[], float],
                 told: Callable[[bool, int], None] | None = None, target_s: float = 0.75) -> None:
        self.rank, self.world_size = rank, world_size
        self._broadcast, self._state, self._clock, self._told = broadcast, state, clock, told
        self.target_s = target_s
        self.calls = 0
        self.next_sync = 0
        self.syncs = 0
        self.pause = False
        self._acted_gen = 0  # rank 0: the newest checkpoint-now already answered
        self._last_sync: tuple[int, float] | None = None  # rank 0: (call, time) of the last sync

    def ask(self) -> tuple[bool, bool]:
        """``(pause, checkpoint)``, the same on every rank at the same call."""
        n = self.calls
        self.calls += 1
        if self.pause:
            return True, True
        if self.world_size > 1 and n < self.next_sync:
            return False, False
        payload = self._decide(n) if self.rank == 0 else None
        if self.world_size > 1:
            payload = self._broadcast(payload)
            self.syncs += 1
        pause, checkpoint, interval = payload
        self.next_sync = n + interval
        self.pause = pause
        return pause, pause or checkpoint

    def _decide(self, n: int) -> tuple[bool, bool, int]:
        pause, gen = self._state()
        checkpoint = gen > self._acted_gen
        self._acted_gen = max(self._acted_gen, gen)
        now = self._clock()
        interval = 1
        if self._last_sync is not None and n > self._last_sync[0]:
            per_call = max(now - self._last_sync[1], 1e-9) / (n - self._last_sync[0])
            interval = max(1, min(100_000, int(self.target_s / per_call)))
        self._last_sync = (n, now)
        if (pause or checkpoint) and self._told is not None:
            self._told(pause, gen)  # the runner learns the loop heard it (it will return by itself)
        return pause, checkpoint, interval


_hook: tuple[str, HookSync] | None = None  # (runner key, protocol): a reused process starts afresh


def _ask() -> tuple[bool, bool]:
    """``(pause, checkpoint)`` from this attempt's runner, the same on every rank."""
    global _hook
    import ray.train

    found = _runner_handle()
    if found is None:
        return False, False
    host, name = found
    if _hook is None or _hook[0] != name:
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        poller = _StatePoller(host, name) if rank == 0 else None
        _hook = (name, HookSync(rank, world, _broadcaster(), poller.get if poller else _no_state, time.monotonic,
                                told=lambda pause, gen: host.hook_told.remote(name, pause, gen)))
    return _hook[1].ask()


def _broadcaster() -> Callable[[Any], Any]:
    """How rank 0's answer reaches every rank at a sync call.

    When the job already runs a torch process group (``backend: torch``), over a gloo group of
    our own made from it: a broadcast there costs well under a millisecond, where Ray Train's
    ``broadcast_from_rank_zero`` (an actor call per rank through its synchronization actor)
    costs about 10 ms on 2 workers. A group of our own keeps our messages out of the job's
    NCCL stream; it is made at the first sync call, which every rank makes at the same point,
    as ``new_group`` requires. Without a process group (``backend: none``), torch is never
    imported here and Ray Train's broadcast is used.
    """
    group: list[Any] = []

    def broadcast(payload: Any) -> Any:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            if not group:
                group.append(dist.new_group(backend="gloo"))
            box = [payload]
            dist.broadcast_object_list(box, src=0, group=group[0])
            return tuple(box[0])
        from ray.train.collective import broadcast_from_rank_zero

        return tuple(broadcast_from_rank_zero(payload))

    return broadcast


def _no_state() -> tuple[bool, int]:
    return False, 0


class _StatePoller:
    """Rank 0's copy of the runner's hook state, refreshed every ``POLL_S`` by a daemon thread
    (the training loop never waits on the runner). The first read waits for a first answer."""

    POLL_S = 0.1

    def __init__(self, host: Any, name: str) -> None:
        import ray

        self._host, self._name = host, name
        self._state: tuple[bool, int] = tuple(ray.get(host.hook_state.remote(name)))  # type: ignore[assignment]
        threading.Thread(target=self._loop, name="trainq-hook", daemon=True).start()

    def _loop(self) -> None:
        import ray

        while True:
            time.sleep(self.POLL_S)
            try:
                self._state = tuple(ray.get(self._host.hook_state.remote(self._name), timeout=30))  # type: ignore[assignment]
            except Exception:  # noqa: BLE001 - the runner is gone (the run is ending); stop asking
                return

    def get(self) -> tuple[bool, int]:
        return self._state


def _runner_handle() -> Any:
    global _runner
    name = os.environ.get(RUNNER_ENV)
    if not name:
        return None
    if _runner is None or _runner[0] != name:
        import ray

        _runner = (name, ray.get_actor(RUNNER_HOST_NAME, namespace=NAMESPACE))
    return _runner[1], name


def _tell_checkpoint_read() -> None:
    import ray

    found = _runner_handle()
    if found is not None:
        host, name = found
        ray.get(host.on_checkpoint_read.remote(name))  # before this worker's next report


def load_entrypoint(entrypoint: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``, with an error that says what could not be found.

    Called only inside a training worker (see ``wrap``): user code never runs in trainq's
    scheduler or runner, nor in Ray Train's controller, all of which live on the head node.
    """
    module_name, _, func_name = entrypoint.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ImportError(f"cannot import module {module_name!r} of entrypoint {entrypoint!r}:"
                          f" {type(e).__name__}: {e} (is it in the job's runtime_env working_dir"
                          " or py_modules?)") from e
    try:
        return getattr(module, func_name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no function {func_name!r}") from None


def wrap(entrypoint: str, runner: str, resume_from: str | None,
         attempt_dir: str | None = None) -> Callable[[dict[str, Any]], Any]:
    """The train-loop function trainq hands to ``TorchTrainer``: trainq's code, no user code.

    It runs in every worker: it tells ``pause_requested()`` which runner to ask, makes
    ``ray.train.get_checkpoint()`` return ``resume_from`` when Ray has no checkpoint of its
    own for this run and tells the runner when the function asks for it (that is how trainq
    knows a job can resume at all), tees the worker's output into the attempt's logs, then
    imports the entrypoint (there, in the worker, with the job's runtime_env) and calls it as
    Ray would (with or without config). Only the entrypoint's name crosses the runner and the
    controller, so neither ever imports the user's module.
    """

    def trainq_train_loop(config: dict[str, Any]) -> Any:
        import ray.train

        from . import logs, raycompat

        if attempt_dir:
            logs.tee_output(attempt_dir, f"rank-{ray.train.get_context().get_world_rank()}")
        os.environ[RUNNER_ENV] = runner
        raycompat.seed_checkpoint(resume_from)
        raycompat.on_checkpoint_read(_tell_checkpoint_read)
        train_fn = load_entrypoint(entrypoint)
        takes_config = len(inspect.signature(train_fn).parameters) > 0
        try:
            return train_fn(config) if takes_config else train_fn()
        finally:
            logs.sync()  # object storage: the last lines, before Ray ends this worker

    trainq_train_loop.__name__ = entrypoint.rpartition(":")[2] or "train_loop"
    return trainq_train_loop
