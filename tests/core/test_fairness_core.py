"""Issue 11 wired into the core: fair share, quotas with borrowing and reclaim, backfill, time limits,
time slicing, pending reasons and usage, through ``core.schedule`` with fakes (no Ray)."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.errors import InvalidSpec
from scheduler.users import parse_users

USERS = """
users:
  alice:
    token: "alice-token-123"
    quota: {guaranteed: {CPU: 2}, max: {CPU: 4}}
  bob:
    token: "bob-token-4567"
    quota: {guaranteed: {CPU: 2}, max: {CPU: 4}}
"""

#: alice guaranteed 1 CPU and at most 3: her second job borrows
ALICE_SMALL = USERS.replace("guaranteed: {CPU: 2}, max: {CPU: 4}}", "guaranteed: {CPU: 1}, max: {CPU: 3}}", 1)


def _core(make_core, cpus: float = 4, users: str | None = USERS, maximum: float | None = None, **settings):
    launcher, clock = FakeLauncher(), FakeClock()
    cluster = FakeCluster({"CPU": cpus}, maximum={"CPU": maximum} if maximum is not None else None)
    core = make_core(cluster, launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", **settings)
    core.users = parse_users(users) if users else None
    return core, launcher, clock, cluster


def _owners_of_starts(core, launcher) -> list[str]:
    return [core.get(job_id)["owner"] for job_id, _, _ in launcher.launched]


# -- fair share --------------------------------------------------------------------------------------
def test_two_users_submitting_ten_jobs_each_at_once_start_interleaved_in_one_pass(make_core) -> None:
    users = USERS.replace("max: {CPU: 4}", "max: {CPU: 20}")
    core, launcher, _, cluster = _core(make_core, cpus=0, maximum=20, users=users)
    for owner in ["alice"] * 10 + ["bob"] * 10:
        core.submit(spec(), owner=owner)
    assert [j["owner"] for j in core.queue()] == ["alice", "bob"] * 10  # the queue users see is that order
    assert [j["queue_position"] for j in core.queue()] == list(range(1, 21))
    cluster.total = {"CPU": 20}
    core.schedule()
    assert _owners_of_starts(core, launcher) == ["alice", "bob"] * 10


def test_fair_order_charges_each_job_placed_by_its_time_limit_where_it_has_one(make_core) -> None:
    # A job placed is charged provisionally for its expected run time: its time limit, else an
    # hour (fairshare.DEFAULT_PROVISIONAL_S). Alice's ten 1-minute jobs together weigh less than
    # one of bob's: after his first, hers all go first. (The limits were read through a lazy
    # per-job mapping that is empty until asked; an empty one read as "no limits known".)
    users = USERS.replace("max: {CPU: 4}", "max: {CPU: 20}")
    core, _, _, _ = _core(make_core, cpus=0, maximum=20, users=users)
    for owner in ["alice"] * 10 + ["bob"] * 10:
        core.submit(spec(time_limit_s=60.0) if owner == "alice" else spec(), owner=owner)
    assert [j["owner"] for j in core.queue()] == ["alice", "bob"] + ["alice"] * 9 + ["bob"] * 9


def test_users_take_turns_across_passes_as_their_usage_is_charged(make_core) -> None:
    core, launcher, clock, cluster = _core(make_core, cpus=0, maximum=1)
    for owner in ["alice"] * 3 + ["bob"] * 3:
        core.submit(spec(), owner=owner)
    cluster.total = {"CPU": 1}
    core.tick()
    for _ in range(5):  # each job runs a minute, charged by the ticks, then completes
        job_id, attempt, _ = launcher.launched[-1]
        sim = RunnerSim(core, job_id, attempt)
        sim.started()
        clock.advance(60)
        core.tick()
        sim.exit("completed")
    assert _owners_of_starts(core, launcher) == ["alice", "bob", "alice", "bob", "alice", "bob"]
    assert core.ledger.of("alice", clock()) > 0 and core.ledger.of("bob", clock()) > 0


def test_without_a_users_file_the_order_is_the_plain_queue_order(make_core) -> None:
    core, launcher, _, cluster = _core(make_core, cpus=0, maximum=4, users=None)
    ids = [core.submit(spec(), owner=o)["job_id"] for o in ("x", "x", "y", "y")]
    assert [j["job_id"] for j in core.queue()] == ids
    cluster.total = {"CPU": 4}
    core.schedule()
    assert [j for j, _, _ in launcher.launched] == ids


# -- quotas: borrowing, reclaim, max, refusal -------------------------------------------------------------
def test_jobs_beyond_the_guarantee_borrow_and_are_reclaimed_first_for_a_guarantee(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=4)
    mine = [core.submit(spec(min_runtime_s=0), owner="alice")["job_id"] for _ in range(4)]
    assert [core.get(j)["status"] for j in mine] == ["pending"] * 4  # idle capacity is lent
    assert [core.get(j)["borrowing"] for j in mine] == [False, False, True, True]
    sims = {j: RunnerSim(core, j, 1) for j in mine}
    for j, sim in sims.items():
        sim.started()
        sim.report(1, f"/s/{j}/ck1")
    clock.advance(10)
    theirs = core.submit(spec(), owner="bob")["job_id"]  # within bob's guarantee: reclaims
    pausing = [j for j in mine if core.get(j)["status"] == "pausing"]
    assert len(pausing) == 1 and pausing[0] in mine[2:]
    victim = core.get(pausing[0])
    assert victim["preempted_by"] == theirs and victim["pause_reason"] == "preempt"
    assert "reclaimed" in core.history(pausing[0])["transitions"][-1]["reason"]
    queued = core.get(theirs)
    assert queued["status"] == "queued" and queued["pending_reason"]["code"] == "preempting"
    sims[pausing[0]].exit("paused")  # paused at its checkpoint: requeued by itself
    assert core.get(pausing[0])["status"] == "queued"
    assert core.get(pausing[0])["resume_from"] == f"/s/{pausing[0]}/ck1"
    assert core.get(theirs)["status"] == "pending" and core.get(theirs)["borrowing"] is False
    RunnerSim(core, theirs, 1).started()
    clock.advance(60)
    core.tick()  # the victim, borrowing again if it came back, cannot reclaim in turn: no ping-pong
    assert core.get(pausing[0])["status"] == "queued" and core.get(theirs)["status"] == "running"
    assert not [j for j in mine if core.get(j)["status"] == "pausing"]
    assert core.get(pausing[0])["pending_reason"]["code"] == "resources"


def test_a_reclaimed_guarantee_goes_to_the_job_it_was_reclaimed_for_not_back_to_a_higher_priority_borrower(
        make_core) -> None:
    # Found by the model test: the borrowing victim, of a higher priority, came back ahead of bob's
    # job in the queue and took the room again; the reclaim began again, each of alice's jobs paused
    # in turn, for ever, and bob's job never started.
    core, _, clock, _ = _core(make_core, cpus=4, users=ALICE_SMALL, min_runtime_s=0)
    big = core.submit(spec(resources_per_worker={"CPU": 2}, priority=1), owner="alice")["job_id"]
    small = core.submit(spec(priority=2), owner="alice")["job_id"]
    for job in (big, small):
        sim = RunnerSim(core, job, 1)
        sim.started()
        sim.report(0, f"/s/{job}/ck0")
    bobs = core.submit(spec(resources_per_worker={"CPU": 2}), owner="bob")["job_id"]  # within his guarantee
    assert core.get(big)["status"] == "pausing" and core.get(big)["preempted_by"] == bobs
    RunnerSim(core, big, 1).exit("paused")
    assert core.get(bobs)["status"] == "pending"  # the room reclaimed is his
    assert core.get(big)["status"] == "queued" and core.get(small)["status"] == "running"
    RunnerSim(core, bobs, 1).started()
    clock.advance(60)
    core.tick()  # and a borrower of a higher priority does not pre-empt it back
    assert core.get(bobs)["status"] == "running" and core.get(big)["status"] == "queued"
    assert core.get(small)["status"] == "running" and core.get(small)["attempt"] == 1


def test_a_job_over_its_owners_max_waits_with_reason_quota_and_does_not_block_others(make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=8)
    for _ in range(4):
        core.submit(spec(), owner="alice")
    over = core.submit(spec(), owner="alice")
    assert over["status"] == "queued"
    shown = core.get(over["job_id"])
    assert shown["pending_reason"]["code"] == "quota" and "max of 4" in shown["pending_reason"]["message"]
    assert shown["eta"] is None
    later = core.submit(spec(), owner="bob")  # behind it in the queue, but not held up by alice's max
    assert later["status"] == "pending"


def _bob_reclaims_from_alice(make_core, cpus: float, borrowing: dict):
    """Alice's job within her guarantee and her ``borrowing`` one run; bob's job of 2 CPUs, within
    his guarantee, reclaims from the second: (core, launcher, clock, cluster, her borrower, his job)."""
    core, launcher, clock, cluster = _core(make_core, cpus=cpus, users=ALICE_SMALL, min_runtime_s=0)
    within = core.submit(spec(), owner="alice")["job_id"]
    borrower = core.submit(borrowing, owner="alice")["job_id"]
    for job in (within, borrower):
        RunnerSim(core, job, 1).started()
    bobs = core.submit(spec(num_workers=2), owner="bob")["job_id"]
    assert core.get(borrower)["preempted_by"] == bobs
    return core, launcher, clock, cluster, borrower, bobs


def test_room_reclaimed_for_a_job_is_held_for_it_only_while_it_is_on_its_way(make_core) -> None:
    core, _, _, cluster, borrower, bobs = _bob_reclaims_from_alice(make_core, 4, spec(num_workers=2))
    # While the borrower pauses, alice's next borrowing job waits, ahead of bob's in the queue:
    # it would take his room.
    later = core.submit(spec(priority=1), owner="alice")["job_id"]
    assert core.get(later)["status"] == "queued"
    cluster.total = {"CPU": 2.0}  # a node goes: the room reclaimed no longer holds bob's job
    RunnerSim(core, borrower, 1).exit("paused")
    # Its victim stopped and the room still does not hold it: the hold ends, and the CPU left is
    # used (kept for bob's job it would idle until the cluster grows again).
    assert core.get(bobs)["status"] == "queued" and core.get(later)["status"] == "pending"


def test_room_reclaimed_is_held_until_a_victim_stopped_at_its_deadline_has_released_it(make_core) -> None:
    # Found by the model test: a victim stopped at its pause deadline is requeued at once while its
    # run still holds its workers; the hold ended then (no victim pausing, no room yet), the victim
    # of a higher priority was admitted again into the room as it freed, and reclaimed again.
    core, launcher, clock, _, borrower, bobs = _bob_reclaims_from_alice(make_core, 3, spec(priority=1))
    clock.advance(600)
    core.tick()  # no checkpoint in time: stopped and requeued; its run is still releasing
    assert launcher.stops == [(borrower, 1)] and core.get(borrower)["status"] == "queued"
    RunnerSim(core, borrower, 1).exit("stopped")
    assert core.get(bobs)["status"] == "pending" and core.get(borrower)["status"] == "queued"


def test_room_reclaimed_is_held_while_another_stopped_run_it_counts_on_still_releases(make_core) -> None:
    # Found by the model test: bob's job counted on the room of alice's run stopped at its time
    # limit (on its way) and on her borrower's; the borrower paused, the hold ended while the
    # stopped run still held its workers (no victim of this reclaim left), the borrower was admitted
    # again into the room and reclaimed again, for as long as the stopped run took to release.
    users = ALICE_SMALL.replace("guaranteed: {CPU: 2}, max: {CPU: 4}}", "guaranteed: {CPU: 4}, max: {CPU: 5}}")
    core, launcher, clock, _ = _core(make_core, cpus=5, users=users, min_runtime_s=0)
    within = core.submit(spec(priority=1), owner="alice")["job_id"]
    limited = core.submit(spec(time_limit_s=100), owner="alice")["job_id"]
    borrower = core.submit(spec(priority=1), owner="alice")["job_id"]
    for job in (within, limited, borrower):
        RunnerSim(core, job, 1).started()
    clock.advance(101)
    core.tick()  # its time limit: stopped, its run still releasing
    assert launcher.stops == [(limited, 1)] and core.get(limited)["status"] == "failed"
    bobs = core.submit(spec(num_workers=4), owner="bob")["job_id"]
    # the released run's room and one of her borrowers' (both ahead of his in the queue) make up his 4 CPUs
    victims = [j for j in (within, borrower) if core.get(j)["preempted_by"] == bobs]
    assert len(victims) == 1
    victim = victims[0]
    RunnerSim(core, victim, 1).report(1, f"/s/{victim}/ck1")
    RunnerSim(core, victim, 1).exit("paused")
    for _ in range(3):
        clock.advance(1)
        core.tick()
    assert core.get(victim)["status"] == "queued" and launcher.pauses == [(victim, 1)]
    RunnerSim(core, limited, 1).exit("stopped")
    assert core.get(bobs)["status"] == "pending" and core.get(victim)["status"] == "queued"


def test_an_elastic_job_does_not_grow_beyond_its_owners_guarantee_while_a_guarantee_waits(make_core) -> None:
    # Found by the model test: bob's job, within his guarantee, reclaimed alice's borrowing elastic
    # job (whole: it needs both CPUs); it came back within her guarantee at one worker, grew into
    # the idle CPU bob's job could not use before it ended, borrowing again, and was reclaimed again.
    core, launcher, clock, _ = _core(make_core, cpus=2, users=ALICE_SMALL, min_runtime_s=0, resize_min_interval_s=60)
    elastic = core.submit(spec(num_workers={"min": 1, "max": 2}, priority=1, time_limit_s=1000), owner="alice")
    job = elastic["job_id"]
    assert core.get(job)["workers"] == 2 and core.get(job)["borrowing"]
    RunnerSim(core, job, 1).started()
    bobs = core.submit(spec(num_workers=2), owner="bob")["job_id"]
    assert core.get(job)["preempted_by"] == bobs
    RunnerSim(core, job, 1).report(3, "/s/e/ck3")
    RunnerSim(core, job, 1).exit("paused")
    again = core.get(job)  # back first (its priority), within her guarantee
    assert again["status"] == "pending" and again["workers"] == 1 and not again["borrowing"]
    RunnerSim(core, job, 2).started()
    for _ in range(3):
        clock.advance(100)
        core.tick()
    assert core.get(job)["status"] == "running" and core.get(job)["attempt"] == 2
    assert launcher.pauses == [(job, 1)] and core.get(bobs)["status"] == "queued"


def test_a_borrowing_head_pauses_by_priority_only_and_never_another_users_guaranteed_job(make_core) -> None:
    # Found by the model test: a head beyond its owner's guarantee went through the reclaim path,
    # which chose victims by priority without the rule that a borrower pauses no other user's job
    # within its guarantee, and called the pause a reclaim; the two users' jobs paused each other.
    core, _, clock, _ = _core(make_core, cpus=4, users=ALICE_SMALL, min_runtime_s=0)
    guaranteed = core.submit(spec(num_workers=2, priority=1), owner="bob")["job_id"]
    borrowing = core.submit(spec(num_workers=2, priority=1), owner="bob")["job_id"]
    for job in (guaranteed, borrowing):
        RunnerSim(core, job, 1).started()
    clock.advance(600)
    RunnerSim(core, guaranteed, 1).report(9, "/s/g/ck9")  # the cheaper one to pause
    alices = core.submit(spec(num_workers=2, priority=2), owner="alice")["job_id"]  # beyond her guarantee
    assert core.get(guaranteed)["status"] == "running"
    paused = core.get(borrowing)
    assert paused["status"] == "pausing" and paused["preempted_by"] == alices
    assert "priority 2 > 1" in core.history(borrowing)["transitions"][-1]["reason"]


def test_a_job_is_borrowing_while_its_owners_guarantee_does_not_cover_it_not_for_ever(make_core) -> None:
    # The mark was set at admission: a job admitted beyond alice's guarantee kept it once her older
    # jobs ended, and bob's borrowing job of a higher priority paused it (a borrower may pause no
    # other user's job within its guarantee), for it to reclaim its room back, and so on.
    users = USERS.replace("max: {CPU: 4}}", "max: {CPU: 5}}", 1)
    core, launcher, clock, _ = _core(make_core, cpus=5, users=users, min_runtime_s=0)
    older = core.submit(spec(), owner="alice")["job_id"]  # 1 CPU of her 2 guaranteed
    mid = core.submit(spec(num_workers=2), owner="alice")["job_id"]  # 3: beyond them
    young = core.submit(spec(num_workers=2), owner="alice")["job_id"]
    for job in (older, mid, young):
        RunnerSim(core, job, 1).started()
    assert [core.get(j)["borrowing"] for j in (older, mid, young)] == [False, True, True]
    RunnerSim(core, older, 1).exit("completed")  # her guarantee covers the older of the two now
    assert [core.get(j)["borrowing"] for j in (mid, young)] == [False, True]
    RunnerSim(core, young, 1).exit("completed")
    bobs = core.submit(spec(num_workers=2, priority=1), owner="bob")["job_id"]
    RunnerSim(core, bobs, 1).started()
    borrower = core.submit(spec(num_workers=2, priority=1), owner="bob")["job_id"]  # beyond his
    clock.advance(60)
    core.tick()
    assert core.get(borrower)["status"] == "queued"
    assert core.get(mid)["status"] == "running" and not launcher.pauses


def test_a_job_held_by_its_owners_max_pauses_nobody(make_core) -> None:
    # Found by the model test: alice's job over her max pre-empted bob's for its priority, could
    # not start (her max, not the room, held it back), and bob's job started again in the room, to
    # be pre-empted again at its next checkpoint, for ever.
    core, launcher, clock, _ = _core(make_core, cpus=4, users=ALICE_SMALL, min_runtime_s=0)
    alices = core.submit(spec(num_workers=2, priority=1), owner="alice")["job_id"]
    bobs = core.submit(spec(num_workers=2), owner="bob")["job_id"]
    for job in (alices, bobs):
        RunnerSim(core, job, 1).started()
    over = core.submit(spec(num_workers=2, priority=1), owner="alice")["job_id"]  # 4 CPUs: over her max
    behind = core.submit(spec(), owner="alice")["job_id"]  # 3 CPUs: within it, but no room
    clock.advance(60)
    core.tick()
    assert core.get(over)["pending_reason"]["code"] == "quota"
    assert core.get(behind)["status"] == "queued"
    assert core.get(bobs)["status"] == "running" and not launcher.pauses


def test_a_job_larger_than_its_owners_max_is_refused_at_submit_with_the_numbers(make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=8)
    with pytest.raises(InvalidSpec) as e:
        core.submit(spec(num_workers=5), owner="alice")
    assert "5 CPU requested, user 'alice' may hold at most 4" in e.value.message
    assert e.value.fields["field"] == "num_workers"
    assert core.count() == 0


def test_an_unknown_owner_is_refused_and_nothing_is_stored(make_core) -> None:
    core, _, _, _ = _core(make_core)
    with pytest.raises(InvalidSpec) as e:
        core.submit(spec(), owner="mallory")
    assert e.value.fields["field"] == "owner" and "unknown user 'mallory'" in e.value.message
    assert core.count() == 0


# -- time limits and backfill ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -5])
def test_time_limit_must_be_positive(make_core, bad) -> None:
    core, _, _, _ = _core(make_core)
    with pytest.raises(InvalidSpec) as e:
        core.submit(spec(time_limit_s=bad))
    assert e.value.fields["field"] == "time_limit_s" and core.count() == 0


def test_an_attempt_past_its_time_limit_is_stopped_and_the_job_fails_saying_so(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, users=None)
    job_id = core.submit(spec(time_limit_s=30))["job_id"]
    RunnerSim(core, job_id, 1).started()
    clock.advance(29)
    core.tick()
    assert core.get(job_id)["status"] == "running"
    clock.advance(2)
    core.tick()
    job = core.get(job_id)
    assert job["status"] == "failed" and "time limit of 30 s" in job["error"]
    assert (job_id, 1) in launcher.stops
    assert core.history(job_id)["attempts"][0]["outcome"] == "time limit"


def test_backfill_starts_a_job_that_ends_before_the_head_could_start_and_holds_back_one_that_would_not(
        make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=5, users=None)
    running = core.submit(spec(num_workers=3, time_limit_s=100))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=5))["job_id"]
    long = core.submit(spec(time_limit_s=500))["job_id"]
    short = core.submit(spec(time_limit_s=50))["job_id"]
    assert core.get(head)["status"] == "queued"
    assert core.get(short)["status"] == "pending" and core.get(short)["backfill"] == "ends_before"
    waiting = core.get(long)
    assert waiting["status"] == "queued" and waiting["pending_reason"]["code"] == "reserved"
    head_now = core.get(head)
    assert head_now["pending_reason"]["code"] == "resources"
    assert head_now["eta"] is not None and "time limit 100" in head_now["eta_basis"]


def test_with_backfill_off_the_queue_starts_strictly_in_order(make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=5, users=None, backfill=False)
    running = core.submit(spec(num_workers=3, time_limit_s=100))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=5))["job_id"]
    short = core.submit(spec(time_limit_s=50))["job_id"]  # would be backfilled (the test above)
    core.tick()
    assert core.get(head)["status"] == "queued" and core.get(short)["status"] == "queued"
    assert core.get(short)["pending_reason"]["code"] == "reserved"  # it fits, but waits for the head


def test_the_backfill_switch_reads_on_and_off_and_names_a_bad_value(monkeypatch) -> None:
    for raw, on in (("1", True), ("on", True), ("0", False), ("false", False), ("", True)):
        monkeypatch.setenv("TRAINQ_BACKFILL", raw)
        assert Settings().backfill is on
    monkeypatch.setenv("TRAINQ_BACKFILL", "maybe")
    with pytest.raises(ValueError, match="TRAINQ_BACKFILL='maybe' must be 1 or 0"):
        Settings()


def test_a_job_without_a_time_limit_is_never_backfilled_in_front_of_a_head_it_could_delay(make_core) -> None:
    core, _, _, _ = _core(make_core, cpus=4, users=None)
    running = core.submit(spec(num_workers=3, time_limit_s=100))["job_id"]
    RunnerSim(core, running, 1).started()
    core.submit(spec(num_workers=4))
    unknown = core.submit(spec())["job_id"]
    assert core.get(unknown)["status"] == "queued"


# -- time slicing --------------------------------------------------------------------------------------------
def test_time_slicing_rotates_nobody_out_for_a_job_held_by_its_owners_max(make_core) -> None:
    # Found by the model test: bob's job rotated out for his own job over his max, which could not
    # take the turn; the one rotated out started again in its place, to be rotated out again.
    core, launcher, clock, _ = _core(make_core, cpus=6, time_slice_s=60)
    running = [core.submit(spec(num_workers=2, min_runtime_s=0), owner="bob")["job_id"] for _ in range(2)]
    for job in running:
        RunnerSim(core, job, 1).started()
    over = core.submit(spec(num_workers=3), owner="bob")["job_id"]  # 4 + 3: over his max of 4
    clock.advance(61)
    core.tick()
    assert core.get(over)["pending_reason"]["code"] == "quota"
    assert [core.get(j)["status"] for j in running] == ["running", "running"] and not launcher.pauses


def _on_typed_nodes(make_core) -> tuple:
    """Two 1-CPU nodes of types A and B, a job running on each: the one on A has had more service."""
    core, launcher, clock, cluster = _core(make_core, cpus=2, users=None, time_slice_s=60, min_runtime_s=0)
    cluster.total = {"CPU": 2.0, "accelerator_type:A": 1.0, "accelerator_type:B": 1.0}
    cluster.node_sizes = [{"CPU": 1.0, "accelerator_type:A": 1.0}, {"CPU": 1.0, "accelerator_type:B": 1.0}]
    cluster.free_per_node = [dict(n) for n in cluster.node_sizes]
    on_a = core.submit(spec(accelerator_type="A"))["job_id"]
    cluster.free_per_node[0]["CPU"] = 0.0
    RunnerSim(core, on_a, 1).started()
    clock.advance(100)  # it has had more service than the job on B
    on_b = core.submit(spec(accelerator_type="B"))["job_id"]
    cluster.free_per_node[1]["CPU"] = 0.0
    RunnerSim(core, on_b, 1).started()
    return core, launcher, clock, on_a, on_b


def test_time_slicing_rotates_nobody_out_whose_place_the_waiting_job_could_not_use(make_core) -> None:
    # Found by the model test: a job on a node of type A was rotated out for one that needs B; the
    # waiting job could not start, the one rotated out was started again in its place, and so on.
    core, launcher, clock, on_a, on_b = _on_typed_nodes(make_core)
    waiting = core.submit(spec(accelerator_type="B"))["job_id"]
    clock.advance(30)  # the job on A is past its slice, the one on B not yet
    core.tick()
    assert core.get(waiting)["status"] == "queued"
    assert core.get(on_a)["status"] == "running", core.history(on_a)["transitions"][-1]["reason"]
    assert core.get(on_b)["status"] == "running" and not launcher.pauses


def test_time_slicing_rotates_out_the_job_whose_place_the_waiting_one_can_use_not_the_most_served(
        make_core) -> None:
    # The job on A, the most served, is passed over: its place would not hold a job that needs B,
    # and the job on B, served more than the waiting one, makes way instead (it once went without
    # a turn for as long as the job on A ran).
    core, launcher, clock, on_a, on_b = _on_typed_nodes(make_core)
    waiting = core.submit(spec(accelerator_type="B"))["job_id"]
    clock.advance(100)
    core.tick()
    assert core.get(on_a)["status"] == "running"
    rotated = core.get(on_b)
    assert rotated["status"] == "pausing" and rotated["pause_reason"] == "timeslice", rotated
    assert launcher.pauses == [(on_b, 1)] and core.get(waiting)["status"] == "queued"


def test_time_slicing_rotates_a_job_out_at_a_checkpoint_and_requeues_it_behind(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=1, users=None, time_slice_s=60)
    first = core.submit(spec(min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, first, 1)
    sim.started()
    second = core.submit(spec())["job_id"]
    third = core.submit(spec())["job_id"]
    clock.advance(30)
    core.tick()
    assert core.get(first)["status"] == "running"  # its slice is not over yet
    clock.advance(31)
    sim.report(5, "/s/first/ck5")
    core.tick()
    rotated = core.get(first)
    assert rotated["status"] == "pausing" and rotated["pause_reason"] == "timeslice"
    assert launcher.pauses == [(first, 1)]
    sim.exit("paused")
    assert core.get(second)["status"] == "pending"
    back = core.get(first)
    assert back["status"] == "queued" and back["resume_from"] == "/s/first/ck5"
    assert [j["job_id"] for j in core.queue()] == [third, first]  # behind: a new place at the end


def test_a_time_slice_counts_from_when_the_workers_started_not_from_the_admission(make_core) -> None:
    # A start longer than the slice (a GPU job loading its model) must not use the slice up: two
    # jobs then swapped at every checkpoint with almost no step run in either turn (seen on the
    # real Ray: seven attempts of 7 s starts and well under a second of steps each).
    core, launcher, clock, _ = _core(make_core, cpus=1, users=None, time_slice_s=60)
    first = core.submit(spec(min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, first, 1)
    clock.advance(90)  # starting for longer than a slice
    sim.started()
    core.submit(spec())
    clock.advance(5)
    sim.report(1, "/s/first/ck1")
    core.tick()
    assert core.get(first)["status"] == "running"  # 95 s since its admission, 5 s of them running
    clock.advance(56)
    sim.report(6, "/s/first/ck6")
    core.tick()
    rotated = core.get(first)
    assert rotated["status"] == "pausing" and rotated["pause_reason"] == "timeslice"
    assert launcher.pauses == [(first, 1)]


def test_time_slicing_is_switched_on_and_off_without_a_restart(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=1, users=None)
    first = core.submit(spec(min_runtime_s=0))["job_id"]
    sim = RunnerSim(core, first, 1)
    sim.started()
    core.submit(spec())
    clock.advance(120)
    sim.report(5, "/s/first/ck5")
    core.set_time_slice(60)
    assert core.get(first)["status"] == "pausing" and core.get(first)["pause_reason"] == "timeslice"
    for bad in (-1, float("nan"), float("inf"), "60", True):
        with pytest.raises(InvalidSpec, match="time slice"):
            core.set_time_slice(bad)  # type: ignore[arg-type]
    assert core.settings.time_slice_s == 60
    core.set_time_slice(0)
    assert core.settings.time_slice_s == 0


def test_time_slicing_is_off_by_default(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=1, users=None)
    first = core.submit(spec(min_runtime_s=0))["job_id"]
    RunnerSim(core, first, 1).started()
    core.submit(spec())
    clock.advance(10_000)
    core.tick()
    assert core.get(first)["status"] == "running"


# -- why pending -----------------------------------------------------------------------------------------
def test_every_queued_job_says_why_it_waits_and_when(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=2, users=None)
    running = core.submit(spec(num_workers=2, time_limit_s=100))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=2, time_limit_s=60))["job_id"]
    behind = core.submit(spec(num_workers=2))["job_id"]
    queue = {j["job_id"]: j for j in core.queue()}
    assert queue[head]["pending_reason"] == {"code": "resources", "message": "needs 2 CPU, 0 free"}
    assert queue[behind]["pending_reason"]["code"] == "priority"
    assert "1 job ahead (first: " + head in queue[behind]["pending_reason"]["message"]
    from scheduler.jobs import iso
    assert queue[head]["eta"] == iso(clock() + 100) and queue[behind]["eta"] == iso(clock() + 160)
    assert core.get(running)["pending_reason"] is None  # only queued jobs wait
    listed = {j["job_id"]: j for j in core.list()}
    assert listed[head]["pending_reason"]["code"] == "resources"


# -- usage ---------------------------------------------------------------------------------------------
def test_usage_per_user_and_per_job(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=4)
    start = clock()
    a = core.submit(spec(num_workers=2), owner="alice")["job_id"]
    sim = RunnerSim(core, a, 1)
    sim.started()
    sim.report(1, "/s/a/ck1")
    clock.advance(3600)
    core.pause(a)
    sim.exit("paused")
    b = core.submit(spec(), owner="bob")["job_id"]
    RunnerSim(core, b, 1).started()
    clock.advance(1800)
    by_user = {r["user"]: r for r in core.usage("user")["rows"]}
    assert by_user["alice"]["cpu_hours"] == pytest.approx(2.0)
    assert by_user["alice"]["lost_work_s"] == pytest.approx(3600.0)
    assert by_user["alice"]["attempts"] == 1 and by_user["alice"]["jobs"] == 1
    assert by_user["bob"]["cpu_hours"] == pytest.approx(0.5) and by_user["bob"]["gpu_hours"] == 0
    by_job = {r["job_id"]: r for r in core.usage("job", since=start + 3600)["rows"]}
    assert set(by_job) == {a, b}  # a ended at the window's start: it overlaps
    assert by_job[a]["cpu_hours"] == 0 and by_job[b]["user"] == "bob"
    with pytest.raises(InvalidSpec):
        core.usage("team")


def test_an_eta_can_rest_on_a_running_jobs_step_rate(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=1, users=None)
    running = core.submit(spec(config={"total": 100}))["job_id"]
    sim = RunnerSim(core, running, 1)
    sim.started()
    for step in range(10):  # one step a second
        sim.report(step)
        clock.advance(1)
    waiting = core.submit(spec())["job_id"]
    job = core.get(waiting)
    from scheduler.jobs import iso
    assert job["eta"] == iso(clock() + 91) and "step 9 of 100" in job["eta_basis"]


def test_a_preemptible_job_is_backfilled_and_paused_before_the_head_may_start(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=4, users=None, preempt_grace_s=60)
    running = core.submit(spec(num_workers=3, time_limit_s=1000))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=4))["job_id"]
    pinned = core.submit(spec(preemptible=False))["job_id"]
    lent = core.submit(spec())["job_id"]
    assert core.get(pinned)["status"] == "queued"  # no time limit, cannot be paused: never in front
    assert core.get(lent)["status"] == "pending" and core.get(lent)["backfill"] == "preemptible"
    sim = RunnerSim(core, lent, 1)
    sim.started()
    sim.report(1, "/s/lent/ck1")
    clock.advance(1000 - 90 - 1)
    core.tick()
    assert core.get(lent)["status"] == "running"  # not yet: it makes way 90 s (grace + stop) before
    clock.advance(1)
    core.tick()
    paused = core.get(lent)
    assert paused["status"] == "pausing" and paused["preempted_by"] == head
    assert launcher.pauses == [(lent, 1)]
    sim.exit("paused")
    assert core.get(lent)["status"] == "queued" and core.get(lent)["resume_from"] == "/s/lent/ck1"


def test_a_job_that_never_reads_its_checkpoint_is_not_backfilled_on_the_condition_that_it_pauses(make_core) -> None:
    core, _, clock, _ = _core(make_core, cpus=4, users=None, preempt_grace_s=60)
    blind = core.submit(spec())["job_id"]
    sim = RunnerSim(core, blind, 1)
    sim.started()
    sim.report(0, "/s/blind/ck0", read_checkpoint=False)
    core.pause(blind)
    sim.exit("paused")
    running = core.submit(spec(num_workers=3, time_limit_s=1000, preemptible=False))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=4, priority=5))["job_id"]
    core.resume(blind)
    fresh = core.submit(spec())["job_id"]
    assert core.get(head)["status"] == "queued"
    # the fresh job may be paused before the head's turn and resume; the blind one would start over
    assert core.get(fresh)["status"] == "pending" and core.get(fresh)["backfill"] == "preemptible"
    assert core.get(blind)["status"] == "queued" and core.get(blind)["resumable"] is False
    clock.advance(5)
    core.tick()
    assert core.get(blind)["status"] == "queued"


def test_time_slicing_passes_over_a_job_that_never_reads_its_checkpoint(make_core) -> None:
    core, launcher, clock, _ = _core(make_core, cpus=2, users=None, time_slice_s=60)
    blind = core.submit(spec(min_runtime_s=0))["job_id"]
    other = core.submit(spec(min_runtime_s=0))["job_id"]
    sims = {job_id: RunnerSim(core, job_id, 1) for job_id in (blind, other)}
    for sim in sims.values():
        sim.started()
    waiting = core.submit(spec())["job_id"]
    clock.advance(600)  # the blind job has had far more service... but a turn would start it over
    sims[blind].report(9, "/s/blind/ck9", read_checkpoint=False)
    sims[other].report(1, "/s/other/ck1", read_checkpoint=True)
    core.tick()
    assert core.get(blind)["status"] == "running"
    assert core.get(other)["status"] == "pausing" and core.get(other)["pause_reason"] == "timeslice"
    assert launcher.pauses == [(other, 1)]
    sims[other].exit("paused")
    assert core.get(waiting)["status"] == "pending"


def test_a_long_queue_explains_its_first_jobs_in_full_and_the_rest_by_their_place(make_core, monkeypatch) -> None:
    import scheduler.core.views as views_module

    monkeypatch.setattr(views_module, "EXPLAIN_DEPTH", 3)
    core, _, _, _ = _core(make_core, cpus=1, users=None)
    running = core.submit(spec(time_limit_s=100))
    queued = [core.submit(spec(time_limit_s=100))["job_id"] for _ in range(6)]
    assert core.get(running["job_id"])["status"] == "pending"
    shown = core.queue()
    assert [j["job_id"] for j in shown] == queued and [j["queue_position"] for j in shown] == list(range(1, 7))
    assert [j["eta"] is not None for j in shown] == [True] * 3 + [False] * 3  # ETAs for the first three only
    assert shown[0]["pending_reason"]["code"] == "resources"
    for k, job in enumerate(shown[3:], start=3):
        assert job["pending_reason"] == {"code": "priority", "message": f"{k} jobs ahead (first: {queued[0]})"}
        assert job["eta_basis"] == "no estimate: more than 3 jobs ahead"
    assert core.get(queued[5])["pending_reason"] == shown[5]["pending_reason"]  # the same, read alone
    assert [j["pending_reason"] for j in core.list("queued", 2, 0)] == [s["pending_reason"] for s in shown[:-3:-1]]


def test_a_planned_backfill_pause_survives_a_scheduler_restart(make_core) -> None:
    core, _, clock, cluster = _core(make_core, cpus=4, users=None, preempt_grace_s=60)
    running = core.submit(spec(num_workers=3, time_limit_s=1000))["job_id"]
    RunnerSim(core, running, 1).started()
    head = core.submit(spec(num_workers=4))["job_id"]
    lent = core.submit(spec())["job_id"]
    assert core.get(lent)["backfill"] == "preemptible"
    RunnerSim(core, lent, 1).started()
    launcher = FakeLauncher()
    restarted = make_core(cluster, launcher, clock)  # a new core over the same registry
    restarted.settings = core.settings
    restarted.recover({(running, 1), (lent, 1)})
    clock.advance(1000 - 90)
    restarted.tick()
    paused = restarted.get(lent)  # the head's reserved start is kept: the pause was planned before
    assert paused["status"] == "pausing" and paused["preempted_by"] == head
    assert launcher.pauses == [(lent, 1)]
