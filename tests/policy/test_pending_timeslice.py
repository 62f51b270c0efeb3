"""Why a job is pending and when it should start; time slicing. The pure policies on their own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.policy.pending import (
    BACKOFF,
    PREEMPTING,
    PRIORITY,
    QUOTA,
    RESERVED,
    RESOURCES,
    RunningEnd,
    Waiting,
    estimate_end,
    explain,
    step_rate,
)
from scheduler.policy.queue import Entry
from scheduler.policy.simulate import SimJob, eta_error, simulate
from scheduler.policy.timeslice import NODE_CHECKS, Rotation, Sliced, rotate_out, slice_from_env

NOW = 1000.0


def w(job_id: str, gpus: float, seq: int, run_s: float | None = None, **kw) -> Waiting:
    not_before = kw.pop("not_before", None)
    return Waiting(Entry(job_id, 0, seq, {"GPU": float(gpus)}, not_before=not_before), run_s=run_s, **kw)


# -- estimates of a running job's end --------------------------------------------------------------
def test_the_step_rate_from_reports() -> None:
    assert step_rate([]) is None and step_rate([(0.0, 5)]) is None
    assert step_rate([(0.0, 0), (10.0, 20), (20.0, 40)]) == 2.0
    assert step_rate([(t, 3 * t) for t in range(100)], window=10) == pytest.approx(3.0)
    assert step_rate([(5.0, 7), (5.0, 7)]) is None


def test_the_end_is_the_earlier_of_the_time_limit_and_the_steps_to_go() -> None:
    by_steps = estimate_end(NOW, NOW - 100, total_steps=1000, step=400, rate=2.0)
    assert by_steps.end_at == NOW + 300 and by_steps.basis == "step 400 of 1000 at 2 steps/s"
    by_limit = estimate_end(NOW, NOW - 100, time_limit_s=200, total_steps=1000, step=400, rate=2.0)
    assert by_limit.end_at == NOW + 100 and by_limit.basis == "time limit 200 s"
    assert estimate_end(NOW, NOW - 100, total_steps=1000, step=400).end_at is None  # no rate yet
    assert estimate_end(NOW, NOW - 500, time_limit_s=200).end_at == NOW  # overdue: any moment now


# -- reasons and ETAs --------------------------------------------------------------------------------
def test_every_code_with_its_numbers_and_an_eta_from_the_running_jobs() -> None:
    running = [RunningEnd("r1", {"GPU": 2.0}, NOW + 100, "time limit 600 s"),
               RunningEnd("r2", {"GPU": 4.0}, NOW + 300, "step 10 of 40 at 0.1 steps/s")]
    queue = [w("quota", 1, 0, quota="needs 1 GPU, its owner holds 4 of a max of 4"),
             w("head", 4, 1, run_s=500), w("small", 1, 2, run_s=50), w("big", 6, 3),
             w("retry", 1, 4, not_before=NOW + 30), w("making-room", 2, 5, preempting=["v1"])]
    got = {p.job_id: p for p in explain(queue, running, {"GPU": 2.0}, NOW)}
    assert (got["quota"].code, got["quota"].eta) == (QUOTA, None)
    assert got["quota"].message == "its owner's quota: needs 1 GPU, its owner holds 4 of a max of 4"
    assert got["head"].reason() == {"code": RESOURCES, "message": "needs 4 GPU, 2 free"}
    assert got["head"].eta == NOW + 100 and got["head"].eta_basis == \
        "strict queue order, after the ends of r1: time limit 600 s"
    assert got["small"].code == RESERVED and "held for head" in got["small"].message
    assert got["small"].eta == NOW + 300  # strict order: after the head, when r2 ends
    assert got["big"].reason() == {"code": PRIORITY, "message": "2 jobs ahead (first: head); needs 6 GPU, 2 free"}
    assert got["big"].eta == NOW + 600 and "head: expected run 500 s" in got["big"].eta_basis
    assert got["retry"].code == BACKOFF and "in 30 s" in got["retry"].message
    assert got["big"].ahead == 2
    assert got["making-room"].code == PREEMPTING and "v1" in got["making-room"].message
    assert got["retry"].eta == NOW + 600  # strict order: not before "big"; then 2 GPUs are left beside it


def test_a_null_beats_a_guess() -> None:
    running = [RunningEnd("r1", {"GPU": 4.0}, None, "no time limit and no step total with a rate")]
    got = explain([w("head", 4, 0, run_s=60), w("next", 1, 1)], running, {"GPU": 1.0}, NOW)
    assert got[0].eta is None and got[0].eta_basis == "no estimate: waits on r1, whose end nobody can estimate"
    assert got[1].eta is None  # strict order: it cannot start before the head
    fits_now = explain([w("head", 1, 0)], running, {"GPU": 1.0}, NOW)[0]
    assert fits_now.eta == NOW and fits_now.eta_basis == "fits in what is free now"


def test_room_a_preemption_can_make_later_is_the_heads_reason_and_eta_when_it_comes_first() -> None:
    # The head waits on r1 (end unknown) and r2 (ends in 900 s); low may make way in 300 s.
    running = [RunningEnd("r1", {"GPU": 2.0}, None), RunningEnd("r2", {"GPU": 2.0}, NOW + 900)]
    later = (NOW + 300, ["low"])
    head, behind = explain([w("head", 4, 0, room_at=later), w("next", 1, 1)], running, {"GPU": 0.0}, NOW)
    assert (head.code, head.eta) == (RESOURCES, NOW + 300)
    assert head.message == ("needs 4 GPU, 0 free; in 300 s room can be made for it: low (lower priority) "
                            "may pause or shrink once past its minimum runtime") and head.eta_basis in head.message
    assert behind.eta is None  # the walk behind the head is as before: it waits on r1 too
    # A 2-GPU head: r2's end (900 s) or the room made (300 s), whichever comes first.
    assert explain([w("head", 2, 0, room_at=later)], running, {"GPU": 0.0}, NOW)[0].eta == NOW + 300
    walk = explain([w("head", 2, 0, room_at=(NOW + 1200, ["low"]))], running, {"GPU": 0.0}, NOW)[0]
    assert walk.eta == NOW + 900 and "r2" in (walk.eta_basis or "") and "in 1200 s room can be made" in walk.message


def test_the_moments_holders_become_victims() -> None:
    from scheduler.policy.preemption import Candidate, eligible_from

    def c(job_id: str, priority: int, started: float, min_runtime_s: float, **kw) -> Candidate:
        return Candidate(job_id, priority, {"GPU": 1.0}, started, min_runtime_s=min_runtime_s, **kw)

    holders = [c("a", 0, NOW - 100, 600), c("b", 0, NOW - 500, 600), c("old", 0, NOW - 900, 600),
               c("same", 5, NOW, 60), c("pinned", 0, NOW, 60, preemptible=False),
               c("going", 0, NOW, 60, stopping=True), c("twin", 0, NOW - 500, 600)]
    assert eligible_from(holders, 5, NOW) == [NOW + 100, NOW + 500]  # "old" is eligible already


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.integers(1, 100)), min_size=1, max_size=12),
       st.lists(st.tuples(st.sampled_from([1, 2, 4]), st.integers(1, 100)), max_size=4))
def test_with_exact_run_times_the_eta_is_the_start_in_strict_order(queued, running_raw) -> None:
    """The ETA walk agrees with the simulator exactly when every run time is known and true."""
    cap = {"GPU": 8.0}
    running, sim_jobs, used = [], [], 0
    for i, (gpus, left) in enumerate(running_raw):
        if used + gpus > 8:
            break
        used += gpus
        running.append(RunningEnd(f"r{i}", {"GPU": float(gpus)}, float(left)))
        sim_jobs.append(SimJob(f"r{i}", {"GPU": float(gpus)}, float(left)))
    waiting = [w(f"q{i}", g, i, run_s=float(d)) for i, (g, d) in enumerate(queued)]
    sim_jobs += [SimJob(f"q{i}", {"GPU": float(g)}, float(d)) for i, (g, d) in enumerate(queued)]
    truth = simulate(sim_jobs, cap).start
    started = [x for x in waiting if truth[x.entry.job_id] == 0]
    running += [RunningEnd(x.entry.job_id, x.entry.demand, x.run_s) for x in started]
    queue = [x for x in waiting if x not in started]
    free = {"GPU": 8.0 - sum(r.demand["GPU"] for r in running)}
    for p in explain(queue, running, free, 0.0):
        assert p.eta == truth[p.job_id]


def test_the_eta_error_on_a_simulated_workload_is_measured() -> None:
    err = eta_error(range(5))
    assert err.n > 0 and 0 < err.covered <= 1 and 0 <= err.median_s and 0 <= err.mean_s and err.mean_relative >= 0


# -- time slicing -----------------------------------------------------------------------------------
def sl(job_id: str, gpus: float, attained: float, started: float = NOW - 600, priority: int = 0, **kw) -> Sliced:
    return Sliced(job_id, priority, {"GPU": float(gpus)}, started, attained, **kw)


def test_the_slice_setting() -> None:
    assert slice_from_env({}) is None and slice_from_env({"TRAINQ_TIME_SLICE_S": "0"}) is None
    assert slice_from_env({"TRAINQ_TIME_SLICE_S": "600"}) == 600.0
    with pytest.raises(ValueError, match="TRAINQ_TIME_SLICE_S"):
        slice_from_env({"TRAINQ_TIME_SLICE_S": "-1"})


def test_the_most_served_job_that_ran_a_slice_makes_way_for_the_least_served_waiting_one() -> None:
    running = [sl("served-a-lot", 2, 9000), sl("served-little", 2, 100), sl("too-young", 2, 99999, started=NOW - 10),
               sl("other-priority", 2, 99999, priority=5), sl("pinned", 2, 99999, preemptible=False)]
    waiting = [Entry("new", 0, 7, {"GPU": 2.0})]
    assert rotate_out(waiting, {}, running, {}, NOW, slice_s=300) == [Rotation("served-a-lot", ["new"])]


def test_only_as_many_as_needed_and_never_for_a_job_served_more() -> None:
    running = [sl("a", 1, 5000), sl("b", 2, 4000), sl("c", 2, 3000)]
    # needs 2: "a" (most served) alone is not enough, "b" is; the pass drops "a" again
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {}, running, {}, NOW, 300) == [Rotation("b", ["w"])]
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {"w": 4500}, running, {}, NOW, 300) == []
    # two waiting jobs: each gets its own room
    got = rotate_out([Entry("w1", 0, 9, {"GPU": 2.0}), Entry("w2", 0, 10, {"GPU": 2.0})], {}, running, {}, NOW, 300)
    assert got == [Rotation("b", ["w1"]), Rotation("c", ["w2"])]


def test_a_job_that_never_reads_its_checkpoint_is_never_rotated_out() -> None:
    # each turn would start it over: with slices shorter than its run it would never finish
    running = [sl("blind", 2, 9000, resumable=False), sl("resumes", 2, 5000)]
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {}, running, {}, NOW, 300) == [Rotation("resumes", ["w"])]
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {}, running[:1], {}, NOW, 300) == []
    unknown = [sl("not-known-yet", 2, 9000, resumable=None)]  # not known yet: it has not run since a checkpoint
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {}, unknown, {}, NOW, 300) == [Rotation("not-known-yet", ["w"])]


def test_free_room_is_used_before_anyone_is_rotated_out() -> None:
    running = [sl("a", 2, 5000)]
    assert rotate_out([Entry("w", 0, 9, {"GPU": 2.0})], {}, running, {"GPU": 2.0}, NOW, 300) == []


def test_the_node_checks_for_one_waiting_job_are_bounded() -> None:
    # Many waiting jobs that no running job's place holds (a type nobody runs on): each costs at
    # most NODE_CHECKS walks of the nodes, not one per running job, so a pass stays about linear.
    running = [sl(f"r{i}", 1, 9000 - i) for i in range(200)]
    waiting = [Entry(f"w{i}", 0, i, {"GPU": 1.0}) for i in range(50)]
    calls = []

    def never(w: Entry, chosen) -> bool:
        calls.append(w.job_id)
        return False

    assert rotate_out(waiting, {}, running, {}, NOW, 300, never) == []
    assert len(calls) == 50 * NODE_CHECKS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1e4), st.sampled_from("xy")), max_size=8),
       st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1e4), st.sampled_from("xy")), max_size=6),
       st.integers(0, 3))
def test_with_nodes_each_waiting_job_gets_places_that_hold_it_and_none_it_does_not_need(run_raw, wait_raw,
                                                                                          free) -> None:
    # Each running job sits on node x or y and each waiting job can only use places on its own node.
    running = [sl(f"r{i}", g, a) for i, (g, a, _) in enumerate(run_raw)]
    node = {f"r{i}": n for i, (_, _, n) in enumerate(run_raw)} | {f"w{i}": n for i, (_, _, n) in enumerate(wait_raw)}
    waiting = [Entry(f"w{i}", 0, i, {"GPU": float(g)}) for i, (g, _, _) in enumerate(wait_raw)]
    attained = {f"w{i}": a for i, (_, a, _) in enumerate(wait_raw)}

    def holds(w: Entry, chosen) -> bool:
        return sum(r.demand["GPU"] for r in chosen if node[r.job_id] == node[w.job_id]) >= w.demand["GPU"]

    rotations = rotate_out(waiting, attained, running, {"GPU": float(free)}, NOW, 300, holds)
    by_id = {r.job_id: r for r in running}
    for w in waiting:
        group = [by_id[r.job_id] for r in rotations if r.for_jobs == [w.job_id]]
        if group:
            assert holds(w, group)
            assert all(not holds(w, [r for r in group if r is not dropped]) for dropped in group), group


def test_a_job_whose_place_would_not_hold_the_waiting_one_on_the_nodes_is_passed_over() -> None:
    # "a" (most served) runs where the waiting job cannot (another type, say): "b" makes way instead
    running = [sl("a", 2, 9000), sl("b", 2, 5000), sl("c", 2, 4000)]
    on_its_nodes = {"b", "c"}

    def holds(w: Entry, chosen) -> bool:
        return any(r.job_id in on_its_nodes for r in chosen)

    w = Entry("w", 0, 9, {"GPU": 2.0})
    assert rotate_out([w], {}, running, {}, NOW, 300) == [Rotation("a", ["w"])]  # the totals alone
    assert rotate_out([w], {}, running, {}, NOW, 300, holds) == [Rotation("b", ["w"])]
    assert rotate_out([w], {}, running, {}, NOW, 300, lambda w, chosen: False) == []  # no place holds it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1e4), st.integers(0, 1), st.floats(0, 2000)), max_size=8),
       st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1e4), st.integers(0, 1)), max_size=6),
       st.integers(0, 3))
def test_rotations_are_eligible_and_never_pause_more_than_the_waiting_jobs_need(run_raw, wait_raw, free) -> None:
    running = [sl(f"r{i}", g, a, priority=p, started=NOW - age) for i, (g, a, p, age) in enumerate(run_raw)]
    waiting = [Entry(f"w{i}", p, i, {"GPU": float(g)}) for i, (g, _, p) in enumerate(wait_raw)]
    attained = {f"w{i}": a for i, (_, a, _) in enumerate(wait_raw)}
    by_id = {r.job_id: r for r in running}
    rotations = rotate_out(waiting, attained, running, {"GPU": float(free)}, NOW, 300)
    assert len({r.job_id for r in rotations}) == len(rotations)
    for rot in rotations:
        r, (w_id,) = by_id[rot.job_id], rot.for_jobs
        wait = next(e for e in waiting if e.job_id == w_id)
        assert NOW - r.running_since >= 300 and r.priority == wait.priority
        assert r.attained > attained[w_id]
    freed = sum(by_id[r.job_id].demand["GPU"] for r in rotations)
    served = {rot.for_jobs[0] for rot in rotations}
    need = sum(e.demand["GPU"] for e in waiting if e.job_id in served)
    assert freed + free >= need or not rotations
