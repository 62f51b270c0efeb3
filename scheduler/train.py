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
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import NAMESPACE, RUNNER_HOST_NAME

#: Set by the trainq wrapper in each worker process: the actor name of this attempt's runner.
RUNNER_ENV = "TRAINQ_RUNNER"
#: the name of the runner host that carries it (one of several: ``config.runner_host_name``)
RUNNER_HOST_ENV = "TRAINQ_RUNNER_HOST"
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
    (``state``: ``(pause asked, checkpoint-now generation)``), and the ranks take rank 0's word
    only at *sync calls*: every rank counts its calls (the hook is a collective call, made as
    often on every rank), and each sync's message also says how many calls until the next one,
    chosen by rank 0 so syncs come about every ``target_s``. Between syncs a call costs a counter.

    The messages travel a little ahead of need: ``lead`` calls before sync ``m + 1`` (as many as
    take ``LEAD_S``, at least one; sync ``m``'s message says how many, so every rank posts at the
    same call) rank 0 decides message ``m + 1`` from its fresh copy of the state and every rank
    *posts* it (rank 0 sends, the others start receiving); at sync ``m + 1`` they take it, arrived
    meanwhile. So no rank waits on a broadcast's latency except once, at the first call, and a
    request lands within about ``target_s`` + ``LEAD_S`` + the state poll + one step (0.4 s,
    0.05 s and 0.1 s by default). Until 2026-12-04 the message was decided at sync ``m`` itself,
    which cost one more interval (0.4 s) of delay for nothing: posting it later costs the same.

    A pause, once agreed, stays: every later call answers ``(True, True)`` and nothing more is
    sent, until the loop returns. A checkpoint-now is answered once. Pure: the broadcast, the
    state and the clock are given, so the protocol is tested with threads standing in for ranks.
    ``post(index, payload)`` starts broadcast number ``index`` (rank 0's payload; ``None``
    elsewhere) and returns a function that waits for it and returns rank 0's payload.
    """

    #: how long before a sync its message is decided and sent: time for it to arrive (ms on a node)
    LEAD_S = 0.05

    def __init__(self, rank: int, world_size: int, post: Callable[[int, Any], Callable[[], Any]],
                 state: Callable[[], tuple[bool, int]], clock: Callable[[], float],
                 told: Callable[[bool, int], None] | None = None, target_s: float = 0.4) -> None:
        self.rank, self.world_size = rank, world_size
        self._post, self._state, self._clock, self._told = post, state, clock, told
        self.target_s = target_s
        self.calls = 0
        self.next_sync = 0
        self.next_post = 0  # the call at which the next sync's message is sent (<= next_sync)
        self.syncs = 0
        self.pause = False
        self._next: Callable[[], Any] | None = None  # the next sync's message, already on its way
        self._acted_gen = 0  # rank 0: the newest checkpoint-now already answered
        self._sent_gen = 0  # rank 0: the checkpoint-now generation the message on its way saw
        self._last_sync: tuple[int, float] | None = None  # rank 0: (call, time) of the last decision

    def ask(self) -> tuple[bool, bool]:
        """``(pause, checkpoint)``, the same on every rank at the same call."""
        n = self.calls
        self.calls = n + 1
        if n < self.next_post:  # most calls end here: a counter and a comparison
            return False, False
        if self.pause:
            return True, True
        if self.world_size == 1:
            pause, checkpoint, _, _ = self._decide(n)  # nobody to agree with: rank 0's copy, every call
            self._tell(pause, checkpoint)
        else:
            if n < self.next_sync:  # ``lead`` calls before the sync: its message, decided now, goes out
                self._next, self.next_post = self._send(n), self.next_sync
                return False, False
            if self._next is None:  # the first sync: nothing was sent ahead, so this one waits
                self._next = self._send(n)
            pause, checkpoint, interval, lead = self._next()
            self.syncs += 1
            if self.rank == 0:
                self._tell(pause, checkpoint)
            self.next_sync = n + interval
            self.next_post = max(n + 1, self.next_sync - lead)
            # Every rank holds the same message, so all stop sending together after a pause.
            self._next = None
            if not pause and self.next_post >= self.next_sync:  # a sync at every call: send it now
                self._next, self.next_post = self._send(n), self.next_sync
        if pause:
            self.pause, self.next_sync, self.next_post = True, 0, 0  # from now on every call answers it
        return pause, pause or checkpoint

    def _send(self, n: int) -> Callable[[], Any]:
        return self._post(self.syncs, self._decide(n) if self.rank == 0 else None)

    def _decide(self, n: int) -> tuple[bool, bool, int, int]:
        """Rank 0's next message: ``(pause, checkpoint, interval, lead)`` in calls."""
        pause, gen = self._state()
        checkpoint = gen > self._acted_gen
        self._acted_gen = max(self._acted_gen, gen)
        now = self._clock()
        interval = lead = 1
        if self._last_sync is not None and n > self._last_sync[0]:
            per_call = max(now - self._last_sync[1], 1e-9) / (n - self._last_sync[0])
            interval = max(1, min(100_000, int(self.target_s / per_call)))
            lead = max(1, min(interval, math.ceil(self.LEAD_S / per_call)))
        if self._last_sync is None or n > self._last_sync[0]:
            self._last_sync = (n, now)
        self._sent_gen = gen
        return pause, checkpoint, interval, lead

    def _tell(self, pause: bool, checkpoint: bool) -> None:
        # Rank 0, as the ranks act on a message: the runner learns the loop heard it (a paused loop
        # returns by itself right after its checkpoint). Not earlier, when the message was decided:
        # until the ranks take it, the loop still runs as if nothing was asked.
        if (pause or checkpoint) and self._told is not None:
            self._told(pause, self._sent_gen)


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
        _hook = (name, HookSync(rank, world, _poster(host, name, rank, world),
                                poller.get if poller else _no_state, time.monotonic,
                                told=lambda pause, gen: host.hook_told.remote(name, pause, gen)))
    return _hook[1].ask()


def _poster(host: Any, name: str, rank: int, world: int) -> Callable[[int, Any], Callable[[], Any]]:
    """How rank 0's hook messages reach every rank (``HookSync``'s ``post``), sent a sync ahead.

    When the job already runs a torch process group (``backend: torch``), as an asynchronous
    broadcast of four integers over a gloo group of our own made from it: gloo's own threads
    carry it while the loop trains, and a group of our own keeps our messages out of the job's
    NCCL stream. It is made at the first sync, which every rank reaches at the same call, as
    ``new_group`` requires. Without a process group (``backend: none``), torch is never imported
    here: rank 0 leaves each message at the runner (``RunnerHost.hook_publish``) and the other
    ranks ask for it when it is sent and take the answer at the next sync. Not Ray Train's
    ``broadcast_from_rank_zero``: it blocks (~10 ms on 2 workers), and run in a thread it could
    cross ``ray.train.report``'s own collective, which shares its sequence numbers.
    """
    import ray

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        import torch

        group: list[Any] = []

        def post_gloo(index: int, payload: Any) -> Callable[[], Any]:
            if not group:
                group.append(dist.new_group(backend="gloo"))
            box = torch.tensor(payload if payload is not None else (0, 0, 0, 0), dtype=torch.int64)
            work = dist.broadcast(box, src=0, group=group[0], async_op=True)

            def take() -> Any:
                work.wait()
                pause, checkpoint, interval, lead = box.tolist()
                return bool(pause), bool(checkpoint), int(interval), int(lead)

            return take

        return post_gloo

    def post_runner(index: int, payload: Any) -> Callable[[], Any]:
        if rank == 0:
            host.hook_publish.remote(name, index, payload, world - 1)
            return lambda: payload
        ref = host.hook_message.remote(name, index)
        return lambda: tuple(ray.get(ref))

    return post_runner


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

        _runner = (name, ray.get_actor(os.environ.get(RUNNER_HOST_ENV) or RUNNER_HOST_NAME, namespace=NAMESPACE))
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


def wrap(entrypoint: str, runner: str, resume_from: str | None, attempt_dir: str | None = None,
         host: str = RUNNER_HOST_NAME) -> Callable[[dict[str, Any]], Any]:
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
        os.environ[RUNNER_HOST_ENV] = host
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
