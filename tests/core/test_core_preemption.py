"""The core applying the new policies, with a fake launcher, cluster (per-node sizes) and clock."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.errors import DoesNotFit, IllegalTransition, InvalidSpec, JobNotFound, NotCooperative
from scheduler.jobs import iso


def _core(make_core, cpus: float = 2, nodes: list | None = None, **settings):
    launcher, clock = FakeLauncher(), FakeClock()
    cluster = FakeCluster({"CPU": cpus})
    if nodes is not None:
        cluster.node_sizes = [dict(n) for n in nodes]
        cluster.free_per_node = [dict(n) for n in nodes]
    core = make_core(cluster, launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", **settings)
    return core, launcher, clock, cluster


def _start(core, **overrides):
    job = core.submit(spec(**overrides))
    sim = RunnerSim(core, job["job_id"], core.get(job["job_id"])["attempt"])
    sim.started()
    return job["job_id"], sim


def _reasons(core, job_id):
    return [t["reason"] for t in core.history(job_id)["transitions"]]


def test_a_higher_priority_job_preempts_and_the_victim_requeues_by_itself(make_core) -> None:
    core, launcher, clock, _ = _core(make_core)
    low, sim = _start(core, num_workers=2, min_runtime_s=0)
    sim.report(0)
    sim.report(1, "/s/low/ck1")
    clock.advance(5)
    high = core.submit(spec(num_workers=2, priority=10))["job_id"]
    victim = core.get(low)
    assert victim["status"] == "pausing" and victim["pause_reason"] == "preempt"
    assert victim["preempted_by"] == high and victim["preemptions"] == 1
    assert launcher.pauses == [(low, 1)] and core.get(high)["status"] == "queued"
    assert any(r.startswith(f"preempted by {high}") for r in _reasons(core, low))

    clock.advance(1)
    sim.report(2, "/s/low/ck2")
    sim.exit("paused")
    requeued = core.get(low)
    assert requeued["status"] == "queued" and requeued["resume_from"] == "/s/low/ck2"  # not "paused"
    assert core.get(high)["status"] == "pending"
    assert requeued["lost_work"]["since_checkpoint"] == "/s/low/ck2" and requeued["lost_work"]["reports"] == 0

    RunnerSim(core, high, 1).exit("completed")
    assert core.get(low)["status"] == "pending" and core.get(low)["attempt"] == 2  # back by itself
    assert launcher.launched[-1] == (low, 2, "/s/low/ck2")


def test_only_what_is_needed_is_preempted_and_pausing_jobs_count(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=4)
    a, sa = _start(core, num_workers=2, min_runtime_s=0)
    b, sb = _start(core, num_workers=2, min_runtime_s=0)
    sa.report(0, "/s/a/ck")
    clock.advance(100)
    sb.report(0, "/s/b/ck")  # fresher checkpoint: the cheaper victim
    core.submit(spec(num_workers=2, priority=5))
    assert core.get(b)["status"] == "pausing" and core.get(a)["status"] == "running"
    core.submit(spec(num_workers=2, priority=5))  # a second one: b's room is promised to the first
    assert core.get(a)["status"] == "pausing"
    core.tick()
    assert launcher.pauses == [(b, 1), (a, 1)]  # nothing more


def test_young_unpreemptible_and_equal_priority_jobs_are_not_preempted(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=3, min_runtime_s=600)
    young, _ = _start(core)  # the setting's 600 s applies
    pinned, _ = _start(core, preemptible=False, min_runtime_s=0)
    equal, _ = _start(core, priority=5, min_runtime_s=0)
    clock.advance(300)
    high = core.submit(spec(num_workers=2, priority=5))["job_id"]
    assert launcher.pauses == [] and core.get(high)["status"] == "queued"
    clock.advance(301)
    core.tick()  # now the young job has run long enough; it alone is not enough room, so wait
    assert launcher.pauses == []
    core.set_priority(high, 6)  # now the equal-priority job is fair game too
    assert {core.get(young)["status"], core.get(equal)["status"]} == {"pausing"}
    assert core.get(pinned)["status"] == "running"


def test_a_user_pause_during_a_preemption_ends_paused(make_core) -> None:
    core, _launcher, _clock, _ = _core(make_core)
    low, sim = _start(core, num_workers=2, min_runtime_s=0)
    sim.report(0, "/s/low/ck0")
    core.submit(spec(num_workers=2, priority=3))
    result = core.pause(low)
    assert result["status"] == "pausing" and "stay paused" in result["message"]
    sim.exit("paused")
    assert core.get(low)["status"] == "paused"


def test_a_preempted_job_that_never_checkpoints_is_stopped_at_the_grace_and_requeued(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, preempt_grace_s=40)
    low, sim = _start(core, num_workers=2, min_runtime_s=0)
    for step in range(3):
        clock.advance(10)
        sim.report(step, f"/s/low/ck{step}" if step == 0 else None)
    core.submit(spec(num_workers=2, priority=3))
    deadline = core.get(low)["pause_deadline_at"]
    assert deadline is not None  # from the cadence, capped by the grace
    clock.advance(41)
    core.tick()
    job = core.get(low)
    assert job["status"] == "queued" and job["resume_from"] == "/s/low/ck0"
    assert job["lost_work"]["reports"] == 2 and launcher.stops == [(low, 1)]
    sim.exit("stopped")  # its run has stopped: the room is free now


def test_infrastructure_failures_requeue_with_backoff_until_max_retries(make_core) -> None:
    core, _launcher, clock, _ = _core(make_core, retry_backoff_s=5)
    job_id, sim = _start(core, max_retries=1)
    sim.report(0, "/s/j/ck0")
    sim.exit("failed", error="WorkerHealthCheckFailedError: node died", failure="infrastructure")
    job = core.get(job_id)
    assert (job["status"], job["retries"], job["resume_from"]) == ("queued", 1, "/s/j/ck0")
    assert "retry 1 of 1" in _reasons(core, job_id)[-1]
    assert core.get(job_id)["attempt"] == 1  # still in its backoff
    clock.advance(5)
    core.tick()
    assert core.get(job_id)["status"] == "pending" and core.get(job_id)["attempt"] == 2
    sim2 = RunnerSim(core, job_id, 2)
    sim2.started()
    core.on_runner_lost(job_id, 2, "runner actor died: ActorDiedError")
    failed = core.get(job_id)
    assert failed["status"] == "failed" and "RunnerLost" in failed["error"]
    assert "already used its 1 retries" in _reasons(core, job_id)[-1]


def test_a_user_error_fails_at_once(make_core) -> None:
    core, *_ = _core(make_core)
    job_id, sim = _start(core)
    sim.exit("failed", error="RuntimeError: boom", failure="user")
    assert core.get(job_id)["status"] == "failed" and core.get(job_id)["retries"] == 0


def test_a_backoff_does_not_hold_up_the_rest_of_the_queue(make_core) -> None:
    core, _launcher, _clock, _ = _core(make_core, cpus=1, retry_backoff_s=30)
    first, sim = _start(core)
    other = core.submit(spec())["job_id"]
    sim.exit("failed", failure="infrastructure")
    assert core.get(first)["queue_position"] == 1 and core.get(other)["status"] == "pending"


def test_admission_places_gangs_on_nodes_not_only_on_totals(make_core) -> None:
    core, _launcher, _clock, cluster = _core(make_core, cpus=3, nodes=[{"CPU": 1}, {"CPU": 1}, {"CPU": 1}])
    with pytest.raises(DoesNotFit):  # 3 CPUs in all, but no node has 2
        core.submit(spec(resources_per_worker={"CPU": 2}))
    cluster.free_per_node = [{"CPU": 1}, {"CPU": 0}, {"CPU": 0}]  # something else uses two nodes
    waiting = core.submit(spec(num_workers=2))["job_id"]
    assert core.get(waiting)["status"] == "queued"
    cluster.free_per_node = [{"CPU": 1}, {"CPU": 1}, {"CPU": 0}]
    core.tick()
    assert core.get(waiting)["status"] == "pending"
    behind = core.submit(spec())["job_id"]
    # Ray still shows 1 CPU free while the pending gang is not placed yet: it counts as taken.
    assert core.get(behind)["status"] == "queued"


def test_a_start_that_cannot_be_placed_times_out_back_to_the_queue(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=1, start_timeout_s=300)
    job_id = core.submit(spec())["job_id"]
    clock.advance(301)
    core.tick()
    job = core.get(job_id)
    assert launcher.stops == [(job_id, 1)] and "start timeout" in _reasons(core, job_id)[-1]
    assert job["status"] == "queued"  # the stopped runner still holds its room until it has stopped
    RunnerSim(core, job_id, 1).exit("stopped")
    assert core.get(job_id)["status"] == "pending" and core.get(job_id)["attempt"] == 2


def test_set_priority_reorders_and_refuses_bad_input(make_core) -> None:
    core, _launcher, _clock, _ = _core(make_core, cpus=1)
    _start(core)
    a = core.submit(spec())["job_id"]
    b = core.submit(spec())["job_id"]
    assert core.get(b)["queue_position"] == 2
    assert core.set_priority(b, 7)["queue_position"] == 1 and core.get(a)["queue_position"] == 2
    with pytest.raises(InvalidSpec, match="priority"):
        core.set_priority(b, "high")
    with pytest.raises(InvalidSpec, match="priority"):
        core.set_priority(b, 10**9)
    with pytest.raises(JobNotFound):
        core.set_priority("job_nope", 1)
    assert core.get(b)["priority"] == 7


def test_checkpoint_now_needs_a_running_cooperative_job(make_core) -> None:
    core, launcher, clock, _ = _core(make_core)
    job_id, sim = _start(core)
    queued = core.submit(spec(num_workers=2))["job_id"]
    with pytest.raises(NotCooperative, match="should_checkpoint"):
        core.checkpoint(job_id)
    sim.hook()
    clock.advance(1)
    answer = core.checkpoint(job_id)
    assert answer["success"] and answer["requested_at"] and launcher.checkpoints == [(job_id, 1)]
    events = []
    core.listeners.append(events.append)
    clock.advance(1)
    sim.report(4, "/s/j/ck4")
    assert core.get(job_id)["checkpoint_requested_at"] is None
    assert [e["checkpoint_path"] for e in events if e["type"] == "checkpoint"] == ["/s/j/ck4"]
    core.pause(queued)
    with pytest.raises(IllegalTransition, match="only a running job"):
        core.checkpoint(queued)


def test_a_function_that_never_reads_its_checkpoint_is_not_resumable(make_core) -> None:
    core, _launcher, clock, _ = _core(make_core)
    job_id, sim = _start(core)
    assert core.get(job_id)["resumable"] is None
    clock.advance(10)
    sim.report(0, "/s/j/ck0", read_checkpoint=False)
    clock.advance(10)
    sim.report(1)
    job = core.get(job_id)
    assert job["resumable"] is False and "never calls ray.train.get_checkpoint()" in job["warning"]
    result = core.pause(job_id)
    assert "starts it over" in result["message"]
    sim.exit("paused")
    lost = core.get(job_id)["lost_work"]
    assert lost["reports"] == 2 and lost["seconds"] == 20 and lost["since_checkpoint"] is None
    assert "starts it over" in core.resume(job_id)["message"]

    other, sim2 = _start(core)
    sim2.report(0, "/s/o/ck0", read_checkpoint=True)
    assert core.get(other)["resumable"] is True and core.get(other)["warning"] is None


def test_pause_says_when_to_expect_it(make_core) -> None:
    core, _launcher, clock, _ = _core(make_core)
    job_id, sim = _start(core)
    for step in range(4):
        clock.advance(20)
        sim.report(step, f"/s/j/ck{step}")
    clock.advance(5)
    result = core.pause(job_id)
    assert "checkpoints about every 20 s" in result["message"]
    assert "at the latest in 30 s" in result["message"]
    job = core.get(job_id)
    assert job["expected_paused_by"] == result["expected_paused_by"]
    assert job["pause_deadline_at"] == result["deadline_at"]
    # no_deadline only turns off the default deadline: one given as well still applies.
    other, _ = _start(core)
    both = core.pause(other, deadline_s=5, no_deadline=True)
    assert both["deadline_at"] == iso(clock() + 5)


def test_drain_pauses_everything_and_the_next_start_requeues_it(make_core) -> None:
    core, _launcher, clock, cluster = _core(make_core, cpus=3)
    running, sim = _start(core)
    sim.report(0, "/s/r/ck0")
    pending = core.submit(spec())["job_id"]
    queued = core.submit(spec(num_workers=2))["job_id"]
    user_paused, _ = _start(core, resources_per_worker={"CPU": 0})
    core.pause(user_paused)
    waiting = core.drain(grace_s=60)
    assert running in waiting and core.get(running)["pause_reason"] == "shutdown"
    assert core.get(pending)["status"] == "paused" and core.get(queued)["status"] == "queued"
    core.tick()
    assert core.get(queued)["status"] == "queued"  # nothing new starts during a shutdown
    sim.exit("paused")
    assert core.get(running)["status"] == "paused"

    core2 = make_core(cluster, FakeLauncher(), clock)  # the next start, over the same registry
    core2.recover(set())
    assert core2.get(running)["status"] in ("queued", "pending")
    assert core2.get(pending)["status"] in ("queued", "pending")
    assert core2.get(user_paused)["status"] == "paused"  # a person's pause stays a person's


def test_a_head_that_only_a_min_runtime_keeps_waiting_says_who_makes_way_and_when(make_core) -> None:
    core, _, clock, _ = _core(make_core)
    low, sim = _start(core, num_workers=2, min_runtime_s=600)
    started = clock()
    sim.report(0, "/s/low/ck0")
    clock.advance(100)
    high = core.submit(spec(priority=10))["job_id"]
    waiting = core.get(high)
    assert waiting["status"] == "queued" and waiting["pending_reason"]["code"] == "resources"
    assert waiting["pending_reason"]["message"] == (
        f"needs 1 CPU, 0 free; in 500 s room can be made for it: {low} (lower priority) may pause or shrink "
        "once past its minimum runtime")
    assert waiting["eta"] == iso(started + 600) and low in waiting["eta_basis"]
    clock.advance(500)
    core.tick()  # as it said: the low job makes way now
    assert core.get(low)["status"] == "pausing" and core.get(low)["preempted_by"] == high
    assert core.get(high)["pending_reason"]["code"] == "preempting"


def test_the_minimum_runtime_counts_from_when_the_workers_started_not_from_the_admission(make_core) -> None:
    # A start longer than the minimum runtime must not use it up: the job would lose its
    # protection the moment it ran, and be preempted before it took a step.
    core, _, clock, _ = _core(make_core)
    low = core.submit(spec(num_workers=2, min_runtime_s=60))["job_id"]
    clock.advance(90)  # still starting, for longer than its minimum runtime
    sim = RunnerSim(core, low, 1)
    sim.started()
    running_at = clock()
    sim.report(0, "/s/low/ck0")
    clock.advance(10)
    high = core.submit(spec(priority=10))["job_id"]
    assert core.get(low)["status"] == "running"  # 100 s since admitted, 10 s running
    waiting = core.get(high)
    assert "in 50 s room can be made for it" in waiting["pending_reason"]["message"]
    assert waiting["eta"] == iso(running_at + 60)
    clock.advance(50)
    core.tick()
    assert core.get(low)["status"] == "pausing" and core.get(low)["preempted_by"] == high


def test_no_room_later_is_promised_where_no_preemption_can_make_it(make_core) -> None:
    core, _, clock, _ = _core(make_core)
    _start(core, num_workers=2, preemptible=False)
    clock.advance(10)
    same = core.submit(spec(priority=0))["job_id"]  # an equal priority never preempts
    high = core.submit(spec(priority=10))["job_id"]  # nor does any priority a job that may not be paused
    for job_id in (same, high):
        assert "room can be made" not in core.get(job_id)["pending_reason"]["message"]
        assert core.get(job_id)["eta"] is None


def test_only_the_head_is_promised_room_later_not_the_job_behind_one_being_made_room_for(make_core) -> None:
    core, _, clock, _ = _core(make_core)
    quick, sim = _start(core, min_runtime_s=0)
    sim.report(0, "/s/quick/ck0")
    _start(core, min_runtime_s=600)
    clock.advance(10)
    first = core.submit(spec(priority=10))["job_id"]
    assert core.get(quick)["status"] == "pausing" and core.get(first)["pending_reason"]["code"] == "preempting"
    second = core.get(core.submit(spec(num_workers=2, priority=10))["job_id"])
    assert second["pending_reason"]["code"] == "priority"
    assert "room can be made" not in (second["eta_basis"] or "") + second["pending_reason"]["message"]
