"""Every use of Ray's private APIs, in one small module.

Each function here has a test in ``tests/e2e/test_raycompat.py`` that runs against the installed
Ray, so an upgrade that breaks one fails loudly there instead of quietly in a user's run.
Tested with Ray 2.60.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def seed_checkpoint(path: str | None) -> None:
    """Make plain ``ray.train.get_checkpoint()`` return ``path`` in this worker.

    Ray Train V2 has no "initial checkpoint" option, and a fresh run name starts empty. Each
    trainq attempt is a fresh run, so its wrapper seeds the worker's train context with the
    checkpoint trainq chose. A checkpoint Ray already has for this run (a worker-group retry
    after a report) wins, as it would without trainq.
    """
    if not path:
        return
    from ray.train import Checkpoint
    from ray.train.v2._internal.execution.context import get_train_context

    context = get_train_context()
    with context.report_order_condition:
        if context.checkpoint is None:
            context.checkpoint = Checkpoint(path)


def on_checkpoint_read(callback: Callable[[], None]) -> None:
    """Call ``callback`` (once) the first time this worker's train function calls
    ``ray.train.get_checkpoint()``; trainq learns from it whether a job can resume at all.

    ``ray.train.get_checkpoint()`` asks the worker's train-function utilities object, so its
    method is wrapped on that instance for this process.
    """
    from ray.train.v2._internal.execution.train_fn_utils import get_train_fn_utils

    utils = get_train_fn_utils()
    original = type(utils).get_checkpoint.__get__(utils)
    told = False

    def get_checkpoint() -> Any:
        nonlocal told
        if not told:
            told = True
            callback()
        return original()

    utils.get_checkpoint = get_checkpoint  # type: ignore[method-assign]


def upload_local_dirs(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """Upload a local ``working_dir``/``py_modules`` to the cluster and return URIs instead.

    Ray accepts local folders only at the job level; an actor's ``runtime_env`` needs URIs.
    This is what ``ray job submit`` does. Content-addressed: the same folder uploads once.
    """
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    env = dict(runtime_env)
    env = upload_working_dir_if_needed(env, include_gitignore=True, logger=logger)
    env = upload_py_modules_if_needed(env, include_gitignore=True, logger=logger)
    return env


def lifecycle_callback(on_controller_start: Callable[[Any], None], on_training_start: Callable[[], None],
                       on_workers_released: Callable[[], None] | None = None,
                       on_placement_group: Callable[[Any], None] | None = None) -> Any:
    """A Ray Train callback that runs in the controller and reports four moments.

    ``on_controller_start(controller_handle)`` when the controller starts (so the runner can
    ask it to abort later), ``on_placement_group(pg)`` when a worker group has reserved its
    placement group (so the runner can remove it if the controller dies without doing so:
    ``trainer_class``), ``on_training_start()`` once the workers train, and
    ``on_workers_released()`` each time the worker group was shut down or aborted (its workers
    killed, its placement group removed: the run's resources are Ray's again). Ray has no public
    hooks for these; the controller and worker-group callbacks are internal.
    """
    from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback

    class _Lifecycle(ControllerCallback, WorkerGroupCallback):
        def after_controller_start(self, train_run_context: Any) -> None:
            on_controller_start(current_controller())

        def after_worker_group_start(self, worker_group: Any) -> None:
            if on_placement_group is not None:
                on_placement_group(worker_group.get_worker_group_state().placement_group_handle.placement_group)

        def after_worker_group_training_start(self, worker_group: Any) -> None:
            on_training_start()

        def after_worker_group_shutdown(self, worker_group_context: Any) -> None:
            if on_workers_released is not None:
                on_workers_released()

        def after_worker_group_abort(self, worker_group_context: Any) -> None:
            if on_workers_released is not None:
                on_workers_released()

    return _Lifecycle()


def current_controller() -> Any:
    """The handle of the Ray Train controller actor this code runs in (from a callback)."""
    import ray

    return ray.get_runtime_context().current_actor


def available_resources_per_node() -> dict[str, dict[str, float]]:
    """What each live node has free right now, by node id (Ray has no public per-node call)."""
    from ray._private.state import available_resources_per_node as per_node

    return {node_id: dict(free) for node_id, free in per_node().items()}


def starts_local_ray(address: str | None) -> bool:
    """Whether ``ray.init(address=...)`` would start a new local Ray in this process (an
    embedded Ray that ends with it) rather than connect to a running cluster."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(address) is None


def lazy_torch_config(use_gpu: bool) -> Any:
    """Ray Train's ``TorchConfig`` without importing torch where the trainer is built.

    ``TorchTrainer`` and ``TorchConfig`` import torch at import time (hundreds of MB); trainq's
    runner host only builds trainers, so it hands Ray Train this stand-in instead: the same
    fields, and the real backend (which needs torch) is looked up only where it runs, in Ray
    Train's controller and workers. Chosen as ``TorchTrainer`` chooses: nccl with GPUs, else gloo.
    """
    from dataclasses import dataclass

    from ray.train.backend import BackendConfig
    from ray.train.v2._internal.util import TrainingFramework

    @dataclass
    class LazyTorchConfig(BackendConfig):
        backend: str | None = None
        init_method: str = "env"
        timeout_s: int = 1800

        def _real(self) -> Any:
            from ray.train.torch.config import TorchConfig

            return TorchConfig(backend=self.backend, init_method=self.init_method, timeout_s=self.timeout_s)

        @property
        def backend_cls(self) -> Any:
            return self._real().backend_cls

        @property
        def train_func_context(self) -> Any:
            return self._real().train_func_context

        @property
        def framework(self) -> Any:
            return TrainingFramework.TORCH

        def to_dict(self) -> dict[str, Any]:
            return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s}

    # Defined in a function so importing raycompat never imports Ray Train; pickled by value
    # (cloudpickle), so the controller needs no trainq-specific class on its path either.
    return LazyTorchConfig(backend="nccl" if use_gpu else "gloo")


def trainer_class() -> type:
    """Ray Train's ``DataParallelTrainer``, less two helper actors each run would start.

    - Ray Train adds its datasets callback to every run: one more actor per run (a
      ``DatasetManager``, about 200 MB resident on the head node, started and stopped with the
      run) and a copy of Ray Data's context pushed to every worker, even when no dataset is given.
      trainq's specs never pass datasets, so its runs leave that callback out (with datasets the
      callback stays).
    - Its placement group cleaner: a detached actor per run on the head node (about 115 MB
      resident) that asks Ray's state API every second whether the controller still lives, to
      remove the run's placement group if the controller dies without doing so (a placement group
      outlives its creator while the creator's job lives). trainq does that itself: the runner
      removes its attempt's placement group once ``fit()`` has ended, and the launcher removes
      those of a runner host that died (``lifecycle_callback``'s ``on_placement_group``).
    """
    from ray.train.v2._internal.callbacks import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    class Trainer(DataParallelTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            left_out = (PlacementGroupCleanerCallback,) if self.datasets else (PlacementGroupCleanerCallback,
                                                                              DatasetsCallback)
            return [c for c in super()._create_default_callbacks() if not isinstance(c, left_out)]

    return Trainer


def remove_placement_group(pg: Any) -> None:
    """Remove a run's placement group (``ray.util.placement_group``'s handle); nothing when Ray has
    removed it already (removing twice is harmless) or it cannot be reached (logged)."""
    from ray.util.placement_group import remove_placement_group as remove

    try:
        remove(pg)
    except Exception as e:  # noqa: BLE001 - a cleanup: the run is over either way
        logger.warning("could not remove placement group %s: %s", getattr(pg, "id", pg), e)


def draining_nodes() -> dict[str, float | None]:
    """The nodes Ray is draining now: ``{node_id_hex: deadline (epoch seconds) or None}``.

    Private (``ray._private.state``), the same call Ray Train's ``PreemptionWatcher`` and Ray Data
    poll; Ray reports 0 for a drain without a deadline. It answers deadlines only: Ray keeps a
    drain's reason in the GCS but lists it nowhere in Python.
    """
    from ray._private.state import state

    return {node_id: (ms / 1000.0 if ms else None) for node_id, ms in (state.get_draining_nodes() or {}).items()}


#: the reasons Ray's DrainNode call takes, by the short names trainq shows
DRAIN_REASONS = {"preemption": "DRAIN_NODE_REASON_PREEMPTION", "idle": "DRAIN_NODE_REASON_IDLE_TERMINATION"}


def drain_node(node_id: str, reason: str, message: str, deadline_at: float | None) -> tuple[bool, str]:
    """Ask Ray's GCS to drain ``node_id`` (what ``ray drain-node`` and the autoscaler call).

    ``reason`` is a key of ``DRAIN_REASONS``; ``deadline_at`` in epoch seconds (None: none).
    Returns (accepted, Ray's rejection message). Ray rejects an idle-termination drain of a node
    that is not idle; a preemption drain is always accepted. It does not kill the node.
    """
    import ray
    from ray.core.generated import autoscaler_pb2

    client = ray._raylet.GcsClient(address=ray.get_runtime_context().gcs_address)
    accepted, rejection = client.drain_node(node_id, autoscaler_pb2.DrainNodeReason.Value(DRAIN_REASONS[reason]),
                                            message, int(deadline_at * 1000) if deadline_at else 0)
    return bool(accepted), str(rejection or "")


def train_run_nodes(run_names: set[str]) -> dict[str, set[str]]:
    """The nodes the workers of each named Ray Train run's latest attempt are on, by run name.

    Read from Ray Train's state actor (what the dashboard's Train view shows; trainq turns its
    state tracking on for every run). Private and one round trip, so trainq asks only while a
    node drains or someone lists nodes. A run not (yet) known there is absent.
    """
    import ray
    from ray.train.v2._internal.state.state_actor import get_state_actor

    actor = get_state_actor()
    if actor is None or not run_names:
        return {}
    runs = ray.get(actor.get_train_runs.remote(), timeout=30)
    ids = {run.id: run.name for run in runs.values() if run.name in run_names}
    attempts = ray.get(actor.get_train_run_attempts.remote(), timeout=30)
    found: dict[str, set[str]] = {}
    for run_id, name in ids.items():
        latest = list(attempts.get(run_id, {}).values())[-1:]
        if latest and latest[0].end_time_ns is None:
            found[name] = {w.node_id for w in latest[0].workers}
    return found
