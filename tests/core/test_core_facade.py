"""The façade's promise: exactly one scheduling pass after each command, and none after a report;
and the scheduling pass's typed actions applied in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fakes import FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.core.actions import AskCapacity, MakeWay, Start, Why
from scheduler.errors import JobNotFound


def _counting(core: Any) -> list[int]:
    """Count the scheduling passes the core runs from now on."""
    calls = [0]
    run = core.passes.run

    def counted() -> list[str]:
        calls[0] += 1
        return run()

    core.passes.run = counted
    return calls


def _running(core: Any) -> tuple[str, RunnerSim]:
    job = core.submit(spec())
    sim = RunnerSim(core, job["job_id"], 1)
    sim.started()
    return job["job_id"], sim


@pytest.mark.parametrize("command", ["submit", "pause", "resume", "cancel", "set_priority", "exit", "lost", "tick"])
def test_every_command_that_changes_the_queue_is_followed_by_exactly_one_pass(make_core, command: str) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    job_id, sim = _running(core)
    waiting = core.submit(spec(priority=0))["job_id"]
    paused = core.submit(spec())["job_id"]
    core.pause(paused)
    passes = _counting(core)
    do: dict[str, Callable[[], Any]] = {
        "submit": lambda: core.submit(spec()),
        "pause": lambda: core.pause(waiting),
        "resume": lambda: core.resume(paused),
        "cancel": lambda: core.cancel(job_id),
        "set_priority": lambda: core.set_priority(waiting, 5),
        "exit": lambda: sim.exit("completed"),
        "lost": lambda: core.on_runner_lost(job_id, 1, "gone"),
        "tick": core.tick,
    }
    do[command]()
    assert passes == [1]


def test_reports_and_commands_that_change_nothing_run_no_pass(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    job_id, sim = _running(core)
    queued = core.submit(spec())["job_id"]
    passes = _counting(core)
    sim.report(1)
    sim.report(2, checkpoint="/x/ck")
    core.set_priority(queued, 0)  # its priority already
    core.get(job_id), core.list(), core.queue()
    with pytest.raises(JobNotFound):
        core.pause("job_nope")
    assert passes == [0]


def test_a_pass_decides_typed_actions_and_applies_them_in_one_place(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 2}), launcher)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", min_runtime_s=0)
    low, sim = _running(core)
    sim.report(1, checkpoint="/x/ck")
    applied: list[Any] = []
    apply = core.passes.apply

    def recording(actions: list[Any]) -> list[str]:
        applied.extend(actions)
        return apply(actions)

    core.passes.apply = recording
    high = core.submit(spec(num_workers=2, priority=5))["job_id"]
    makes_way = [a for a in applied if isinstance(a, MakeWay)]
    assert [(a.job_id, a.for_job, a.why) for a in makes_way] == [(low, high, Why.PRIORITY)]
    assert "priority 5 > 0" in makes_way[0].detail
    assert core.get(low)["status"] == "pausing" and launcher.pauses == [(low, 1)]
    sim.exit("paused")
    assert any(isinstance(a, Start) and a.job_id == high for a in applied)
    assert all(isinstance(a, (Start, MakeWay, AskCapacity)) for a in applied)
