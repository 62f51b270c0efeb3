"""What an exception out of ``fit()`` means: a message naming what really failed, and whether the
train function raised (``user``) or the infrastructure was lost (``infrastructure``)."""

from __future__ import annotations

import ray

from .policy.failure import INFRASTRUCTURE, USER


def describe_failure(exc: BaseException) -> str:
    """``Type: message`` of what really failed, looking through Ray Train's wrappers."""
    worker_failures = getattr(exc, "worker_failures", None)
    if worker_failures:
        rank, err = min(worker_failures.items())
        return f"{_describe(err)} (worker rank {rank})"
    controller_failure = getattr(exc, "controller_failure", None)
    if controller_failure is not None:
        return _describe(controller_failure)
    return _describe(exc)


def failure_kind(exc: BaseException) -> str:
    """``user`` when the train function raised; ``infrastructure`` when a node, a worker process
    or Ray Train's controller was lost (``policy.failure`` requeues those)."""
    from ray.train.v2._internal.exceptions import (
        InsufficientClusterResourcesError,
        WorkerGroupStartupFailedError,
        WorkerGroupStartupTimeoutError,
        WorkerHealthCheckFailedError,
        WorkerHealthCheckTimeoutError,
    )
    from ray.train.v2.api.exceptions import PreemptionError

    # PreemptionError: Ray Train saw the node drain and tore the run down at the deadline before
    # trainq stopped it (runner.py gives Ray Train no preemption retries): the node's fault.
    lost = (PreemptionError, WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError,
            WorkerGroupStartupTimeoutError, WorkerGroupStartupFailedError, InsufficientClusterResourcesError,
            ray.exceptions.RayActorError, ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError)
    worker_failures = getattr(exc, "worker_failures", None)
    if worker_failures:
        # Ray Train unwraps the train function's own exceptions; a dead worker (or its node) shows
        # as a failed health check. Peers of a dead rank may raise collective errors at the same
        # time, so any lost worker makes the whole failure infrastructure.
        return INFRASTRUCTURE if any(isinstance(e, lost) for e in worker_failures.values()) else USER
    controller_failure = getattr(exc, "controller_failure", None)
    if controller_failure is not None:
        return INFRASTRUCTURE if isinstance(controller_failure, lost) else USER
    return INFRASTRUCTURE if isinstance(exc, lost) else USER  # e.g. the controller itself died


def _describe(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[-1] if message else ''}".strip()
