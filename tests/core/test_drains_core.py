"""A draining node's jobs move at a checkpoint (``core.drains``), with a fake launcher, cluster and clock."""

from __future__ import annotations

from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.core import DrainNotice
from scheduler.core.drains import STOP_MARGIN_S

NODE_A, NODE_B = "a" * 56, "b" * 56


def _core(make_core, cpus: float = 2):
    launcher, clock = FakeLauncher(), FakeClock()
    core = make_core(FakeCluster({"CPU": cpus}), launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:")
    return core, launcher, clock


def _running(core, **overrides):
    job_id = core.submit(spec(**overrides))["job_id"]
    sim = RunnerSim(core, job_id, core.get(job_id)["attempt"])
    sim.started()
    return job_id, sim


def _drain(clock, node=NODE_A, in_s: float | None = 30.0, reason="preemption", message="spot reclaim"):
    return DrainNotice(node, None if in_s is None else clock() + in_s, reason, message)


def test_a_job_on_a_draining_node_pauses_at_its_checkpoint_and_requeues_in_its_place(make_core) -> None:
    core, launcher, clock = _core(make_core, cpus=1)
    job, sim = _running(core, num_workers=1)
    sim.report(0, "/s/ck0")
    later = core.submit(spec(num_workers=1))["job_id"]  # waits behind it
    clock.advance(5)
    moves = core.on_drains([_drain(clock)], {(job, 1): {NODE_A}})
    assert [(m.job_id, m.how) for m in moves] == [(job, "pausing")]
    moving = core.get(job)
    assert moving["status"] == "pausing" and moving["pause_reason"] == "preempt"
    assert moving["preempted_by"] == f"node {NODE_A[:8]} draining (preemption: spot reclaim)"
    assert launcher.pauses == [(job, 1)]
    # stopped before the node's deadline, not at it: trainq ends the run, not the node's death
    assert core.job(job).pause_deadline_at <= clock() + 30 - STOP_MARGIN_S

    assert core.on_drains([_drain(clock)], {(job, 1): {NODE_A}}) == []  # the same notice again: nothing new
    assert launcher.pauses == [(job, 1)]

    clock.advance(1)
    sim.report(1, "/s/ck1")  # the checkpoint taken because of the notice
    sim.exit("paused")
    requeued = core.get(job)
    assert requeued["retries"] == 0 and requeued["resume_from"] == "/s/ck1"
    reason = next(t["reason"] for t in core.history(job)["transitions"]
                  if t["to_status"] == "queued" and t["from_status"] == "pausing")
    assert NODE_A[:8] in reason and "preemption: spot reclaim" in reason
    # back in its old place, ahead of the job submitted after it: it starts first
    assert requeued["status"] == "pending" and requeued["attempt"] == 2
    assert core.get(later)["status"] == "queued"
    assert launcher.launched[-1] == (job, 2, "/s/ck1")


def test_a_job_that_never_checkpoints_in_time_is_stopped_before_the_deadline_at_its_last(make_core) -> None:
    core, launcher, clock = _core(make_core)
    job, sim = _running(core, num_workers=1)
    sim.report(0, "/s/ck0")
    core.on_drains([_drain(clock, in_s=20)], {(job, 1): {NODE_A}})
    clock.advance(20 - STOP_MARGIN_S)
    core.tick()
    moved = core.get(job)
    assert (job, 1) in launcher.stops and moved["retries"] == 0
    assert moved["resume_from"] == "/s/ck0" and moved["attempt"] == 2  # restarted from its last checkpoint
    assert any("deadline" in t["reason"] and "draining" in t["reason"]
               for t in core.history(job)["transitions"])


def test_only_jobs_with_a_worker_on_the_draining_node_move(make_core) -> None:
    core, _launcher, clock = _core(make_core)
    on_a, _ = _running(core, num_workers=1)
    on_b, _ = _running(core, num_workers=1)
    gang, _ = _running(core, num_workers=1, resources_per_worker={"CPU": 0})
    placements = {(on_a, 1): {NODE_A}, (on_b, 1): {NODE_B}, (gang, 1): {NODE_B, NODE_A}}
    moves = core.on_drains([_drain(clock)], placements)
    assert sorted(m.job_id for m in moves) == sorted([on_a, gang])  # a gang moves as a whole
    assert core.get(on_b)["status"] == "running"
    assert core.on_drains([], placements) == []


def test_a_pending_start_on_a_draining_node_is_requeued_and_its_run_stopped(make_core) -> None:
    core, launcher, clock = _core(make_core)
    job = core.submit(spec(num_workers=1))["job_id"]
    assert core.get(job)["status"] == "pending"
    moves = core.on_drains([_drain(clock)], {(job, 1): {NODE_A}})
    assert [m.how for m in moves] == ["requeued"] and (job, 1) in launcher.stops
    assert core.get(job)["retries"] == 0


def test_a_pause_already_under_way_gets_the_drains_deadline_and_still_ends_paused(make_core) -> None:
    core, _launcher, clock = _core(make_core)
    job, sim = _running(core, num_workers=1)
    core.pause(job, deadline_s=600)
    moves = core.on_drains([_drain(clock, in_s=60)], {(job, 1): {NODE_A}})
    assert [m.how for m in moves] == ["deadline"]
    assert core.job(job).pause_deadline_at == clock() + 60 - STOP_MARGIN_S
    sim.exit("paused")
    assert core.get(job)["status"] == "paused"  # a person's pause wins over the move


def test_a_drain_without_a_deadline_waits_for_the_jobs_own_checkpoint_cadence(make_core) -> None:
    core, _, clock = _core(make_core)
    job, _sim = _running(core, num_workers=1)
    core.on_drains([_drain(clock, in_s=None)], {(job, 1): {NODE_A}})
    assert core.get(job)["status"] == "pausing" and core.job(job).pause_deadline_at is not None


def test_a_stale_attempts_placement_is_ignored(make_core) -> None:
    core, launcher, clock = _core(make_core)
    job, _ = _running(core, num_workers=1)
    assert core.on_drains([_drain(clock)], {(job, 7): {NODE_A}}) == []
    assert launcher.pauses == []
