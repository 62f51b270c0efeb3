"""Dependencies and sweeps survive a restart on both registries (SQLite and Postgres): they ride in
the stored spec, and the rule is worked out again by the first pass of the new core."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes import FakeCheckpointFS, FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.core import Scheduler


def _core(store: Any, tmp_path: Path) -> Scheduler:
    return Scheduler(store, FakeLauncher(), FakeCluster({"CPU": 4}), storage_root=str(tmp_path), clock=FakeClock(),
                     checkpoint_fs=FakeCheckpointFS())


def test_dependencies_and_sweep_limits_survive_a_restart(make_store: Callable[..., Any], tmp_path: Path) -> None:
    core = _core(make_store(), tmp_path)
    a = core.submit(spec())["job_id"]
    core.pause(a)
    b = core.submit(spec(depends_on=[{"job_id": a}]))["job_id"]
    sweep_id = core.submit(spec(sweep={"parameters": {"lr": [1, 2, 3]}, "max_running": 1}))["spec"]["sweep_id"]
    core.cancel(a)  # b can never be met now: cancelled, and revived by a's resume after the restart
    assert core.get(b)["status"] == "cancelled"

    again = _core(make_store(), tmp_path)  # a restart: a new core on the same registry
    again.schedule()
    codes = sorted(str((j["pending_reason"] or {}).get("code")) for j in again.sweeps.view(sweep_id)["jobs"])
    assert codes == ["None", "sweep_limit", "sweep_limit"]
    again.resume(a)
    revived = again.get(b)
    assert revived["status"] == "queued" and revived["pending_reason"]["code"] == "dependency"
    sim = RunnerSim(again, a, again.get(a)["attempt"])
    sim.started()
    sim.exit("completed")
    assert again.get(b)["status"] == "pending"
