"""What runs in Ray Train's controller for a trainq run: the callbacks that tell the attempt's
runner (on its runner host, found by name) of each report and of the run's moments.

Kept apart from ``scheduler.runner``: the controller imports this module, not the runner's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.train import UserCallback

from . import raycompat
from .config import NAMESPACE, RUNNER_HOST_NAME

logger = logging.getLogger("trainq.runner")


def checkpoint_uri(checkpoint: Any) -> str:
    """A checkpoint's location as a path (local) or a URI (``s3://...``)."""
    kind = getattr(checkpoint.filesystem, "type_name", "local")
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


class ReportRelay(UserCallback):
    """Runs in Ray Train's controller: hands each report to the runner, aborts when told."""

    def __init__(self, runner: str, host: str = RUNNER_HOST_NAME) -> None:
        self.runner, self.host = runner, host
        self._handle: Any = None  # looked up in the controller on the first report

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if self._handle is None:
            self._handle = host_handle(self.host)
        path = checkpoint_uri(checkpoint) if checkpoint is not None else None
        stop = ray.get(self._handle.on_report.remote(self.runner, metrics[0] if metrics else {}, path, time.time()))
        if stop:
            # The checkpoint is persisted and registered; end the run here, gracefully.
            raycompat.current_controller().abort.remote()


def host_handle(host: str = RUNNER_HOST_NAME) -> Any:
    """A runner host, by name (from the scheduler, Ray Train's controller or a worker)."""
    return ray.get_actor(host, namespace=NAMESPACE)


def tell_controller(host: str, runner: str, controller: Any) -> None:
    """The controller's handle, so the runner can ask it to abort (waited for)."""
    ray.get(host_handle(host).attach_controller.remote(runner, controller))


def tell_started(host: str, runner: str) -> None:
    """The workers train."""
    host_handle(host).on_started.remote(runner)


def tell_released(host: str, runner: str) -> None:
    """The worker group was shut down or aborted: its placement group is removed."""
    host_handle(host).on_workers_released.remote(runner)


def tell_placement_group(host: str, runner: str, pg: Any) -> None:
    """The worker group's placement group, for the runner to remove should the controller die
    (waited for, as Ray Train told its own cleaner: the runner knows it before the workers train)."""
    try:
        ray.get(host_handle(host).on_placement_group.remote(runner, pg))
    except Exception as e:  # noqa: BLE001 - as Ray Train's own cleaner: the run goes on regardless
        logger.warning("could not tell %s of its placement group %s: %s", runner, getattr(pg, "id", pg), e)
