"""Canaries for the Ray internals trainq uses (scheduler/raycompat.py), on the installed Ray.

The end-to-end tests exercise them for real; these say which one a Ray upgrade broke.
"""

from __future__ import annotations

import inspect
import os

import pytest


def test_train_context_still_holds_the_checkpoint_we_seed() -> None:
    from ray.train.v2._internal.execution.context import TrainContext, get_train_context

    fields = {f.name for f in __import__("dataclasses").fields(TrainContext)}
    assert {"checkpoint", "report_order_condition"} <= fields
    assert callable(get_train_context)


def test_internal_callback_hooks_exist_and_are_called_by_the_controller() -> None:
    from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
    from ray.train.v2._internal.execution.controller import controller
    from ray.train.v2._internal.execution.worker_group import worker_group

    assert "after_controller_start" in vars(ControllerCallback)
    assert "after_worker_group_training_start" in vars(WorkerGroupCallback)
    assert "after_controller_start" in inspect.getsource(controller)
    assert "after_worker_group_training_start" in inspect.getsource(worker_group)
    assert inspect.iscoroutinefunction(controller.TrainController.abort)


def test_lifecycle_callback_is_accepted_by_run_config() -> None:
    from ray.train import RunConfig

    from scheduler import raycompat

    RunConfig(callbacks=[raycompat.lifecycle_callback(lambda c: None, lambda: None)])


@pytest.mark.ray
def test_upload_local_dirs_returns_a_cluster_uri(ray_cluster, tmp_path) -> None:
    from scheduler import raycompat

    (tmp_path / "mod.py").write_text("X = 1\n")
    env = raycompat.upload_local_dirs({"working_dir": str(tmp_path), "env_vars": {"A": "1"}})
    assert env["working_dir"].startswith("gcs://_ray_pkg_") and env["env_vars"] == {"A": "1"}
    again = raycompat.upload_local_dirs({"working_dir": str(tmp_path)})
    assert again["working_dir"] == env["working_dir"]  # content-addressed


def test_report_poll_variable_is_propagated_to_the_controller() -> None:
    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE

    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" in ENV_VARS_TO_PROPAGATE
    assert os.environ.get("RAY_TRAIN_V2_ENABLED", "1") == "1"


def test_failures_are_told_apart_the_way_ray_train_reports_them() -> None:
    """A Ray upgrade that changes how Ray Train reports worker failures must fail here."""
    import ray
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError, WorkerHealthCheckFailedError

    from scheduler.run_failures import failure_kind

    died = WorkerHealthCheckFailedError("worker 1 died", failure=ray.exceptions.ActorDiedError())
    assert failure_kind(WorkerGroupError("boom", {0: RuntimeError("boom at step 5")})) == "user"
    assert failure_kind(WorkerGroupError("lost", {0: RuntimeError("gloo: peer gone"), 1: died})) == "infrastructure"
    assert failure_kind(ControllerError(WorkerGroupStartupTimeoutError(2))) == "infrastructure"
    assert failure_kind(ControllerError(ValueError("a bad callback"))) == "user"
    assert failure_kind(ray.exceptions.ActorDiedError()) == "infrastructure"
    assert failure_kind(ImportError("no module")) == "user"


def test_runs_start_no_placement_group_cleaner_and_without_datasets_no_dataset_manager(tmp_path) -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2._internal.callbacks import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from scheduler import raycompat

    def kinds(**datasets) -> set[type]:
        trainer = raycompat.trainer_class()(lambda: None, scaling_config=ScalingConfig(num_workers=1),
                                            run_config=RunConfig(name="t", storage_path=str(tmp_path)),
                                            datasets=datasets or None)
        return {type(c) for c in trainer._create_default_callbacks()}

    assert DatasetsCallback not in kinds()
    assert DatasetsCallback in kinds(train=[1, 2, 3])  # with datasets, Ray Train's callback stays
    # trainq removes a run's placement group itself (tests/e2e/test_reliability_e2e.py)
    assert PlacementGroupCleanerCallback not in kinds() | kinds(train=[1, 2, 3])


def test_the_drain_listing_and_ray_trains_state_reads_still_exist() -> None:
    import ray
    from ray._private import state
    from ray.core.generated import autoscaler_pb2
    from ray.train.v2._internal.state import schema, state_actor

    from scheduler import raycompat

    # GcsClient forwards to InnerGcsClient; scripts.py drain_node calls GcsClient(address).drain_node
    assert callable(state.state.get_draining_nodes) and hasattr(ray._raylet.InnerGcsClient, "drain_node")
    assert set(raycompat.DRAIN_REASONS.values()) <= set(autoscaler_pb2.DrainNodeReason.keys())
    assert {"get_train_runs", "get_train_run_attempts"} <= set(vars(state_actor.TrainStateActor))
    assert {"name", "id"} <= set(schema.TrainRun.model_fields)
    assert {"workers", "end_time_ns"} <= set(schema.TrainRunAttempt.model_fields)
    assert "node_id" in schema.TrainWorker.model_fields


@pytest.mark.ray
def test_draining_nodes_and_train_run_nodes_answer(ray_cluster) -> None:
    from scheduler import raycompat

    # Draining is tested on a cluster of its own (tests/drain_scenario.py): a drain here would
    # leave the session's one node unable to take anything new.
    assert raycompat.draining_nodes() == {}
    assert raycompat.train_run_nodes({"no-such-run"}) == {}
