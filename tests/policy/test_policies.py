"""The pure policies on their own: victim choice, placement, failure rules, pause deadlines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.policy import failure
from scheduler.policy.pausing import cadence, plan_pause
from scheduler.policy.placement import place_gang
from scheduler.policy.preemption import Candidate, choose_victims
from scheduler.policy.queue import fits, subtract

NOW = 10_000.0
CAP = {"CPU": 4.0}


def cand(job_id: str, cpus: float = 2, priority: int = 0, started: float = 0.0, ckpt: float | None = None,
         **kw) -> Candidate:
    return Candidate(job_id, priority, {"CPU": float(cpus)}, started, last_checkpoint_at=ckpt, **kw)


# -- preemption ----------------------------------------------------------------------------------
def test_no_victims_when_the_head_fits() -> None:
    assert choose_victims("h", 5, {"CPU": 2}, [cand("a")], {"CPU": 2}, CAP, NOW) is None


def test_lowest_priority_first_then_the_fresher_checkpoint() -> None:
    holders = [cand("p1-stale", priority=1, ckpt=NOW - 500), cand("p0-stale", ckpt=NOW - 900),
               cand("p0-fresh", ckpt=NOW - 10)]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {}, {"CPU": 6}, NOW)
    assert decision is not None and decision.victims == ["p0-fresh"]
    assert decision.lost_work_s == {"p0-fresh": 10.0}


def test_a_job_that_never_reads_its_checkpoint_is_chosen_after_resumable_ones() -> None:
    holders = [cand("blind", ckpt=NOW - 1, resumable=False), cand("resumable", ckpt=NOW - 800, resumable=True)]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {}, CAP, NOW)
    assert decision is not None and decision.victims == ["resumable"]


def test_a_job_that_never_reads_its_checkpoint_is_spared_even_over_a_higher_priority_that_would_do() -> None:
    # Pausing "blind" throws away its whole attempt; "p3" (still below the head) loses 10 s and resumes.
    holders = [cand("blind", started=NOW - 3600, resumable=False), cand("p3", priority=3, ckpt=NOW - 10)]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {}, CAP, NOW)
    assert decision is not None and decision.victims == ["p3"]
    # ... and it is chosen when nothing else can make room, its loss counted from its attempt's start
    decision = choose_victims("h", 5, {"CPU": 4}, holders, {}, CAP, NOW)
    assert decision is not None and sorted(decision.victims) == ["blind", "p3"]
    assert decision.lost_work_s["blind"] == 3600.0


def test_without_a_checkpoint_the_whole_attempt_counts_as_lost() -> None:
    holders = [cand("no-ckpt", started=NOW - 60), cand("old-ckpt", started=NOW - 5000, ckpt=NOW - 300)]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {}, CAP, NOW)
    assert decision is not None and decision.victims == ["no-ckpt"]


def test_greedy_then_drops_victims_that_were_not_needed() -> None:
    # Cheapest first: "small" (1 CPU) is taken, then "big" (2 CPU) makes it fit; alone "big" suffices.
    holders = [cand("small", cpus=1, ckpt=NOW - 1), cand("big", cpus=2, ckpt=NOW - 100)]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {"CPU": 0.0}, CAP, NOW)
    assert decision is not None and decision.victims == ["big"]


def test_never_more_than_needed_room_on_its_way_counts() -> None:
    holders = [cand("already-pausing", stopping=True), cand("running")]
    decision = choose_victims("h", 5, {"CPU": 2}, holders, {}, CAP, NOW)
    assert decision is not None and decision.victims == [] and decision.waiting_for == ["already-pausing"]


def test_equal_priority_protected_and_young_jobs_are_never_victims() -> None:
    holders = [cand("equal", priority=5), cand("young", started=NOW - 10, min_runtime_s=600),
               cand("pinned", preemptible=False)]
    assert choose_victims("h", 5, {"CPU": 2}, holders, {}, {"CPU": 6}, NOW) is None


def test_nobody_is_preempted_when_even_all_victims_would_not_make_room() -> None:
    holders = [cand("a", cpus=1), cand("equal", cpus=3, priority=5)]
    assert choose_victims("h", 5, {"CPU": 4}, holders, {}, CAP, NOW) is None


def test_no_ping_pong_a_requeued_victim_cannot_preempt_its_preemptor() -> None:
    high = cand("high", priority=5, started=NOW - 10_000)
    assert choose_victims("low", 0, {"CPU": 2}, [high], {}, {"CPU": 2}, NOW) is None


holder_st = st.builds(
    Candidate, job_id=st.uuids().map(str), priority=st.integers(-2, 2),
    demand=st.fixed_dictionaries({"CPU": st.integers(1, 4).map(float)}),
    attempt_started_at=st.floats(0, NOW), stopping=st.booleans(), preemptible=st.booleans(),
    min_runtime_s=st.sampled_from([0.0, 600.0]), last_checkpoint_at=st.one_of(st.none(), st.floats(0, NOW)),
    resumable=st.sampled_from([None, True, False]))


@settings(max_examples=300, deadline=None)
@given(holders=st.lists(holder_st, max_size=8), head_cpus=st.integers(1, 8), head_priority=st.integers(-2, 3),
       free_cpus=st.integers(0, 3))
def test_victims_are_eligible_sufficient_and_minimal(holders, head_cpus, head_priority, free_cpus) -> None:
    free, demand = {"CPU": float(free_cpus)}, {"CPU": float(head_cpus)}
    decision = choose_victims("h", head_priority, demand, holders, free, {"CPU": 16.0}, NOW)
    if decision is None or not decision.victims:
        return
    by_id = {h.job_id: h for h in holders}
    victims = [by_id[v] for v in decision.victims]
    for v in victims:  # only strictly lower priority, preemptible, old enough, not already stopping
        assert v.priority < head_priority and v.preemptible and not v.stopping
        assert NOW - v.attempt_started_at >= v.min_runtime_s
    coming = [h.demand for h in holders if h.stopping] + [v.demand for v in victims]
    room = subtract(free, *({"CPU": -d["CPU"]} for d in coming))
    assert fits(demand, room)  # enough
    for v in victims:  # and none too many
        assert not fits(demand, subtract(room, v.demand))
    # a job that would start over is chosen only when the ones that can resume could not make room
    if any(v.resumable is False for v in victims):
        can_resume = [h.demand for h in holders if h.resumable is not False and h.stopping] + [
            h.demand for h in holders if h.resumable is not False
            and not h.stopping and h.preemptible and h.priority < head_priority
            and NOW - h.attempt_started_at >= h.min_runtime_s]
        assert not fits(demand, subtract(free, *({"CPU": -d["CPU"]} for d in can_resume)))


# -- placement -----------------------------------------------------------------------------------
def test_a_gang_fits_the_totals_but_no_set_of_nodes() -> None:
    nodes = [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert place_gang({"CPU": 2.0}, 1, nodes) is None  # 3 CPUs free in all, but 1 per node
    assert place_gang({"CPU": 1.0}, 3, nodes) == [1, 1, 1]
    assert place_gang({"CPU": 1.0, "GPU": 1.0}, 2, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 4.0}]) == [0, 2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=5), st.integers(1, 4), st.integers(1, 10))
def test_placement_is_exact_for_identical_workers(node_cpus, worker_cpus, n) -> None:
    nodes = [{"CPU": float(c)} for c in node_cpus]
    placed = place_gang({"CPU": float(worker_cpus)}, n, nodes)
    possible = sum(c // worker_cpus for c in node_cpus) >= n
    assert (placed is not None) == possible
    if placed is not None:
        assert sum(placed) == n and all(k * worker_cpus <= c for k, c in zip(placed, node_cpus))


# -- failure rules -------------------------------------------------------------------------------
def test_a_user_error_fails_and_an_infrastructure_loss_requeues_with_backoff() -> None:
    assert failure.on_exit("running", None, "failed", failure.USER_ERROR, 0, 3, 5).status == "failed"
    d = failure.on_exit("running", None, "failed", failure.INFRASTRUCTURE, 1, 3, 5)
    assert (d.status, d.retry, d.backoff_s) == ("queued", True, 10.0) and "retry 2 of 3" in d.reason
    assert failure.on_exit("running", None, "failed", failure.INFRASTRUCTURE, 3, 3, 5).status == "failed"
    assert failure.on_runner_lost("running", None, "gone", 99, -1, 5).status == "queued"  # -1: always


def test_a_stopped_pause_ends_as_its_intent_says() -> None:
    assert failure.on_exit("pausing", failure.USER, "paused", None, 0, 3, 5).status == "paused"
    assert failure.on_exit("pausing", failure.PREEMPT, "paused", None, 0, 3, 5).status == "queued"
    assert failure.on_exit("pausing", failure.SHUTDOWN, "paused", None, 0, 3, 5).status == "paused"
    lost = failure.on_runner_lost("pausing", failure.PREEMPT, "node died", 3, 3, 5)
    assert lost.status == "queued" and not lost.retry  # a preemption's requeue is not a retry
    assert failure.on_exit("running", None, "completed", None, 0, 3, 5).status == "completed"


# -- pause deadlines -----------------------------------------------------------------------------
def test_derived_deadline_no_reports_one_many_capped() -> None:
    none = plan_pause(NOW, NOW - 100, [])
    assert none.deadline_at == NOW + 30 and none.expected_at is None
    assert "no checkpoint reported yet" in none.message

    one = plan_pause(NOW, NOW - 50, [NOW - 10])  # one interval, from the attempt's start: 40 s
    assert cadence(NOW - 50, [NOW - 10]) == 40
    assert one.deadline_at == NOW + 60 and one.expected_at == NOW + 30 + 2.0
    overdue = plan_pause(NOW, NOW - 100, [NOW - 60])  # its next one is due already: any moment now
    assert overdue.expected_at == NOW + 2.0

    many = plan_pause(NOW, NOW - 1000, [NOW - 250, NOW - 150, NOW - 50])  # every 100 s
    assert many.cadence_s == 100 and many.deadline_at == NOW + 150
    assert many.expected_at == NOW + 50 + 2.0
    assert "checkpoints about every 100 s" in many.message and "at the latest in 150 s" in many.message

    capped = plan_pause(NOW, 0, [NOW - 7200, NOW - 3600], max_wait_s=1800)
    assert capped.deadline_at == NOW + 1800

    short = plan_pause(NOW, NOW - 20, [NOW - 15, NOW - 10, NOW - 5])  # every 5 s: at least 30 s
    assert short.deadline_at == NOW + 30


def test_explicit_deadline_wins_and_no_deadline_waits() -> None:
    explicit = plan_pause(NOW, NOW - 1000, [NOW - 250, NOW - 150, NOW - 50], deadline_s=5)
    assert explicit.deadline_at == NOW + 5 and explicit.expected_at == NOW + 5 + 2.0
    forever = plan_pause(NOW, NOW - 100, [], wait_forever=True)
    assert forever.deadline_at is None and "however long" in forever.message
    coop = plan_pause(NOW, NOW - 100, [], cooperative=True, step_s=0.5)
    assert coop.expected_at == NOW + 0.5 + 2.0 and "next step" in coop.message
