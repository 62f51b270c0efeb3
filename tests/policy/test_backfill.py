"""Backfill: who may start behind a blocked head, and the head's start is never delayed (simulated)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.policy.backfill import (
    ENDS_BEFORE,
    PREEMPTIBLE,
    SPARE,
    DuePauses,
    Holder,
    PlannedPause,
    due_preemptions,
    plan_backfill,
    reserve,
)
from scheduler.policy.queue import Entry
from scheduler.policy.simulate import SimJob, ideal_makespan, packing, simulate

NOW = 1000.0
CAP = {"GPU": 8.0}


def entry(job_id: str, gpus: float, seq: int) -> Entry:
    return Entry(job_id, 0, seq, {"GPU": float(gpus)})


def test_the_reservation_walks_releases_in_order_and_keeps_what_is_spare() -> None:
    holders = [Holder("late", {"GPU": 4.0}, NOW + 300), Holder("soon", {"GPU": 2.0}, NOW + 100),
               Holder("spare-backfill", {"GPU": 1.0}, None, backfilled=True)]
    r = reserve("head", {"GPU": 3.0}, {"GPU": 1.0}, holders, NOW)
    assert (r.start_at, r.earliest_at, r.spare) == (NOW + 100, NOW + 100, {"GPU": 0.0})
    r = reserve("head", {"GPU": 5.0}, {"GPU": 1.0}, holders, NOW)
    assert (r.start_at, r.spare) == (NOW + 300, {"GPU": 2.0})
    r = reserve("head", {"GPU": 8.0}, {"GPU": 1.0}, holders, NOW)  # needs the backfilled job's GPU: never
    assert (r.start_at, r.earliest_at) == (None, None)


def test_a_job_of_unknown_end_might_end_now_so_the_head_might_start_now() -> None:
    holders = [Holder("known", {"GPU": 4.0}, NOW + 300), Holder("unknown", {"GPU": 3.0}, None)]
    r = reserve("head", {"GPU": 4.0}, {"GPU": 1.0}, holders, NOW)
    assert (r.start_at, r.earliest_at, r.spare) == (NOW + 300, NOW, {})
    plan = plan_backfill([entry("head", 4, 0), entry("short", 1, 1)], {"GPU": 1.0}, holders, NOW,
                         run_s={"short": 10}, preemptible={"short": 1})
    assert plan.start == []  # anything it started could stand in the head's way at once
    r = reserve("head", {"GPU": 8.0}, {"GPU": 1.0}, holders, NOW)
    assert (r.start_at, r.earliest_at) == (None, NOW + 300)


def test_three_ways_to_backfill_and_the_jobs_that_may_not() -> None:
    # 3 GPUs free now; the head needs 6: it gets them at NOW + 100, with 2 GPUs spare after it starts.
    holders = [Holder("a", {"GPU": 5.0}, NOW + 100)]
    queue = [entry("head", 6, 0), entry("long-nolimit", 4, 1), entry("short", 1, 2), entry("long", 1, 3),
             entry("ckpt", 1, 4), entry("more", 1, 5)]
    plan = plan_backfill(queue, {"GPU": 3.0}, holders, NOW, run_s={"short": 50, "long": 500},
                         preemptible={"ckpt": 30.0})
    assert plan.reservation is not None and plan.reservation.start_at == NOW + 100
    assert plan.reservation.spare == {"GPU": 2.0}
    assert [(b.job_id, b.why, b.preempt_at) for b in plan.start] == [
        ("short", ENDS_BEFORE, None), ("long", SPARE, None), ("ckpt", SPARE, None)]
    # With the spare room taken, a job with no time limit starts only if it can be paused in time.
    plan = plan_backfill([entry("head", 6, 0), entry("x", 2, 1), entry("ckpt", 1, 2), entry("plain", 1, 3)],
                         {"GPU": 3.0}, holders, NOW, preemptible={"ckpt": 30.0})
    assert [(b.job_id, b.why, b.preempt_at) for b in plan.start] == [("x", SPARE, None),
                                                                     ("ckpt", PREEMPTIBLE, NOW + 70)]


def test_a_preemptible_job_is_asked_to_pause_its_pause_time_before_the_reservation() -> None:
    holders = [Holder("a", {"GPU": 6.0}, NOW + 100)]
    plan = plan_backfill([entry("head", 8, 0), entry("ckpt", 2, 1)], {"GPU": 2.0}, holders, NOW,
                         preemptible={"ckpt": 30.0})
    assert [(b.job_id, b.why, b.preempt_at) for b in plan.start] == [("ckpt", PREEMPTIBLE, NOW + 70)]
    planned = [PlannedPause("ckpt", "head", NOW + 70), PlannedPause("x", "head", NOW + 10),
               PlannedPause("stale", "started-long-ago", NOW)]
    assert due_preemptions(planned[:1], {"head"}, NOW + 69) == DuePauses()
    assert due_preemptions(planned, {"head"}, NOW + 70) == DuePauses(["x", "ckpt"], ["stale"])
    # A pause slower than the time left is no use.
    plan = plan_backfill([entry("head", 8, 0), entry("ckpt", 2, 1)], {"GPU": 2.0}, holders, NOW,
                         preemptible={"ckpt": 100.0})
    assert plan.start == []


def test_nothing_backfills_when_the_head_fits() -> None:
    holders = [Holder("a", {"GPU": 6.0}, None)]
    assert plan_backfill([entry("head", 1, 0), entry("x", 1, 1)], {"GPU": 2.0}, holders, NOW).start == []


def test_a_job_in_its_backoff_is_not_the_head() -> None:
    holders = [Holder("a", {"GPU": 6.0}, NOW + 100)]
    waiting = Entry("backoff", 0, 0, {"GPU": 8.0}, not_before=NOW + 10)
    plan = plan_backfill([waiting, entry("head", 4, 1), entry("short", 2, 2)], {"GPU": 2.0}, holders, NOW,
                         run_s={"short": 100})
    assert plan.reservation is not None and plan.reservation.job_id == "head"
    assert [b.job_id for b in plan.start] == ["short"]


# -- the guarantee, on random job mixes ----------------------------------------------------------------
job_st = st.tuples(st.sampled_from([1, 1, 2, 2, 3, 4, 6, 8]), st.integers(1, 50), st.sampled_from(["limit", "none"]),
                   st.booleans(), st.integers(0, 5), st.integers(0, 3), st.integers(0, 20))


def _jobs(raw: list[tuple[int, int, str, bool, int, int, int]], exact: bool, arrivals: bool) -> list[SimJob]:
    out = []
    for i, (gpus, duration, limit, preemptible, pause, slack, submit) in enumerate(raw):
        declared = float(duration + (0 if exact else slack * 5)) if limit == "limit" else None
        out.append(SimJob(f"j{i}", {"GPU": float(gpus)}, float(duration), time_limit_s=declared,
                          preemptible=preemptible, pause_s=float(pause), submit_at=float(submit if arrivals else 0)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(job_st, min_size=2, max_size=14), st.booleans())
def test_backfill_never_starts_the_first_blocked_head_later_than_strict_order(raw, arrivals) -> None:
    """Known run times exact (others unknown: they may end at any moment), jobs submitted together or over
    time: the job at the head when the queue first blocks starts no later with backfill than without."""
    jobs = sorted(_jobs(raw, exact=True, arrivals=arrivals), key=lambda j: j.submit_at)
    strict = simulate(jobs, CAP)
    # told what jobs declare, and (the benchmark's oracle) told every true run time
    for filled in (simulate(jobs, CAP, backfill=True), simulate(jobs, CAP, backfill=True, oracle=True)):
        blocked = [j.job_id for j in jobs if strict.start[j.job_id] > j.submit_at]
        if blocked:
            head = blocked[0]
            assert filled.start[head] <= strict.start[head]
        assert set(filled.end) == {j.job_id for j in jobs}  # and everything still finishes


@settings(max_examples=300, deadline=None)
@given(st.lists(job_st, min_size=2, max_size=14), st.booleans())
def test_every_head_starts_by_its_first_reservation(raw, arrivals) -> None:
    """Time limits only bound the run times (jobs may end early), jobs arrive over time: each job that
    was ever the blocked head starts no later than the start reserved for it when it first became head,
    unless a paused job from ahead of it in the queue came back in front of it (it keeps its place)."""
    jobs = _jobs(raw, exact=False, arrivals=arrivals)
    filled = simulate(jobs, CAP, backfill=True)
    for job_id, reserved in filled.reservations.items():
        if job_id in filled.overtaken:
            continue
        assert filled.start[job_id] <= reserved + 1e-9, (job_id, filled.start[job_id], reserved)


def test_packing_of_twenty_mixed_jobs_backfill_beats_strict_order() -> None:
    results = [packing(seed) for seed in range(5)]
    for p in results:
        assert p.ideal_s <= p.backfill_s <= p.strict_s + 1e-9
    assert sum(p.backfill_s for p in results) < sum(p.strict_s for p in results)


def test_the_ideal_is_a_lower_bound() -> None:
    jobs = [SimJob("a", {"GPU": 8.0}, 100.0), SimJob("b", {"GPU": 4.0}, 50.0), SimJob("c", {"GPU": 4.0}, 50.0)]
    assert ideal_makespan(jobs, CAP) == 150.0 and simulate(jobs, CAP).makespan == 150.0
    assert ideal_makespan([SimJob("long", {"GPU": 1.0}, 500.0)], CAP) == 500.0
