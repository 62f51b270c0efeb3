"""Helpers for train functions that run under trainq (all optional).

A plain Ray Train function works unchanged: it is paused right after its next checkpoint
report and, on resume, ``ray.train.get_checkpoint()`` returns the checkpoint trainq recorded.
A function that wants a pause to lose nothing checks ``pause_requested()`` each step::

    for step in range(start, total):
        loss = train_one_step()
        pause = scheduler.train.pause_requested()
        if pause or step % 100 == 0:
            ray.train.report({"step": step, "loss": loss}, checkpoint=save(step))
        if pause:
            return          # paused right after that checkpoint: nothing is redone

Every rank must call ``pause_requested()`` the same number of times; all ranks get the
same answer (rank 0 asks the runner and broadcasts), so they stop together.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from .config import NAMESPACE

#: Set by the trainq wrapper in each worker process: the actor name of this attempt's runner.
RUNNER_ENV = "TRAINQ_RUNNER"
_runner: tuple[str, Any] | None = None  # (name, handle): a reused process must not ask an old runner


def pause_requested() -> bool:
    """True on every rank when trainq asked this run to pause. A collective call.

    Rank 0 asks this attempt's runner and broadcasts the answer, so every rank gets the same
    one; call it the same number of times on every rank. Outside trainq it returns False.
    """
    import ray
    import ray.train

    context = ray.train.get_context()
    answer = False
    if context.get_world_rank() == 0:
        runner = _runner_handle()
        if runner is not None:
            answer = bool(ray.get(runner.pause_requested.remote()))
    if context.get_world_size() > 1:
        from ray.train.collective import broadcast_from_rank_zero

        answer = bool(broadcast_from_rank_zero(answer))
    return answer


def _runner_handle() -> Any:
    global _runner
    name = os.environ.get(RUNNER_ENV)
    if not name:
        return None
    if _runner is None or _runner[0] != name:
        import ray

        _runner = (name, ray.get_actor(name, namespace=NAMESPACE))
    return _runner[1]


def wrap(train_fn: Callable[..., Any], runner: str, resume_from: str | None,
         attempt_dir: str | None = None) -> Callable[[dict[str, Any]], Any]:
    """The train-loop function trainq hands to ``TorchTrainer``.

    It runs in every worker: it tells ``pause_requested()`` which runner to ask, makes
    ``ray.train.get_checkpoint()`` return ``resume_from`` when Ray has no checkpoint of its
    own for this run, tees the worker's output into the attempt's logs, then calls the
    user's function as Ray would (with or without config).
    """
    takes_config = len(inspect.signature(train_fn).parameters) > 0

    def trainq_train_loop(config: dict[str, Any]) -> Any:
        import ray.train

        from . import logs, raycompat

        if attempt_dir:
            logs.tee_output(attempt_dir, f"rank-{ray.train.get_context().get_world_rank()}")
        os.environ[RUNNER_ENV] = runner
        raycompat.seed_checkpoint(resume_from)
        return train_fn(config) if takes_config else train_fn()

    trainq_train_loop.__name__ = getattr(train_fn, "__name__", "train_loop")
    return trainq_train_loop
