"""Elastic jobs in the core (issue 31): start with what fits, grow into idle room at a checkpoint,
shrink instead of pausing whole; a fake launcher, cluster (per-node sizes) and clock."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.states import JobStatus

ELASTIC = {"min": 1, "max": 3}


def _core(make_core, cpus: float = 4, nodes: int | None = None, **settings):
    launcher, clock = FakeLauncher(), FakeClock()
    cluster = FakeCluster({"CPU": cpus})
    if nodes is not None:
        per = [{"CPU": cpus / nodes} for _ in range(nodes)]
        cluster.node_sizes, cluster.free_per_node = per, [dict(n) for n in per]
    core = make_core(cluster, launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", **settings)
    return core, launcher, clock, cluster


def _workers_launched(launcher, job_id: str) -> list[int]:
    return [launcher.specs[(j, a)]["num_workers"] for j, a, _ in launcher.launched if j == job_id]


def _attempt_workers(core, job_id: str) -> list[int]:
    return [a["workers"] for a in core.history(job_id)["attempts"]]


def test_an_elastic_job_starts_with_as_many_workers_as_fit_and_counts_what_it_holds(make_core) -> None:
    core, launcher, _, _ = _core(make_core, cpus=4)
    first = core.submit(spec(num_workers=2))["job_id"]
    job = core.submit(spec(num_workers=ELASTIC))["job_id"]
    got = core.get(job)
    assert got["status"] == "pending" and got["workers"] == 2  # 2 of 4 CPUs were free: 2 of at most 3
    assert core.get(first)["workers"] == 2 and _workers_launched(launcher, job) == [2]
    assert "with 2 of 1-3 workers" in core.history(job)["transitions"][-1]["reason"]
    assert _attempt_workers(core, job) == [2]
    # what it holds is what it runs with: nothing is free for another one-CPU job
    third = core.submit(spec())["job_id"]
    assert core.get(third)["status"] == "queued"


def test_an_elastic_job_waits_until_its_fewest_fit(make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=4)
    core.submit(spec(num_workers=3))
    job = core.submit(spec(num_workers={"min": 2, "max": 4}))["job_id"]
    assert core.get(job)["status"] == "queued"


def test_it_grows_into_idle_room_at_its_next_checkpoint_after_the_interval(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=4, resize_min_interval_s=60)
    other = core.submit(spec(num_workers=2))["job_id"]
    job = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    RunnerSim(core, other, 1).started()
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/e/ck0")
    RunnerSim(core, other, 1).exit("completed")  # two CPUs idle, nothing queued
    core.tick()
    assert core.get(job)["status"] == "running"  # not within 60 s of its start (the churn bound)
    clock.advance(61)
    core.tick()
    grown = core.get(job)
    assert grown["status"] == "pausing" and grown["pause_reason"] == "resize"
    assert "growing from 2 to 3 workers into idle capacity" in core.history(job)["transitions"][-1]["reason"]
    assert grown["preemptions"] == 0
    sim.report(1, "/s/e/ck1")
    sim.exit("paused")
    again = core.get(job)
    assert again["status"] == "pending" and again["attempt"] == 2 and again["workers"] == 3
    assert launcher.launched[-1] == (job, 2, "/s/e/ck1")  # from the checkpoint it paused at
    assert _workers_launched(launcher, job) == [2, 3] and _attempt_workers(core, job) == [2, 3]
    assert again["retries"] == 0


def test_the_interval_counts_from_when_the_workers_started_not_from_the_admission(make_core) -> None:
    # A start longer than the interval (a GPU job loading its model) must not use the churn bound
    # up: the job was grown the moment it ran, paying a whole restart for nothing (seen on a real
    # Ray in the elastic scenario: a grow 0.06 s after a 10 s start).
    core, launcher, clock, _ = _core(make_core, cpus=4, resize_min_interval_s=60)
    other = core.submit(spec(num_workers=2))["job_id"]
    job = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    RunnerSim(core, other, 1).started()
    RunnerSim(core, other, 1).exit("completed")  # two CPUs idle, nothing queued
    clock.advance(90)  # still starting, for longer than the interval
    core.tick()
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/e/ck0")
    clock.advance(5)
    core.tick()
    assert core.get(job)["status"] == "running" and launcher.pauses == []  # 5 s of running, 95 since admitted
    clock.advance(56)
    core.tick()
    grown = core.get(job)
    assert grown["status"] == "pausing" and grown["pause_reason"] == "resize"
    assert launcher.pauses == [(job, 1)]


def test_no_grow_into_room_a_queued_job_can_use(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=4, resize_min_interval_s=0)
    job = core.submit(spec(num_workers={"min": 1, "max": 4}))["job_id"]  # takes all four
    sim = RunnerSim(core, job, 1)
    sim.started()
    assert core.get(job)["workers"] == 4
    clock.advance(100)
    core.tick()
    assert core.get(job)["status"] == "running"  # at its max: nothing to grow


def test_a_higher_priority_job_shrinks_an_elastic_one_instead_of_pausing_it_whole(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=3)
    job = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/e/ck0")
    assert core.get(job)["workers"] == 3
    clock.advance(5)
    high = core.submit(spec(priority=10))["job_id"]
    shrinking = core.get(job)
    assert shrinking["status"] == "pausing" and shrinking["pause_reason"] == "resize"
    assert shrinking["preempted_by"] == high and shrinking["preemptions"] == 1
    reason = core.history(job)["transitions"][-1]["reason"]
    assert f"shrinking from 3 to 2 workers for {high} (priority 10 > 0)" in reason, reason
    sim.report(1, "/s/e/ck1")
    sim.exit("paused")
    assert core.get(high)["status"] == "pending"  # the room went to the job it was made for
    again = core.get(job)
    assert again["status"] == "pending" and again["workers"] == 2 and launcher.launched[-1] == (job, 2, "/s/e/ck1")
    assert any(r.startswith(f"shrinking for {high}") for r in
               (t["reason"] for t in core.history(job)["transitions"]))
    assert core.history(job)["attempts"][0]["lost_work"]["since_checkpoint"] == "/s/e/ck1"


def test_a_shrink_never_goes_below_min_and_then_the_job_is_paused_whole(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=3)
    job = core.submit(spec(num_workers={"min": 2, "max": 3}, min_runtime_s=0))["job_id"]
    RunnerSim(core, job, 1).started()
    clock.advance(5)
    high = core.submit(spec(num_workers=2, priority=10))["job_id"]  # needs two: one above min is not enough
    paused = core.get(job)
    assert paused["status"] == "pausing" and paused["pause_reason"] == "preempt" and paused["preempted_by"] == high


def test_a_fixed_size_job_shows_its_workers_and_is_launched_with_its_spec(make_core) -> None:
    core, launcher, _, _ = _core(make_core, cpus=4)
    job = core.submit(spec(num_workers=2))["job_id"]
    assert core.get(job)["workers"] == 2 and _workers_launched(launcher, job) == [2]


def test_no_grow_while_a_job_that_could_start_waits(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=4, resize_min_interval_s=0)
    other = core.submit(spec(num_workers=2))["job_id"]
    job = core.submit(spec(num_workers=ELASTIC))["job_id"]  # 2 of at most 3
    RunnerSim(core, other, 1).started()
    RunnerSim(core, job, 1).started()
    big = core.submit(spec(num_workers=3))["job_id"]  # waits for the other job's 2 CPUs and one more
    RunnerSim(core, other, 1).exit("completed")  # 2 CPUs idle: enough for a grow, not for the waiting job
    clock.advance(100)
    core.tick()
    assert core.get(job)["status"] == "running" and core.get(big)["status"] == "queued"


def test_after_a_grow_it_waits_for_the_room_ray_still_shows_taken_rather_than_start_smaller(make_core) -> None:
    core, launcher, clock, cluster = _core(make_core, cpus=4, nodes=2, resize_min_interval_s=0)
    other = core.submit(spec(num_workers=2, placement_strategy="STRICT_PACK"))["job_id"]
    cluster.free_per_node = [{"CPU": 0.0}, {"CPU": 2.0}]  # Ray placed it on node 0
    job = core.submit(spec(num_workers={"min": 1, "max": 4}))["job_id"]
    cluster.free_per_node = [{"CPU": 0.0}, {"CPU": 0.0}]
    assert core.get(job)["workers"] == 2
    RunnerSim(core, other, 1).started()
    sim = RunnerSim(core, job, 1)
    sim.started()
    RunnerSim(core, other, 1).exit("completed")
    cluster.free_per_node = [{"CPU": 2.0}, {"CPU": 0.0}]
    clock.advance(1)
    core.tick()
    assert core.get(job)["status"] == "pausing"  # growing to 4
    sim.report(3, "/s/e/ck3")
    sim.exit("paused")
    # Ray still shows the stopped run's workers on node 1: not room for 4, though 4 are free by trainq's count
    held = core.get(job)
    assert held["status"] == "queued" and held["pending_reason"]["code"] == "resizing", held
    assert "its resize to 4 workers" in held["pending_reason"]["message"]
    cluster.free_per_node = [{"CPU": 2.0}, {"CPU": 2.0}]  # released
    clock.advance(1)
    # A dry run asks the pass's own questions first: it must not use up the answer the pass acts on.
    core.dry.ask(spec(priority=-1))
    core.tick()
    again = core.get(job)
    assert again["status"] == "pending" and again["workers"] == 4 and launcher.launched[-1] == (job, 2, "/s/e/ck3")


def test_a_grow_that_never_gets_its_room_starts_with_what_fits_after_a_while(make_core) -> None:
    core, _, clock, cluster = _core(make_core, cpus=4, nodes=2, resize_min_interval_s=0)
    cluster.free_per_node = [{"CPU": 2.0}, {"CPU": 2.0}]
    job = core.submit(spec(num_workers={"min": 1, "max": 4}, min_runtime_s=0))["job_id"]
    assert core.get(job)["workers"] == 4
    cluster.free_per_node = [{"CPU": 0.0}, {"CPU": 0.0}]
    sim = RunnerSim(core, job, 1)
    sim.started()
    clock.advance(10)
    high = core.submit(spec(num_workers=2, priority=5))["job_id"]  # shrinks it to 2
    sim.report(1, "/s/e/ck1")
    sim.exit("paused")
    cluster.free_per_node = [{"CPU": 2.0}, {"CPU": 2.0}]  # Ray released the run's workers
    core.tick()
    assert core.get(high)["status"] == "pending" and core.get(job)["workers"] == 2
    cluster.free_per_node = [{"CPU": 0.0}, {"CPU": 0.0}]
    RunnerSim(core, job, 2).started()
    RunnerSim(core, high, 1).started()
    RunnerSim(core, high, 1).exit("completed")
    cluster.free_per_node = [{"CPU": 2.0}, {"CPU": 0.0}]  # Ray shows only what the high job freed
    clock.advance(1)
    core.tick()
    assert core.get(job)["status"] == "pausing"
    RunnerSim(core, job, 2).report(5, "/s/e/ck5")
    RunnerSim(core, job, 2).exit("paused")
    assert core.get(job)["pending_reason"]["code"] == "resizing"  # Ray never shows node 1 free again
    clock.advance(31)
    core.tick()
    again = core.get(job)
    assert again["status"] == "pending" and again["workers"] == 2, again  # what the nodes hold, after the wait


def test_workers_grown_into_are_taken_back_by_shrinks_for_a_job_of_its_priority_once_lent_long_enough(
        make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=3, resize_min_interval_s=60)
    job = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/e/ck0")
    assert core.get(job)["workers"] == 3  # nothing waited: it took the idle room
    other = core.submit(spec())["job_id"]  # the same priority
    assert core.get(other)["status"] == "queued" and core.get(job)["status"] == "running"  # a young loan stays
    clock.advance(61)
    core.tick()
    shrinking = core.get(job)
    assert shrinking["status"] == "pausing" and shrinking["pause_reason"] == "resize"
    assert shrinking["preempted_by"] == other
    assert core.get(other)["pending_reason"]["code"] == "preempting"
    reason = core.history(job)["transitions"][-1]["reason"]
    assert f"shrinking from 3 to 2 workers for {other} (workers it grew into while idle are taken back" in reason
    sim.report(1, "/s/e/ck1")
    sim.exit("paused")
    # Three CPUs are free and it is ahead in the queue: it starts again at the size planned, not all three.
    assert core.get(job)["status"] == "pending" and core.get(job)["workers"] == 2
    assert core.get(other)["status"] == "pending"
    assert _workers_launched(launcher, job) == [3, 2]


def test_a_fixed_size_job_of_the_same_priority_is_never_paused_for_a_waiting_one(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=2, resize_min_interval_s=60)
    job = core.submit(spec(num_workers=2, min_runtime_s=0))["job_id"]
    RunnerSim(core, job, 1).started()
    core.submit(spec())
    clock.advance(600)
    core.tick()
    assert core.get(job)["status"] == "running" and launcher.pauses == []


def test_a_reclaim_of_a_guarantee_shrinks_a_borrowing_elastic_job_before_pausing_it(make_core) -> None:
    from scheduler.users import parse_users

    core, _, clock, _ = _core(make_core, cpus=4)
    core.users = parse_users("""
users:
  alice: {token: "alice-token-123", quota: {guaranteed: {CPU: 2}, max: {CPU: 4}}}
  bob: {token: "bob-token-4567", quota: {guaranteed: {CPU: 2}, max: {CPU: 4}}}
""")
    job = core.submit(spec(num_workers={"min": 1, "max": 4}, min_runtime_s=0), owner="alice")["job_id"]
    assert core.get(job)["workers"] == 4 and core.get(job)["borrowing"] is True
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/a/ck0")
    clock.advance(10)
    theirs = core.submit(spec(), owner="bob")["job_id"]  # within bob's guarantee
    shrinking = core.get(job)
    assert shrinking["status"] == "pausing" and shrinking["pause_reason"] == "resize"
    assert "shrinking from 4 to 3 workers" in core.history(job)["transitions"][-1]["reason"]
    assert "guarantee is reclaimed" in core.history(job)["transitions"][-1]["reason"]
    sim.exit("paused")
    assert core.get(theirs)["status"] == "pending" and core.get(job)["workers"] == 3


@pytest.mark.parametrize("cap,types", [("{CPU: 2}", None), ('{CPU: 4, "CPU:A": 2}', ["A", "B"])])
def test_an_elastic_job_never_grows_past_its_owners_max_and_so_is_never_relaunched_for_nothing(
        make_core, cap: str, types: list[str] | None) -> None:
    # Found by the model test: the grow ignored quotas (read through a lazy mapping that looked
    # empty), planned a size the owner's max forbids, and the relaunch was admitted at the size it
    # had: a pause and a relaunch every interval, for ever. With types, the cap is per type.
    from scheduler.users import parse_users

    core, launcher, clock, cluster = _core(make_core, cpus=4, nodes=1 if types else None, resize_min_interval_s=60)
    if types:
        cluster.total = {"CPU": 4.0, "accelerator_type:A": 1.0}
        cluster.node_sizes, cluster.free_per_node = [dict(cluster.total)], [dict(cluster.total)]
    core.users = parse_users(f"""
users:
  alice: {{token: "alice-token-123", quota: {{max: {cap}}}}}
""")
    extra = {"accelerator_type": types} if types else {}
    job = core.submit(spec(num_workers={"min": 1, "max": 4}, min_runtime_s=0, **extra), owner="alice")["job_id"]
    assert core.get(job)["workers"] == 2  # its owner's max, with two CPUs idle beside it
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/a/ck0")
    for _ in range(3):
        clock.advance(100)
        core.tick()
        assert core.get(job)["status"] == "running", core.history(job)["transitions"][-1]["reason"]
    assert core.get(job)["attempt"] == 1 and len(launcher.launched) == 1


def test_after_a_grow_it_waits_while_its_stopping_attempt_still_counts_against_its_owners_max(make_core) -> None:
    # Found by the model test: a run stopped at its pause deadline is requeued before it has
    # released its workers; the room was there, so the grown job started again at once, smaller
    # than before (its old attempt still counted against its owner's max), and grew again, for ever.
    from scheduler.users import parse_users

    core, launcher, clock, _ = _core(make_core, cpus=8, resize_min_interval_s=0)
    core.users = parse_users('users:\n  alice: {token: "alice-token-123", quota: {max: {CPU: 3}}}\n')
    fixed = core.submit(spec(), owner="alice")["job_id"]
    job = core.submit(spec(num_workers={"min": 1, "max": 4}, min_runtime_s=0), owner="alice")["job_id"]
    assert core.get(job)["workers"] == 2  # her max
    RunnerSim(core, fixed, 1).started()
    RunnerSim(core, job, 1).started()
    RunnerSim(core, fixed, 1).exit("completed")
    assert core.get(job)["status"] == "pausing"  # growing to 3
    clock.advance(600)
    core.tick()  # no checkpoint in time: stopped, requeued, its workers not yet released
    assert launcher.stops == [(job, 1)]
    held = core.get(job)
    assert held["status"] == "queued" and held["pending_reason"]["code"] == "resizing", held
    RunnerSim(core, job, 1).exit("stopped")
    again = core.get(job)
    assert again["status"] == "pending" and again["workers"] == 3, again


def test_with_time_slicing_a_slice_over_shrinks_an_elastic_job_rather_than_rotating_it_out_whole(
        make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=3, time_slice_s=60, resize_min_interval_s=300)
    job = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, job, 1)
    sim.started()
    sim.report(0, "/s/e/ck0")
    other = core.submit(spec())["job_id"]
    clock.advance(61)  # its slice is over; the resize interval is not
    core.tick()
    shrinking = core.get(job)
    assert shrinking["status"] == "pausing" and shrinking["pause_reason"] == "resize", shrinking
    assert launcher.pauses == [(job, 1)]
    sim.exit("paused")
    assert core.get(job)["workers"] == 2 and core.get(other)["status"] == "pending"


def _a_head_waiting_on_a_time_limit(make_core):
    """6 CPUs: F (3 workers, an hour's time limit), G (1) and the elastic L (2 of 1-3) run; H, behind
    L, needs all 6 and cannot start before F's limit; G ends: one CPU idle that H cannot use yet."""
    core, launcher, clock, _ = _core(make_core, cpus=6, resize_min_interval_s=60, preempt_grace_s=120)
    fixed = core.submit(spec(num_workers=3, time_limit_s=3600))["job_id"]
    other = core.submit(spec())["job_id"]
    lender = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    for job_id in (fixed, other, lender):
        RunnerSim(core, job_id, 1).started()
    assert core.get(lender)["workers"] == 2
    head = core.submit(spec(num_workers=6))["job_id"]
    RunnerSim(core, other, 1).exit("completed")
    start = clock.now
    clock.advance(61)
    core.tick()
    return core, launcher, clock, head, lender, start


def test_a_job_ahead_of_a_waiting_head_borrows_its_idle_room_and_gives_it_back_before_the_head_may_start(
        make_core) -> None:
    core, launcher, clock, head, lender, start = _a_head_waiting_on_a_time_limit(make_core)
    grown = core.get(lender)
    assert grown["status"] == "pausing" and grown["pause_reason"] == "resize"
    reason = core.history(lender)["transitions"][-1]["reason"]
    assert f"growing from 2 to 3 workers into idle capacity (1 of them lent by {head}, which waits" in reason
    sim = RunnerSim(core, lender, 1)
    sim.report(1, "/s/l/ck1")
    sim.exit("paused")
    assert core.get(lender)["status"] == "pending" and core.get(lender)["workers"] == 3
    assert core.get(head)["status"] == "queued"
    # Back by F's time limit less the pause's bound (grace 120 s + the 30 s stop margin).
    RunnerSim(core, lender, 2).started()
    clock.now = start + 3600 - 150 - 1
    core.tick()
    assert core.get(lender)["status"] == "running"
    clock.advance(1)
    core.tick()
    back = core.get(lender)
    assert back["status"] == "pausing" and back["pause_reason"] == "resize" and back["preempted_by"] is None
    assert f"giving back the workers {head} lent it: shrinking from 3 to 2 workers" in \
        core.history(lender)["transitions"][-1]["reason"]
    sim = RunnerSim(core, lender, 2)
    sim.report(2, "/s/l/ck2")
    sim.exit("paused")
    # Two CPUs are free and it is ahead of the head: it starts again at its size before the loan.
    again = core.get(lender)
    assert again["status"] == "pending" and again["workers"] == 2
    assert _workers_launched(launcher, lender) == [2, 3, 2] and launcher.launched[-1] == (lender, 3, "/s/l/ck2")
    assert core.get(head)["status"] == "queued"


def test_a_loan_whose_head_is_gone_is_not_given_back(make_core) -> None:
    core, _, clock, head, lender, start = _a_head_waiting_on_a_time_limit(make_core)
    sim = RunnerSim(core, lender, 1)
    sim.report(1, "/s/l/ck1")
    sim.exit("paused")
    RunnerSim(core, lender, 2).started()
    core.cancel(head)
    clock.now = start + 3600
    core.tick()
    assert core.get(lender)["status"] == "running" and core.get(lender)["workers"] == 3


def test_no_loan_when_the_heads_start_rests_on_no_known_end(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=6, resize_min_interval_s=60)
    fixed = core.submit(spec(num_workers=3))["job_id"]  # no time limit: it might end any moment
    other = core.submit(spec())["job_id"]
    lender = core.submit(spec(num_workers=ELASTIC, min_runtime_s=0))["job_id"]
    for job_id in (fixed, other, lender):
        RunnerSim(core, job_id, 1).started()
    head = core.submit(spec(num_workers=6))["job_id"]
    RunnerSim(core, other, 1).exit("completed")
    clock.advance(61)
    core.tick()
    assert core.get(lender)["status"] == "running" and core.get(lender)["workers"] == 2
    assert core.get(head)["status"] == "queued"


def test_a_lender_whose_pause_lasts_until_its_loan_is_due_starts_again_without_the_loan(make_core) -> None:
    core, launcher, clock, head, lender, start = _a_head_waiting_on_a_time_limit(make_core)
    assert core.get(lender)["status"] == "pausing"  # growing on a loan
    clock.now = start + 3600 - 150  # its loop reached no checkpoint until the loan was due
    core.tick()
    sim = RunnerSim(core, lender, 1)
    sim.report(1, "/s/l/ck1")
    sim.exit("paused")
    again = core.get(lender)
    assert again["status"] == "pending" and again["workers"] == 2 and _workers_launched(launcher, lender) == [2, 2]
    clock.advance(60)
    RunnerSim(core, lender, 2).started()
    core.tick()
    assert core.get(lender)["status"] == "running" and core.get(head)["status"] == "queued"  # nothing to give back


def test_an_elastic_job_backfilled_around_a_blocked_head_takes_the_room_the_jobs_behind_it_leave(make_core) -> None:
    core, launcher, _, _ = _core(make_core, cpus=6)
    running = core.submit(spec(num_workers=2, time_limit_s=100))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=6))["job_id"]
    # One batch, so one pass sees both behind the head.
    wide, small = (j.job_id for j in core.submit_many([
        (spec(num_workers={"min": 1, "max": 4}, time_limit_s=50), None, None), (spec(time_limit_s=50), None, None)]))
    assert core.get(head)["status"] == "queued"
    # Both end before the head could start (the running job's limit): 4 CPUs free, one kept for
    # the job backfilled behind the elastic one, which takes the other three rather than its min.
    got = core.get(wide)
    assert got["status"] == "pending" and got["backfill"] == "ends_before" and got["workers"] == 3
    assert _workers_launched(launcher, wide) == [3] and _attempt_workers(core, wide) == [3]
    assert "(backfill: ends_before) with 3 of 1-4 workers" in core.history(wide)["transitions"][-1]["reason"]
    assert core.get(small)["status"] == "pending" and core.get(small)["backfill"] == "ends_before"


def test_a_loan_and_the_resize_it_rides_on_survive_a_scheduler_restart(make_core) -> None:
    core, _, clock, head, lender, start = _a_head_waiting_on_a_time_limit(make_core)
    assert core.get(lender)["status"] == "pausing"  # growing on a loan
    alive = {(j.job_id, j.attempt) for j in core.store.jobs_in([JobStatus.RUNNING, JobStatus.PAUSING])}
    launcher = FakeLauncher()
    restarted = make_core(core.ctx.cluster, launcher, clock)  # a new core over the same registry
    restarted.settings = core.settings
    restarted.recover(alive)
    sim = RunnerSim(restarted, lender, 1)
    sim.report(1, "/s/l/ck1")
    sim.exit("paused")
    assert restarted.get(lender)["workers"] == 3 and launcher.specs[(lender, 2)]["num_workers"] == 3
    RunnerSim(restarted, lender, 2).started()
    clock.now = start + 3600 - 150  # the loan is due: given back before the head may start
    restarted.tick()
    back = restarted.get(lender)
    assert back["status"] == "pausing" and back["pause_reason"] == "resize"
    assert f"giving back the workers {head} lent it" in restarted.history(lender)["transitions"][-1]["reason"]


def test_an_elastic_job_takes_only_the_room_the_jobs_behind_it_leave(make_core) -> None:
    core, launcher, _, _ = _core(make_core, cpus=4)
    wide, fixed = (j.job_id for j in core.submit_many([(spec(num_workers={"min": 1, "max": 4}), None, None),
                                                        (spec(num_workers=2), None, None)]))
    assert core.get(fixed)["status"] == "pending"  # it took 4 and kept the fixed job waiting before
    assert core.get(wide)["workers"] == 2 and _workers_launched(launcher, wide) == [2]


def test_a_head_waiting_for_a_shrink_is_told_when_the_elastic_job_may_give_up_a_worker(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=2)
    job = core.submit(spec(num_workers={"min": 1, "max": 2}, min_runtime_s=300))["job_id"]
    RunnerSim(core, job, 1).started()
    high = core.submit(spec(priority=5))["job_id"]
    reason = core.get(high)["pending_reason"]["message"]
    assert reason.endswith(f"in 300 s room can be made for it: {job} (lower priority) may pause or shrink once past"
                           " its minimum runtime"), reason
    clock.advance(300)
    core.tick()
    shrunk = core.get(job)
    assert shrunk["status"] == "pausing" and shrunk["pause_reason"] == "resize"  # one worker given up, not paused


def test_after_a_restart_a_runner_still_stopping_holds_what_its_attempt_started_with(make_core) -> None:
    # Found by the model test (tests/core/test_core_model.py): the orphan was counted at the size
    # of the job's current attempt (1 CPU here, not its 3), so a restarted scheduler handed out
    # CPUs the stopping runner still held.
    core, launcher, clock, cluster = _core(make_core, cpus=4)
    job = core.submit(spec(num_workers=ELASTIC))["job_id"]
    core.cancel(job)  # attempt 1 (3 workers) is stopping: it holds its 3 CPUs until its runner ends
    core.resume(job)
    assert core.get(job)["attempt"] == 2 and core.get(job)["workers"] == 1  # the one CPU left
    restarted = make_core(cluster, launcher, clock)
    restarted.settings = core.settings
    restarted.recover({(job, 1), (job, 2)})  # both runners alive: attempt 1 is an orphan, stopped again
    assert dict(restarted.held) == {(job, 1): {"CPU": 3.0}, (job, 2): {"CPU": 1.0}}
    other = restarted.submit(spec())["job_id"]
    assert restarted.get(other)["status"] == "queued"  # nothing is free until attempt 1's runner ends
    RunnerSim(restarted, job, 1).exit("stopped")
    assert restarted.get(other)["status"] == "pending"


def test_time_slicing_counts_the_service_an_elastic_job_had_at_the_size_it_ran_with(make_core) -> None:
    # Least attained service first (Tiresias): a job that ran with 3 workers had three times the
    # service of one that ran with 1 for as long, not the service of its fewest workers.
    core, _, clock, _ = _core(make_core, cpus=4)
    wide = core.submit(spec(num_workers=ELASTIC))["job_id"]
    sim = RunnerSim(core, wide, 1)
    sim.started()
    clock.advance(100)
    sim.exit("completed")
    narrow = core.submit(spec())["job_id"]
    sim = RunnerSim(core, narrow, 1)
    sim.started()
    clock.advance(100)
    sim.exit("completed")
    capacity, now = {"CPU": 4.0}, clock()
    assert core.snapshot.attained(wide, capacity, now) == pytest.approx(75.0)  # 3/4 of the CPUs × 100 s
    assert core.snapshot.attained(narrow, capacity, now) == pytest.approx(25.0)
