"""A draining node's jobs move at a checkpoint (``core.drains``), with a fake launcher, cluster and clock."""

from __future__ import annotations

from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.core import DrainNotice, idle_drain_refusal
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


def test_an_idle_termination_of_a_node_a_job_is_on_is_refused_and_a_preemption_never() -> None:
    placements = {("job-a", 1): {NODE_A}, ("job-b", 2): [NODE_A, NODE_B], ("job-c", 1): {NODE_B}}
    refusal = idle_drain_refusal(NODE_A, "idle", placements)
    assert refusal is not None and "job-a, job-b" in refusal and "job-c" not in refusal
    assert "preemption" in refusal  # says how to drain it instead
    assert idle_drain_refusal(NODE_A, "preemption", placements) is None
    assert idle_drain_refusal("c" * 56, "idle", placements) is None  # nobody there: Ray decides


def test_an_idle_drain_ray_accepted_anyway_moves_the_job_like_a_preemption(make_core) -> None:
    core, launcher, clock = _core(make_core)
    job, sim = _running(core, num_workers=1)
    sim.report(0, "/s/ck0")
    moves = core.on_drains([_drain(clock, reason="idle", message="idle for 60 s")], {(job, 1): {NODE_A}})
    assert [m.how for m in moves] == ["pausing"] and launcher.pauses == [(job, 1)]
    assert core.get(job)["pause_reason"] == "preempt"
    sim.report(1, "/s/ck1")
    sim.exit("paused")
    moved = core.get(job)
    assert moved["retries"] == 0 and moved["preemptions"] == 1 and moved["resume_from"] == "/s/ck1"
    assert "draining (idle: idle for 60 s)" in moved["preempted_by"]


def test_a_moved_gang_with_no_other_room_waits_saying_so_and_starts_when_a_node_joins(make_core) -> None:
    core, launcher, clock = _core(make_core)
    core.cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 1.0}]
    gang, sim = _running(core, num_workers=2)  # one worker on each node
    core.cluster.free_per_node = [{"CPU": 0.0}, {"CPU": 0.0}]
    sim.report(3, "/s/ck3")
    notice = _drain(clock, node="node-0")
    core.on_drains([notice], {(gang, 1): {"node-0", "node-1"}})  # the gang moves as a whole
    sim.report(4, "/s/ck4")
    core.cluster.free_per_node = [{"CPU": 1.0}]  # the draining node's room is left out (RayCluster)
    sim.exit("paused")
    waiting = core.get(gang)
    assert waiting["status"] == "queued" and waiting["resume_from"] == "/s/ck4" and waiting["retries"] == 0
    reason = waiting["pending_reason"]
    assert reason["code"] == "resources" and "hold 1 now" in reason["message"]
    assert f"{notice.describe()}: nothing new starts there" in reason["message"]

    core.cluster.total = {"CPU": 3.0}
    core.cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 1.0}]  # a node joins
    core.on_drains([], {})  # the drained node is gone: no drain left to name
    core.tick()
    assert core.get(gang)["status"] == "pending" and launcher.launched[-1] == (gang, 2, "/s/ck4")


def test_an_elastic_job_on_a_draining_node_starts_again_at_once_smaller_off_it(make_core) -> None:
    launcher, clock = FakeLauncher(), FakeClock()
    one = {"CPU": 1.0}
    cluster = FakeCluster({"CPU": 3.0}, node_sizes=[one] * 3, free_per_node=[dict(one) for _ in range(3)])
    core = make_core(cluster, launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:")
    job, sim = _running(core, num_workers={"min": 1, "max": 3}, min_runtime_s=0)
    assert core.get(job)["workers"] == 3
    cluster.free_per_node = [{"CPU": 0.0}] * 3
    sim.report(0, "/s/ck0")
    core.on_drains([_drain(clock)], {(job, 1): {NODE_A, NODE_B}})
    assert "starts again at once with the workers that fit off the node (at least 1)" in \
        core.history(job)["transitions"][-1]["reason"]
    sim.report(1, "/s/ck1")
    cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 1.0}]  # A is draining: Ray's view leaves it out
    sim.exit("paused")
    again = core.get(job)
    assert again["status"] == "pending" and again["workers"] == 2 and again["retries"] == 0
    assert launcher.launched[-1] == (job, 2, "/s/ck1")
