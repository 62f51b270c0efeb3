"""Dependencies, sweeps and the dry run in the core, with a fake cluster, launcher and clock."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.errors import InvalidSpec, JobNotFound


def _finish(core: Any, job_id: str, outcome: str) -> None:
    """Run a queued-and-started job to its end."""
    job = core.get(job_id)
    assert job["status"] == "pending", job
    sim = RunnerSim(core, job_id, job["attempt"])
    sim.started()
    sim.exit(outcome)


def test_a_job_waits_for_its_dependency_then_starts_once_it_completed(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    a = core.submit(spec())["job_id"]
    b = core.submit(spec(depends_on=[{"job_id": a, "on": "completed"}]))["job_id"]
    waiting = core.get(b)
    assert waiting["status"] == "queued"
    assert waiting["pending_reason"]["code"] == "dependency" and a in waiting["pending_reason"]["message"]
    assert waiting["eta"] is None
    _finish(core, a, "completed")
    assert core.get(b)["status"] == "pending"


def test_an_impossible_dependency_cancels_with_the_reason_and_a_resume_revives_it(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    a = core.submit(spec())["job_id"]
    ok = core.submit(spec(depends_on=[{"job_id": a}]))["job_id"]
    on_fail = core.submit(spec(depends_on=[{"job_id": a, "on": "failed"}]))["job_id"]
    after_ok = core.submit(spec(depends_on=[{"job_id": ok, "on": "finished"}]))["job_id"]
    _finish(core, a, "failed")
    cancelled = core.get(ok)
    assert cancelled["status"] == "cancelled" and f"{a} is failed" in cancelled["error"]
    assert core.get(on_fail)["status"] == "pending"  # its dependency is met
    assert core.get(after_ok)["status"] == "pending"  # a cancelled job has finished
    core.resume(a)
    assert core.get(ok)["status"] == "queued"  # revived: waits for a again
    assert core.get(ok)["pending_reason"]["code"] == "dependency"


def test_failed_of_a_completed_job_is_cancelled(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    a = core.submit(spec())["job_id"]
    c = core.submit(spec(depends_on=[{"job_id": a, "on": "failed"}]))["job_id"]
    _finish(core, a, "completed")
    assert core.get(c)["status"] == "cancelled"
    assert "can never be failed" in core.get(c)["error"]


@pytest.mark.parametrize("deps", [[{"job_id": "job_nope"}], [{"job_id": "x", "on": "failed"}, {"job_id": "x"}]])
def test_unknown_dependencies_are_refused_naming_the_field(make_core, deps: list[Any]) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    with pytest.raises(InvalidSpec) as e:
        core.submit(spec(depends_on=deps))
    assert e.value.fields["field"] == "depends_on"
    assert core.count() == 0


def test_a_user_may_not_set_sweep_id(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    with pytest.raises(InvalidSpec) as e:
        core.submit(spec(sweep_id="sweep_x"))
    assert e.value.fields["field"] == "sweep_id"


def test_a_sweep_makes_one_job_per_combination_and_holds_max_running(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 8}))
    first = core.submit(spec(name="t", config={"base": 1}, sweep={
        "parameters": {"lr": [0.1, 0.01], "seed": [0, 1, 2]}, "max_running": 2, "metric": "loss"}))
    sweep_id = first["spec"]["sweep_id"]
    view = core.sweeps.view(sweep_id)
    jobs = view["jobs"]
    assert len(jobs) == 6
    assert sorted((j["spec"]["config"]["lr"], j["spec"]["config"]["seed"]) for j in jobs) == \
        [(lr, s) for lr in (0.01, 0.1) for s in (0, 1, 2)]
    assert all(j["spec"]["config"]["base"] == 1 for j in jobs)
    assert "lr=0.1" in first["name"] and "seed=0" in first["name"]
    assert view["counts"] == {"pending": 2, "queued": 4}
    held = [j for j in jobs if j["status"] == "queued"]
    assert all(j["pending_reason"]["code"] == "sweep_limit" for j in held)
    # Every transition from now on: never more than 2 pending, running or pausing.
    for _ in range(6):
        started = [j for j in core.sweeps.view(sweep_id)["jobs"] if j["status"] == "pending"]
        assert 1 <= len(started) <= 2
        _finish(core, started[0]["job_id"], "completed")
        active = [j for j in core.sweeps.view(sweep_id)["jobs"] if j["status"] in ("pending", "running", "pausing")]
        assert len(active) <= 2
    assert core.sweeps.view(sweep_id)["counts"] == {"completed": 6}


def test_a_sweep_ranks_its_members_by_its_metric(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 8}))
    first = core.submit(spec(sweep={"parameters": {"lr": [1, 2, 3]}, "metric": "loss", "mode": "min"}))
    sweep_id = first["spec"]["sweep_id"]
    for j, loss in zip(core.sweeps.view(sweep_id)["jobs"], [0.5, 0.1, 0.9], strict=True):
        sim = RunnerSim(core, j["job_id"], 1)
        sim.started()
        sim.seq += 1
        from scheduler.core.runner_events import Reported
        core.on_runner_event(Reported(j["job_id"], 1, sim.seq, core.clock(), {"loss": loss}, None, None))
    ranked = [j["metrics"]["loss"] for j in core.sweeps.view(sweep_id)["jobs"]]
    assert ranked == [0.1, 0.5, 0.9]


def test_sweep_verbs_act_on_every_member_that_takes_them(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 8}))
    sweep_id = core.submit(spec(sweep={"parameters": {"lr": [1, 2, 3]}, "max_running": 1}))["spec"]["sweep_id"]
    paused = core.sweeps.act(sweep_id, "pause")
    assert {j["status"] for j in paused["jobs"]} == {"paused"} and len(paused["jobs"]) == 3
    resumed = core.sweeps.act(sweep_id, "resume")
    assert len(resumed["jobs"]) == 3
    assert sorted(j["status"] for j in core.sweeps.view(sweep_id)["jobs"]) == ["pending", "queued", "queued"]
    core.sweeps.act(sweep_id, "cancel")
    assert core.sweeps.view(sweep_id)["counts"] == {"cancelled": 3}
    with pytest.raises(JobNotFound):
        core.sweeps.view("sweep_nope")


@pytest.mark.parametrize("verb", ["pause", "cancel"])
def test_a_sweeps_pause_or_cancel_starts_no_member_on_its_way(make_core, verb: str) -> None:
    # Found with the model test: each member's verb runs its pass, and the pass after the running
    # member's pause started a queued one, which the next step stopped again (a launch each).
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 8}), launcher=launcher)
    sweep_id = core.submit(spec(sweep={"parameters": {"lr": [1, 2, 3]}, "max_running": 1}))["spec"]["sweep_id"]
    assert len(launcher.launched) == 1
    answer = core.sweeps.act(sweep_id, verb)
    assert len(launcher.launched) == 1, launcher.launched
    assert [j["error"] for j in answer["jobs"]] == [None] * 3
    assert {j["status"] for j in core.sweeps.view(sweep_id)["jobs"]} == {"paused" if verb == "pause" else "cancelled"}


def _registry(core: Any) -> tuple[Any, ...]:
    return (core.list(), core.queue(), core.count(), core.writer.version, dict(core.writer.holds))


def test_a_dry_run_on_a_full_cluster_changes_nothing_and_names_its_victim(make_core) -> None:
    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 2}), clock=clock)
    low = core.submit(spec(num_workers=2, priority=0))["job_id"]
    RunnerSim(core, low, 1).started()
    clock.advance(3600)  # past the minimum run time before a preemption
    core.tick()
    events: list[Any] = []
    core.listeners.append(events.append)
    before = _registry(core)
    same = core.dry.ask(spec(priority=0))
    assert same["would_start"] is False and same["preempts"] == []
    assert same["pending_reason"]["code"] == "resources" and same["queue_position"] == 1
    high = core.dry.ask(spec(priority=5))
    assert high["preempts"] == [low]
    assert _registry(core) == before and events == []
    with pytest.raises(InvalidSpec):
        core.dry.ask(spec(num_workers=0))
    real = core.submit(spec(priority=5))
    assert core.get(low)["status"] == "pausing" and core.get(low)["preempted_by"] == real["job_id"]


def test_a_dry_run_that_fits_would_start_and_one_waiting_on_a_dependency_says_so(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 2}))
    assert core.dry.ask(spec())["would_start"] is True
    a = core.submit(spec())["job_id"]
    answer = core.dry.ask(spec(depends_on=[{"job_id": a}]))
    assert answer["would_start"] is False and answer["pending_reason"]["code"] == "dependency"
    assert core.count() == 1




def test_a_dependent_back_from_a_resize_waits_again_like_any_requeued_job(make_core) -> None:
    # Found by the model test (tests/core/test_core_model.py): the resize's own hold, decided in the
    # same pass as the dependency rule's, let the job go; a job it needs had been resumed since.
    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 4}), clock=clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", resize_min_interval_s=30,
                             min_runtime_s=0, retry_backoff_s=0)
    a = core.submit(spec(max_retries=0))["job_id"]
    _finish(core, a, "failed")
    other = core.submit(spec(num_workers=2))["job_id"]
    b = core.submit(spec(num_workers={"min": 1, "max": 3}, depends_on=[{"job_id": a, "on": "failed"}]))["job_id"]
    sim = RunnerSim(core, b, 1)
    sim.started()
    core.resume(a)  # a is no longer failed
    core.pause(a)
    _finish(core, other, "completed")  # two CPUs idle: b grows at its next checkpoint
    clock.advance(60)
    core.tick()
    assert core.get(b)["pause_reason"] == "resize"
    sim.report(1, "/ck/b/1", read_checkpoint=True)
    sim.exit("paused")
    waiting = core.get(b)
    assert waiting["status"] == "queued" and waiting["pending_reason"]["code"] == "dependency", waiting
    core.resume(a)
    _finish(core, a, "failed")  # failed again: b's dependency is met, and it grows as planned
    assert core.get(b)["status"] == "pending" and core.get(b)["workers"] == 3
