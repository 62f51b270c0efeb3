"""The scheduler core with a fake launcher, cluster and clock: no Ray, no sleeps."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.errors import CheckpointRefused, DoesNotFit, IllegalTransition, InvalidSpec, JobNotFound


def _running(core, launcher, **overrides):
    job = core.submit(spec(**overrides))
    sim = RunnerSim(core, job["job_id"], core.get(job["job_id"])["attempt"])
    sim.started()
    assert core.get(job["job_id"])["status"] == "running"
    return job["job_id"], sim


def test_submit_starts_what_fits_and_queues_the_rest(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 4}), launcher)
    a = core.submit(spec(num_workers=4))
    b = core.submit(spec(num_workers=2, priority=1))
    c = core.submit(spec(num_workers=2))
    assert a["status"] == "pending" and a["attempt"] == 1
    assert [j["job_id"] for j in core.queue()] == [b["job_id"], c["job_id"]]
    assert core.get(b["job_id"])["queue_position"] == 1 and core.get(c["job_id"])["queue_position"] == 2
    assert launcher.launched == [(a["job_id"], 1, None)]
    RunnerSim(core, a["job_id"], 1).exit("completed")
    assert core.get(a["job_id"])["status"] == "completed"
    assert {core.get(b["job_id"])["status"], core.get(c["job_id"])["status"]} == {"pending"}


def test_higher_priority_jumps_ahead_but_never_preempts(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 2}))
    first = core.submit(spec(num_workers=2))
    low = core.submit(spec(num_workers=2))
    high = core.submit(spec(num_workers=2, priority=10))
    assert core.get(first["job_id"])["status"] == "pending"
    assert core.get(high["job_id"])["queue_position"] == 1 and core.get(low["job_id"])["queue_position"] == 2


def test_impossible_and_malformed_specs_store_nothing(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 4}))
    with pytest.raises(DoesNotFit) as err:
        core.submit(spec(num_workers=3, resources_per_worker={"CPU": 2}))
    assert "CPU=6" in err.value.message and "CPU=4" in err.value.message
    with pytest.raises(DoesNotFit, match="GPU=1"):
        core.submit(spec(use_gpu=True))
    with pytest.raises(InvalidSpec, match="num_workers"):
        core.submit(spec(num_workers="many"))
    with pytest.raises(InvalidSpec, match="unknown workload"):
        core.submit({"workload": "nope"})
    assert core.count() == 0 and core.store.count_jobs() == 0


def test_unknown_job(make_core) -> None:
    core = make_core()
    for call in (core.get, core.pause, core.resume, core.cancel, core.checkpoints):
        with pytest.raises(JobNotFound, match="job_missing"):
            call("job_missing")


def test_pause_queued_leaves_the_queue_and_resume_keeps_its_place(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    core.submit(spec())
    a, b = core.submit(spec()), core.submit(spec())
    result = core.pause(a["job_id"])
    assert result["previous_status"] == "queued" and result["status"] == "paused" and result["paused_at"]
    assert core.get(b["job_id"])["queue_position"] == 1
    resumed = core.resume(a["job_id"])
    assert resumed["queue_position"] == 1 and resumed["checkpoint_path"] is None  # submitted before b
    assert core.get(b["job_id"])["queue_position"] == 2


def test_pause_pending_abandons_the_start(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 1}), launcher)
    a = core.submit(spec())
    b = core.submit(spec())
    result = core.pause(a["job_id"])
    assert (result["previous_status"], result["status"]) == ("pending", "paused")
    assert launcher.stops == [(a["job_id"], 1)]
    assert core.get(b["job_id"])["status"] == "queued"  # a's runner still holds the CPU
    RunnerSim(core, a["job_id"], 1).exit("stopped")
    assert core.get(b["job_id"])["status"] == "pending"  # the freed CPU went to b


def test_pause_running_stops_after_next_checkpoint(make_core) -> None:
    launcher, clock = FakeLauncher(), FakeClock()
    core = make_core(FakeCluster(), launcher, clock)
    job_id, sim = _running(core, launcher)
    sim.report(0, "/x/ck0")
    result = core.pause(job_id)
    assert (result["status"], launcher.pauses) == ("pausing", [(job_id, 1)])
    again = core.pause(job_id)
    assert again["status"] == "pausing" and "nothing changed" in again["message"]
    sim.report(1)
    clock.advance(3)
    sim.report(2, "/x/ck2")
    clock.advance(1)
    sim.exit("paused")
    job = core.get(job_id)
    assert job["status"] == "paused" and job["checkpoint_path"] == "/x/ck2"
    assert job["lost_work"] == {"reports": 0, "seconds": 1.0, "steps": None, "since_checkpoint": "/x/ck2"}
    assert core.pause(job_id)["message"].startswith("job is already paused")


def test_pause_deadline_stops_at_last_checkpoint_and_counts_lost_work(make_core, tmp_path) -> None:
    launcher, clock = FakeLauncher(), FakeClock()
    core = make_core(FakeCluster(), launcher, clock)
    job_id, sim = _running(core, launcher)
    sim.report(0)
    sim.report(1, "/x/ck1")
    clock.advance(2)
    sim.report(2)
    sim.report(3)
    core.pause(job_id, deadline_s=5)
    clock.advance(4)
    core.tick()
    assert core.get(job_id)["status"] == "pausing"
    clock.advance(1)
    core.tick()
    job = core.get(job_id)
    assert job["status"] == "paused" and job["checkpoint_path"] == "/x/ck1"
    assert launcher.stops == [(job_id, 1)]
    assert job["lost_work"] == {"reports": 2, "seconds": 7.0, "steps": 2, "since_checkpoint": "/x/ck1"}
    sim.exit("failed", error="killed")  # the killed runner's late word changes nothing
    assert core.get(job_id)["status"] == "paused"


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), float("inf")])
def test_bad_deadline(make_core, deadline) -> None:
    core = make_core()
    job = core.submit(spec())
    with pytest.raises(InvalidSpec, match="deadline_s"):
        core.pause(job["job_id"], deadline_s=deadline)
    assert core.get(job["job_id"])["status"] == "pending"


def test_illegal_pause_and_resume_are_conflicts(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster(), launcher)
    job_id, sim = _running(core, launcher)
    with pytest.raises(IllegalTransition, match="cannot resume"):
        core.resume(job_id)
    sim.exit("completed")
    with pytest.raises(IllegalTransition, match="it is completed") as err:
        core.pause(job_id)
    assert err.value.fields == {"job_id": job_id, "status": "completed", "target": "paused", "action": "pause"}
    with pytest.raises(IllegalTransition):
        core.cancel(job_id)


def test_resume_from_latest_older_and_refused_checkpoints(make_core, tmp_path) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster(), launcher)
    job_id, sim = _running(core, launcher)
    root = core.job_root(core.store.get_job(job_id))
    older, newer = f"{root}/attempt-1/checkpoint_a", f"{root}/attempt-1/checkpoint_b"
    sim.report(1, older)
    sim.report(3, newer)
    sim.exit("failed", error="RuntimeError: boom")
    job = core.get(job_id)
    assert job["status"] == "failed" and job["error"] == "RuntimeError: boom"

    with pytest.raises(CheckpointRefused, match="outside the job's storage"):
        core.resume(job_id, checkpoint_path="/etc/passwd")
    with pytest.raises(CheckpointRefused, match="outside"):
        core.resume(job_id, checkpoint_path=f"{root}/../other_job/attempt-1/checkpoint_a")
    with pytest.raises(CheckpointRefused, match="never recorded"):
        core.resume(job_id, checkpoint_path=f"{root}/attempt-1/checkpoint_zzz")
    assert core.get(job_id)["status"] == "failed"  # refused resumes change nothing

    result = core.resume(job_id, checkpoint_path=older)
    assert (result["previous_status"], result["checkpoint_path"]) == ("failed", older)
    assert launcher.launched[-1] == (job_id, 2, older)
    job = core.get(job_id)
    assert job["attempt"] == 2 and job["error"] is None
    assert [c["path"] for c in core.checkpoints(job_id)] == [newer, older]


def test_resume_without_checkpoint_starts_over(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster(), launcher)
    job_id, _sim = _running(core, launcher)
    core.cancel(job_id)
    result = core.resume(job_id)
    assert result["checkpoint_path"] is None and "starts over" in result["message"]
    assert launcher.launched[-1] == (job_id, 2, None)


def test_resume_verification_warns_when_checkpoint_ignored(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster(), launcher)
    job_id, sim = _running(core, launcher)
    ck = f"{core.job_root(core.store.get_job(job_id))}/attempt-1/ck5"
    sim.report(5, ck)
    core.pause(job_id)
    sim.exit("paused")
    core.resume(job_id)
    sim2 = RunnerSim(core, job_id, 2)
    sim2.report(0)
    assert "ignored its checkpoint" in core.get(job_id)["warning"]

    core.pause(job_id)
    sim2.exit("failed", error="x")
    core.resume(job_id, checkpoint_path=ck)
    RunnerSim(core, job_id, 3).report(6)
    assert core.get(job_id)["warning"] is None


def test_cancel_running_frees_resources_for_the_next_job(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 1}), launcher)
    job_id, sim = _running(core, launcher)
    nxt = core.submit(spec())
    assert core.get(nxt["job_id"])["status"] == "queued"
    assert core.cancel(job_id)["status"] == "cancelled"
    assert launcher.stops == [(job_id, 1)]
    assert core.get(nxt["job_id"])["status"] == "queued"  # not before the run has stopped
    sim.exit("stopped")
    assert core.get(nxt["job_id"])["status"] == "pending"
    assert core.cancel(job_id)["status"] == "cancelled"  # idempotent


def test_reports_from_a_stale_attempt_are_ignored(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster(), launcher)
    job_id, sim = _running(core, launcher)
    core.cancel(job_id)
    core.resume(job_id)
    sim.report(9, "/x/old")  # attempt 1's runner, late
    assert core.get(job_id)["checkpoint_path"] is None and core.reports(job_id) == []


def test_launch_failure_fails_the_job_with_its_reason(make_core) -> None:
    core = make_core(FakeCluster(), FakeLauncher(fail_launch=True))
    job = core.submit(spec())
    got = core.get(job["job_id"])
    assert got["status"] == "failed" and "no runner for you" in got["error"]


def test_recovery_after_restart(make_core) -> None:
    """A new core over the same store keeps live runners, settles the rest, stops orphans."""
    launcher = FakeLauncher()
    cluster = FakeCluster({"CPU": 8})
    core = make_core(cluster, launcher)
    live, _sim_live = _running(core, launcher)
    gone, _ = _running(core, launcher)
    pausing, _ = _running(core, launcher)
    core.pause(pausing)
    starting = core.submit(spec())["job_id"]
    waiting = core.submit(spec(num_workers=8))["job_id"]

    launcher2 = FakeLauncher()
    core2 = make_core(cluster, launcher2)  # same db file: a restart
    # an old attempt of one of its jobs is an orphan; a job it does not know is another registry's
    core2.recover({(live, 1), (pausing, 1), (gone, 7), ("job_of_another_registry", 3)})
    assert core2.get(live)["status"] == "running"
    gone_job = core2.get(gone)  # its run went with its runner: requeued from its checkpoint, not failed
    assert gone_job["status"] == "queued" and gone_job["retries"] == 1 and gone_job["not_before"]
    assert "not found after a scheduler restart" in core2.history(gone)["transitions"][-1]["reason"]
    assert launcher2.pauses == [(pausing, 1)]  # the pause request is repeated
    assert core2.get(starting)["status"] == "pending" and core2.get(starting)["attempt"] == 2  # requeued, restarted
    assert core2.get(waiting)["status"] == "queued"
    assert (gone, 7) in launcher2.stops and ("job_of_another_registry", 3) not in launcher2.stops
    RunnerSim(core2, live, 1).exit("completed")
    assert core2.get(live)["status"] == "completed"



def test_a_job_still_pausing_for_a_shutdown_when_trainq_starts_again_goes_back_to_the_queue(make_core) -> None:
    # Found by the model test (tests/core/test_core_model.py): its pause ended after the restart,
    # and it stayed paused though trainq was running again (only those paused before were requeued).
    launcher = FakeLauncher()
    cluster = FakeCluster({"CPU": 8})
    core = make_core(cluster, launcher)
    job, sim = _running(core, launcher)
    core.drain(grace_s=0)
    assert core.get(job)["status"] == "pausing" and core.draining
    restarted = make_core(cluster, FakeLauncher())  # same db file: trainq starts again
    restarted.recover({(job, 1)})
    assert not restarted.draining
    sim.core = restarted
    sim.report(1, "/s/j/ck1")
    sim.exit("paused")
    again = restarted.get(job)
    assert again["status"] == "pending" and again["attempt"] == 2, again  # requeued, and started at once
    assert "trainq started again after a shutdown" in restarted.history(job)["transitions"][-2]["reason"]

def test_pause_resume_cancel_race_never_leaves_an_illegal_state(make_core) -> None:
    """Every interleaving of verbs and runner events keeps each recorded transition legal."""
    import itertools
    import random

    from scheduler.states import allowed

    rng = random.Random(7)
    launcher, clock = FakeLauncher(), FakeClock()
    core = make_core(FakeCluster({"CPU": 2}), launcher, clock)
    jobs = [core.submit(spec())["job_id"] for _ in range(3)]
    for _ in range(600):
        job_id = rng.choice(jobs)
        attempt = core.store.get_job(job_id).attempt
        sim = RunnerSim(core, job_id, attempt)
        sim.seq = rng.randint(0, 10_000)
        action = rng.choice(["pause", "pause_deadline", "resume", "cancel", "started", "report",
                             "checkpoint", "exit_paused", "exit_completed", "exit_failed", "tick", "lost"])
        clock.advance(rng.random())
        try:
            if action == "pause":
                core.pause(job_id)
            elif action == "pause_deadline":
                core.pause(job_id, deadline_s=0.5)
            elif action == "resume":
                core.resume(job_id)
            elif action == "cancel":
                core.cancel(job_id)
            elif action == "started":
                sim.started()
            elif action == "report":
                sim.report(rng.randint(0, 9))
            elif action == "checkpoint":
                sim.report(rng.randint(0, 9), f"{core.job_root(core.store.get_job(job_id))}/a/ck{rng.random()}")
            elif action.startswith("exit_"):
                sim.exit(action[5:], error="e")
            elif action == "tick":
                core.tick()
            else:
                core.on_runner_lost(job_id, attempt, "test")
        except IllegalTransition:
            pass
        active = [j for j in jobs if core.store.get_job(j).status.value in ("pending", "running", "pausing")]
        assert len(active) <= 2  # never more than the cluster holds
    for job_id in jobs:
        history = core.store.transitions(job_id)
        for before, after in itertools.pairwise(history):
            assert before.to_status == after.from_status
            assert allowed(after.from_status, after.to_status)


def test_local_working_dir_must_exist_where_the_scheduler_runs(make_core, tmp_path) -> None:
    core = make_core()
    with pytest.raises(InvalidSpec, match="does not exist on the scheduler's machine") as err:
        core.submit(spec(runtime_env={"working_dir": "/no/such/dir"}))
    assert err.value.fields["field"] == "runtime_env.working_dir"
    core.submit(spec(runtime_env={"working_dir": str(tmp_path)}))
    core.submit(spec(runtime_env={"working_dir": "s3://bucket/code.zip"}))
    assert core.count() == 2


def test_autoscaler_is_asked_for_the_blocked_head_once(make_core) -> None:
    cluster = FakeCluster({"CPU": 2}, maximum={"CPU": 8})
    core = make_core(cluster)
    first = core.submit(spec(num_workers=2))
    big = core.submit(spec(num_workers=6))
    core.submit(spec(num_workers=1))
    core.tick()
    core.tick()
    assert cluster.requests == [[{"CPU": 6.0}]]  # asked once, not on every decision
    core.cancel(big["job_id"])
    assert cluster.requests[-1] == [{"CPU": 1.0}]  # the new head
    RunnerSim(core, first["job_id"], 1).exit("completed")
    assert cluster.requests[-1] == []  # withdrawn once the head fits
