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
ranks get the same answer (rank 0 asks the runner and broadcasts), so they act together.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

from .config import NAMESPACE, RUNNER_HOST_NAME

#: Set by the trainq wrapper in each worker process: the actor name of this attempt's runner.
RUNNER_ENV = "TRAINQ_RUNNER"
_runner: tuple[str, Any] | None = None  # (name, handle): a reused process must not ask an old runner


def pause_requested() -> bool:
    """True on every rank when trainq asked this run to pause. A collective call.

    Rank 0 asks this attempt's runner and broadcasts the answer, so every rank gets the same
    one; call it the same number of times on every rank. Outside trainq it returns False.
    """
    return _ask()[0]


def should_checkpoint() -> bool:
    """True on every rank when trainq asked for a checkpoint now: a pause or a checkpoint-now.

    A collective call, like ``pause_requested()``. After reporting that checkpoint, a loop
    asks ``pause_requested()`` to know whether to stop there or go on.
    """
    return _ask()[1]


def _ask() -> tuple[bool, bool]:
    """``(pause, checkpoint)`` from this attempt's runner, the same on every rank."""
    import ray
    import ray.train

    context = ray.train.get_context()
    answer = (False, False)
    if context.get_world_rank() == 0:
        found = _runner_handle()
        if found is not None:
            host, name = found
            pause, checkpoint = ray.get(host.hook.remote(name))
            answer = (bool(pause), bool(checkpoint))
    if context.get_world_size() > 1:
        from ray.train.collective import broadcast_from_rank_zero

        answer = tuple(broadcast_from_rank_zero(answer))  # type: ignore[assignment]
    return answer


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
