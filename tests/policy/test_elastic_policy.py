"""Elastic jobs, pure: start size, grow into idle room, shrink before pausing (fake clock and cluster)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.config import Settings
from scheduler.policy.accelerators import choose
from scheduler.policy.admission import admit_with_quotas
from scheduler.policy.backfill import Holder, reserve
from scheduler.policy.elastic import (
    DEFAULT_MIN_INTERVAL_S,
    Elastic,
    Grow,
    Loan,
    at_size,
    plan_grow,
    plan_shrink,
    start_size,
)
from scheduler.policy.placement import SPREAD, STRATEGIES, STRICT_PACK, place_gang, take
from scheduler.policy.preemption import Candidate, choose_victims
from scheduler.policy.queue import Entry, fits, subtract
from scheduler.policy.quota import Quota

NOW = 10_000.0
GPU = {"GPU": 1.0}
CPU = {"CPU": 1.0}


def entry(job_id: str = "e", worker: dict[str, float] | None = None, workers: int = 1, priority: int = 0,
          **kw) -> Entry:
    return at_size(Entry(job_id, priority, 0, {}, worker=worker or GPU, **kw), workers)


def running(job_id: str, workers: int, priority: int = 0, started: float = 0.0, ckpt: float | None = None,
            worker: dict[str, float] | None = None, nodes: dict[str, int] | None = None, **kw) -> Candidate:
    w = worker or GPU
    return Candidate(job_id, priority, {k: v * workers for k, v in w.items()}, started, last_checkpoint_at=ckpt,
                     worker=w, nodes=nodes, **kw)


# -- start size ----------------------------------------------------------------------------------
def test_starts_with_as_many_workers_as_fit_between_min_and_max() -> None:
    e = entry(workers=2)
    assert start_size(e, 2, 8, {"GPU": 5.0}).workers == 5  # type: ignore[union-attr]
    assert start_size(e, 2, 8, {"GPU": 12.0}).workers == 8  # type: ignore[union-attr]
    assert start_size(e, 2, 8, {"GPU": 1.0}) is None  # not even its min: it waits


def test_the_workers_beyond_min_leave_what_keep_holds_back() -> None:
    sized = start_size(entry(workers=2), 2, 8, {"GPU": 6.0}, keep={"GPU": 3.0})
    assert sized is not None and sized.workers == 3
    # keep never stops the min itself (admission already decided that)
    assert start_size(entry(workers=2), 2, 8, {"GPU": 2.0}, keep={"GPU": 2.0}).workers == 2  # type: ignore[union-attr]


def _admit(order: list[Entry], free: float, nodes: list[dict[str, float]] | None = None):
    return admit_with_quotas(order, {"GPU": free}, NOW, owners={}, used={}, quotas={}, nodes_free=nodes)


def test_admission_starts_the_jobs_behind_an_elastic_one_before_its_extra_workers() -> None:
    wide, fixed = entry("wide", workers=1, max_workers=4), entry("fixed", workers=2)
    adm = _admit([wide, fixed], 4.0)
    assert [(a.job_id, a.workers) for a in adm.start] == [("wide", 2), ("fixed", None)] and adm.head is None
    # alone, it takes what fits up to its most; on the nodes too
    assert [a.workers for a in _admit([wide], 8.0).start] == [4]
    adm = _admit([wide, fixed], 4.0, nodes=[{"GPU": 3.0}, {"GPU": 1.0}])
    # placed as Ray places them, in launch order: the elastic job's gang first, packed
    assert [(a.workers, a.placement) for a in adm.start] == [(2, [2, 0]), (None, [1, 1])]
    # a blocked head keeps the rest: the elastic job stays at its fewest
    adm = _admit([wide, fixed, entry("head", workers=8)], 4.0)
    assert [(a.job_id, a.workers) for a in adm.start] == [("wide", 1), ("fixed", None)]
    assert adm.head is not None and adm.head.job_id == "head"
    # relaunching after a resize, it takes the size planned in its turn
    adm = _admit([entry("wide", workers=1, max_workers=3, resized=True), fixed], 4.0)
    assert [(a.job_id, a.workers) for a in adm.start] == [("wide", 3)] and adm.head is not None


def test_an_elastic_jobs_extra_workers_never_take_a_node_a_later_gang_was_placed_on() -> None:
    # Found by the model test (tests/core/test_core_model.py): the extra workers were placed after
    # the jobs behind it took their nodes, on the node they left ([2, 0]); but Ray places the
    # elastic gang first, spread one a node, and the 2-GPU worker behind it then fit nowhere.
    spread = entry("spread", workers=1, max_workers=2, strategy=SPREAD)
    whole = entry("whole", worker={"GPU": 2.0})
    adm = _admit([spread, whole], 4.0, nodes=[{"GPU": 2.0}, {"GPU": 2.0}])
    assert [(a.job_id, a.workers, a.placement) for a in adm.start] == [("spread", 1, [1, 0]), ("whole", None, [0, 1])]
    _assert_placed_in_launch_order(adm, [spread, whole], [{"GPU": 2.0}, {"GPU": 2.0}])


def _assert_placed_in_launch_order(adm, order: list[Entry], nodes: list[dict[str, float]]) -> None:
    """Each admitted gang is where ``place_gang`` puts it on what the gangs launched before it left."""
    entries, left = {e.job_id: e for e in order}, [dict(n) for n in nodes]
    for a in adm.start:
        e = entries[a.job_id]
        assert a.placement == place_gang(e.worker, a.workers or e.num_workers, left, e.strategy), a
        take(left, e.worker, a.placement)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1.0, 2.0]), st.integers(1, 3), st.integers(0, 2),
                          st.sampled_from(STRATEGIES)), min_size=1, max_size=5),
       st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=1, max_size=3))
def test_admission_places_every_gang_as_ray_will_in_launch_order(jobs, sizes) -> None:
    order = [entry(f"j{i}", worker={"GPU": gpus}, workers=lo, max_workers=lo + extra if extra else None,
                   strategy=strategy) for i, (gpus, lo, extra, strategy) in enumerate(jobs)]
    nodes = [{"GPU": n} for n in sizes]
    adm = _admit(order, sum(sizes), nodes=nodes)
    _assert_placed_in_launch_order(adm, order, nodes)


def test_start_size_counts_nodes_strategy_and_quota() -> None:
    nodes = [{"GPU": 3.0}, {"GPU": 2.0}]
    assert start_size(entry(), 1, 8, {"GPU": 5.0}, nodes).workers == 5  # type: ignore[union-attr]
    strict = start_size(entry(strategy=STRICT_PACK), 1, 8, {"GPU": 5.0}, nodes)
    assert strict is not None and (strict.workers, strict.choice.placement) == (3, [3, 0])
    capped = start_size(entry(), 1, 8, {"GPU": 5.0}, nodes, allowed=lambda t, d: d.get("GPU", 0.0) <= 2)
    assert capped is not None and capped.workers == 2


def test_the_preferred_type_wins_when_its_min_fits_there() -> None:
    e = entry(types=("A100", "T4"))
    free = {"GPU": 6.0, "accelerator_type:A100": 1.0, "accelerator_type:T4": 1.0}
    nodes = [{"GPU": 2.0, "accelerator_type:A100": 1.0}, {"GPU": 4.0, "accelerator_type:T4": 1.0}]
    sized = start_size(e, 1, 8, free, nodes)
    assert sized is not None and (sized.choice.accelerator_type, sized.workers) == ("A100", 2)
    sized = start_size(e, 3, 8, free, nodes)
    assert sized is not None and (sized.choice.accelerator_type, sized.workers) == ("T4", 4)


def test_a_job_relaunched_to_resize_starts_where_the_most_workers_fit() -> None:
    # A grow planned on its T4 node relaunches there: on the A100 node, first in its order, it
    # would start smaller than before, be grown again, and so on (found by the model test).
    e = entry(types=("A100", "T4"))
    free = {"GPU": 6.0, "accelerator_type:A100": 1.0, "accelerator_type:T4": 1.0}
    nodes = [{"GPU": 2.0, "accelerator_type:A100": 1.0}, {"GPU": 4.0, "accelerator_type:T4": 1.0}]
    sized = start_size(e, 1, 8, free, nodes, largest=True)
    assert sized is not None and (sized.choice.accelerator_type, sized.workers) == ("T4", 4)
    nodes[1]["GPU"] = 2.0  # a tie: the job's order decides
    sized = start_size(e, 1, 8, {**free, "GPU": 4.0}, nodes, largest=True)
    assert sized is not None and (sized.choice.accelerator_type, sized.workers) == ("A100", 2)


@settings(max_examples=300, deadline=None)
@given(lo=st.integers(1, 6), span=st.integers(0, 6), node_gpus=st.lists(st.integers(0, 6), min_size=1, max_size=4),
       strategy=st.sampled_from(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]), keep=st.integers(0, 4))
def test_start_size_is_within_bounds_fits_and_is_the_largest(lo, span, node_gpus, strategy, keep) -> None:
    hi = lo + span
    nodes = [{"GPU": float(g)} for g in node_gpus]
    free = {"GPU": float(sum(node_gpus))}
    e = entry(strategy=strategy)
    sized = start_size(e, lo, hi, free, nodes, keep={"GPU": float(keep)})
    if sized is None:
        assert choose(at_size(e, lo), free, nodes) is None
        return
    assert lo <= sized.workers <= hi
    assert choose(at_size(e, sized.workers), free, nodes) is not None
    beyond = subtract(free, {"GPU": float(keep)})
    if sized.workers > lo:
        assert fits(sized.choice.demand, beyond)
    if sized.workers < hi:  # one more would not fit (beyond min: within what keep leaves)
        assert choose(at_size(e, sized.workers + 1), beyond, nodes) is None


# -- grow ----------------------------------------------------------------------------------------
SIZES = {"a": Elastic(2, 1, 8), "b": Elastic(2, 2, 4)}


def test_grows_into_idle_room_dealt_to_the_smallest_first_up_to_max() -> None:
    holders = [running("a", 2), running("b", 2), running("fixed", 4)]
    grows = plan_grow(holders, SIZES, {"GPU": 3.0}, NOW)
    assert sorted(grows, key=lambda g: g.job_id) == [Grow("a", 4), Grow("b", 3)]
    grows = plan_grow(holders, SIZES, {"GPU": 20.0}, NOW)
    assert sorted(grows, key=lambda g: g.job_id) == [Grow("a", 8), Grow("b", 4)]


def test_higher_priority_grows_first_and_nothing_grows_within_the_interval() -> None:
    holders = [running("a", 2, priority=0), running("b", 2, priority=5)]
    assert plan_grow(holders, SIZES, {"GPU": 1.0}, NOW) == [Grow("b", 3)]
    young = [running("a", 2, started=NOW - 100), running("b", 2, started=NOW - 400, stopping=True)]
    assert plan_grow(young, SIZES, {"GPU": 8.0}, NOW, min_interval_s=300) == []
    assert plan_grow(young[:1], SIZES, {"GPU": 8.0}, NOW, min_interval_s=60) == [Grow("a", 8)]


def test_a_gain_below_min_gain_is_not_worth_a_relaunch() -> None:
    assert plan_grow([running("a", 2)], SIZES, {"GPU": 1.0}, NOW, min_gain=2) == []
    assert plan_grow([running("a", 2)], SIZES, {"GPU": 2.0}, NOW, min_gain=2) == [Grow("a", 4)]


def test_while_a_job_waits_only_its_reservations_spare_room_is_used() -> None:
    holders = [running("a", 2)]
    assert plan_grow(holders, SIZES, {"GPU": 4.0}, NOW, waiting=True, lenders={"a"}) == []
    r = reserve("head", {"GPU": 6.0}, {"GPU": 4.0}, [Holder("fixed", {"GPU": 4.0}, NOW + 50)], NOW)
    assert r.spare == {"GPU": 2.0}
    assert plan_grow(holders, SIZES, {"GPU": 4.0}, NOW, waiting=True, reservation=r, lenders={"a"}) == [Grow("a", 4)]
    # A job behind the head would relaunch behind it (and wait for it): it does not grow.
    assert plan_grow(holders, SIZES, {"GPU": 4.0}, NOW, waiting=True, reservation=r) == []
    assert plan_grow(holders, SIZES, {"GPU": 4.0}, NOW, keep={"GPU": 3.0}) == [Grow("a", 3)]


def test_a_job_ahead_of_the_head_borrows_what_it_cannot_use_yet_and_gives_it_back_in_time() -> None:
    holders = [running("a", 2)]
    # The head needs all 8. With no end known it might start any moment: nothing is lent.
    unknown = [Holder("a", {"GPU": 2.0}, None), Holder("fixed", {"GPU": 4.0}, None)]
    r = reserve("head", {"GPU": 8.0}, {"GPU": 2.0}, unknown, NOW)
    assert r.earliest_at == NOW and not r.spare
    assert plan_grow(holders, SIZES, {"GPU": 2.0}, NOW, waiting=True, reservation=r, lenders={"a"}) == []
    # "fixed" ends in an hour at the latest (its time limit): the head cannot start before, even if
    # "a" (end unknown) ended now. "a" borrows the 2 idle GPUs and gives them back before then.
    r = reserve("head", {"GPU": 8.0}, {"GPU": 2.0}, [unknown[0], Holder("fixed", {"GPU": 4.0}, NOW + 3600)], NOW)
    assert r.earliest_at == NOW + 3600 and not r.spare
    grows = plan_grow(holders, SIZES, {"GPU": 2.0}, NOW, waiting=True, reservation=r, lenders={"a"},
                      give_back_s=90)
    assert grows == [Grow("a", 4, loan=Loan("head", NOW + 3600 - 90, 2))]
    # Not when it could not keep the loan for the resize interval before giving it back.
    assert plan_grow(holders, SIZES, {"GPU": 2.0}, NOW, waiting=True, reservation=r, lenders={"a"},
                     give_back_s=90, min_interval_s=3600) == []
    # Spare room first, and only the rest is lent: the size it gives back to counts the spare.
    r = reserve("head", {"GPU": 4.0}, {"GPU": 3.0}, [Holder("a", {"GPU": 2.0}, NOW + 7200),
                                                     Holder("fixed", {"GPU": 3.0}, NOW + 3600)], NOW)
    assert r.spare == {"GPU": 2.0}
    grows = plan_grow(holders, SIZES, {"GPU": 3.0}, NOW, waiting=True, reservation=r, lenders={"a"})
    assert grows == [Grow("a", 5, loan=Loan("head", NOW + 3600, 4))]


def test_a_grow_stays_within_its_owners_max_and_says_when_it_borrows() -> None:
    quotas = {"u": Quota({"GPU": 3.0}, {"GPU": 5.0})}
    grows = plan_grow([running("a", 2)], SIZES, {"GPU": 8.0}, NOW, owners={"a": "u"}, used={"u": {"GPU": 2.0}},
                      quotas=quotas)
    assert grows == [Grow("a", 5, borrowing=True)]
    assert plan_grow([running("a", 2)], SIZES, {"GPU": 8.0}, NOW, owners={"a": "u"}, used={"u": {"GPU": 2.0}},
                     quotas={"u": Quota({"GPU": 4.0}, {"GPU": 4.0})}) == [Grow("a", 4, borrowing=False)]


def test_a_grow_must_place_its_whole_gang_on_the_nodes() -> None:
    sizes = {"a": Elastic(2, 1, 8, strategy=STRICT_PACK)}
    # a's 2 workers on n1 (freed on relaunch); n1 has 1 more free, n2 has 3: STRICT_PACK holds 3 on one node.
    holders = [running("a", 2, nodes={"n1": 2})]
    nodes = {"n1": {"GPU": 1.0}, "n2": {"GPU": 3.0}}
    assert plan_grow(holders, sizes, {"GPU": 4.0}, NOW, nodes=nodes) == [Grow("a", 3)]
    # its nodes unknown (PACK): only its new workers are placed, on top of its present ones
    unknown = [running("a", 2)]
    assert plan_grow(unknown, {"a": Elastic(2, 1, 8)}, {"GPU": 4.0}, NOW, nodes=nodes) == [Grow("a", 6)]


# -- shrink --------------------------------------------------------------------------------------
def test_a_higher_priority_job_makes_an_elastic_job_shrink_by_one_instead_of_pausing() -> None:
    holders = [running("el", 3, priority=0, worker=CPU, ckpt=NOW - 20)]
    plan = plan_shrink(entry("hi", CPU, 1, priority=5), holders, {"el": Elastic(3, 1, 3)}, {}, {"CPU": 3.0}, NOW)
    assert plan is not None and [(s.job_id, s.to_workers, s.expected_lost_work_s) for s in plan.shrinks] == \
        [("el", 2, 20.0)]
    assert plan.preemption is not None and plan.preemption.victims == []
    # the plain preemption policy would have paused the whole job
    assert choose_victims("hi", 5, CPU, holders, {}, {"CPU": 3.0}, NOW).victims == ["el"]  # type: ignore[union-attr]


def test_shrinks_take_only_what_is_needed_and_never_go_below_min() -> None:
    holders = [running("el", 4, ckpt=NOW - 5), running("fixed", 2, ckpt=NOW - 1)]
    sizes = {"el": Elastic(4, 2, 8)}
    plan = plan_shrink(entry("hi", workers=2, priority=1), holders, sizes, {}, {"GPU": 6.0}, NOW)
    assert plan is not None and [(s.job_id, s.to_workers) for s in plan.shrinks] == [("el", 2)]
    # 3 needed: el's 2 above min are not enough, so one whole job is paused (the fixed one: less lost
    # work) and el gives only the one worker still needed
    plan = plan_shrink(entry("hi", workers=3, priority=1), holders, sizes, {}, {"GPU": 6.0}, NOW)
    assert plan is not None and plan.preemption is not None
    assert [(s.job_id, s.to_workers) for s in plan.shrinks] == [("el", 3)] and plan.preemption.victims == ["fixed"]
    plan = plan_shrink(entry("hi", workers=4, priority=1), holders, sizes, {}, {"GPU": 6.0}, NOW)
    assert plan is not None and plan.preemption is not None
    assert [(s.job_id, s.to_workers) for s in plan.shrinks] == [("el", 2)] and plan.preemption.victims == ["fixed"]


def test_no_shrink_for_equal_priority_a_fitting_head_or_when_nothing_makes_room() -> None:
    holders = [running("el", 4)]
    sizes = {"el": Elastic(4, 1, 4)}
    assert plan_shrink(entry("eq", workers=1), holders, sizes, {}, {"GPU": 4.0}, NOW) is None
    assert plan_shrink(entry("hi", workers=1, priority=1), holders, sizes, {"GPU": 1.0}, {"GPU": 5.0}, NOW) is None
    assert plan_shrink(entry("huge", workers=6, priority=1), holders, sizes, {}, {"GPU": 4.0}, NOW) is None


def test_an_equal_priority_head_takes_back_lent_workers_after_the_interval_but_pauses_nobody() -> None:
    holders = [running("el", 4, started=NOW - 400), running("fixed", 2, started=NOW - 400)]
    sizes = {"el": Elastic(4, 1, 4)}
    head = entry("eq", workers=2)
    assert plan_shrink(head, holders, sizes, {}, {"GPU": 6.0}, NOW) is None  # equal priority: not a victim
    plan = plan_shrink(head, holders, sizes, {}, {"GPU": 6.0}, NOW, reclaim_after_s=300)
    assert plan is not None and [(s.job_id, s.to_workers) for s in plan.shrinks] == [("el", 2)]
    young = [running("el", 4, started=NOW - 100)]
    assert plan_shrink(head, young, sizes, {}, {"GPU": 4.0}, NOW, reclaim_after_s=300) is None
    # the interval counts from when its workers started: admitted 400 s ago, running for 100 s
    slow_start = [running("el", 4, started=NOW - 400, running_since=NOW - 100)]
    assert plan_shrink(head, slow_start, sizes, {}, {"GPU": 4.0}, NOW, reclaim_after_s=300) is None
    assert plan_grow([running("el", 2, started=NOW - 400, running_since=NOW - 100)], {"el": Elastic(2, 1, 4)},
                     {"GPU": 2.0}, NOW, min_interval_s=300) == []
    # more than the lent workers: nobody of equal priority is paused for it
    assert plan_shrink(entry("eq", workers=5), holders, sizes, {}, {"GPU": 6.0}, NOW, reclaim_after_s=300) is None


def test_lower_priority_elastic_jobs_shrink_first_then_less_lost_work() -> None:
    holders = [running("p1", 3, priority=1, ckpt=NOW - 1), running("p0-stale", 3, ckpt=NOW - 900),
               running("p0-fresh", 3, ckpt=NOW - 10)]
    sizes = {j: Elastic(3, 1, 3) for j in ("p1", "p0-stale", "p0-fresh")}
    plan = plan_shrink(entry("hi", workers=2, priority=5), holders, sizes, {}, {"GPU": 9.0}, NOW)
    assert plan is not None and [(s.job_id, s.to_workers) for s in plan.shrinks] == [("p0-fresh", 1)]


def test_shrinks_are_node_aware_and_free_the_node_the_head_needs() -> None:
    # el: 1 worker on n1, 2 on n2, where 1 CPU is free. A STRICT_PACK head of 2 needs 2 on one node:
    # a worker taken off n1 would make no such room, one taken off n2 does.
    holders = [running("el", 3, worker=CPU, nodes={"n1": 1, "n2": 2})]
    nodes = {"n1": {"CPU": 0.0}, "n2": {"CPU": 1.0}}
    head = entry("hi", CPU, 2, priority=1, strategy=STRICT_PACK)
    plan = plan_shrink(head, holders, {"el": Elastic(3, 1, 3)}, {"CPU": 1.0}, {"CPU": 4.0}, NOW, nodes=nodes)
    assert plan is not None and plan.preemption is not None
    assert [(s.job_id, s.to_workers, s.nodes) for s in plan.shrinks] == [("el", 2, {"n1": 1, "n2": 1})]
    assert plan.preemption.placement == {"n2": 2}


def test_the_interval_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().resize_min_interval_s == DEFAULT_MIN_INTERVAL_S == 300.0
    monkeypatch.setenv("TRAINQ_RESIZE_MIN_INTERVAL_S", "30")
    assert Settings().resize_min_interval_s == 30.0
    monkeypatch.setenv("TRAINQ_RESIZE_MIN_INTERVAL_S", "-1")
    with pytest.raises(ValueError, match="TRAINQ_RESIZE_MIN_INTERVAL_S"):
        Settings()


# -- properties ----------------------------------------------------------------------------------
job_st = st.tuples(st.integers(1, 3), st.integers(0, 3), st.integers(0, 3), st.integers(-1, 2),
                   st.integers(0, 2000), st.booleans())


@settings(max_examples=400, deadline=None)
@given(jobs=st.lists(job_st, min_size=1, max_size=6), head_gpus=st.integers(1, 10), head_priority=st.integers(-1, 3),
       free=st.integers(0, 3))
def test_a_shrink_never_goes_below_min_and_the_plan_makes_room(jobs, head_gpus, head_priority, free) -> None:
    holders, sizes = [], {}
    for i, (lo, extra, more, priority, age, elastic) in enumerate(jobs):
        workers = lo + extra
        holders.append(running(f"j{i}", workers, priority, started=NOW - age, ckpt=NOW - age / 2,
                               min_runtime_s=100.0))
        if elastic:
            sizes[f"j{i}"] = Elastic(workers, lo, workers + more)
    cap = {"GPU": float(free + sum(c.demand["GPU"] for c in holders))}
    head = entry("h", workers=head_gpus, priority=head_priority)
    plan = plan_shrink(head, holders, sizes, {"GPU": float(free)}, cap, NOW)
    plain = choose_victims("h", head_priority, head.demand, holders, {"GPU": float(free)}, cap, NOW)
    if plan is None:
        assert plain is None  # a shrink plan exists whenever whole-job preemption would make room
        return
    by_id = {c.job_id: c for c in holders}
    victims = plan.preemption.victims if plan.preemption is not None else []
    freed = float(free) + sum(by_id[v].demand["GPU"] for v in victims)
    for s in plan.shrinks:
        size = sizes[s.job_id]
        assert size.min_workers <= s.to_workers < size.workers and s.job_id not in victims
        assert by_id[s.job_id].priority < head_priority and NOW - by_id[s.job_id].attempt_started_at >= 100
        freed += size.workers - s.to_workers
    assert freed >= head_gpus  # the head fits once the shrinks and pauses are done
    # shrinking first never pauses more GPUs than the plain preemption policy would
    assert plain is not None
    assert sum(by_id[v].demand["GPU"] for v in victims) <= sum(by_id[v].demand["GPU"] for v in plain.victims)


@settings(max_examples=400, deadline=None)
@given(jobs=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 4), st.integers(1, 500), st.booleans()),
                     min_size=1, max_size=5),
       free=st.integers(0, 6), head_gpus=st.integers(1, 16), give_back_s=st.sampled_from([0.0, 90.0, 2000.0]))
def test_a_grow_never_delays_the_head_of_the_queue(jobs, free, head_gpus, give_back_s) -> None:
    holders, sizes, ends = [], {}, []
    for i, (workers, more, ends_in, elastic) in enumerate(jobs):
        holders.append(running(f"j{i}", workers, started=NOW - 1000))
        ends.append(Holder(f"j{i}", {"GPU": float(workers)}, NOW + ends_in * 10))
        if elastic:
            sizes[f"j{i}"] = Elastic(workers, 1, workers + more)
    free_now = {"GPU": float(free)}
    if fits({"GPU": float(head_gpus)}, free_now):
        return  # not blocked: admission starts it before any grow
    before = reserve("h", {"GPU": float(head_gpus)}, free_now, ends, NOW)
    lenders = {f"j{i}" for i in range(0, len(jobs), 2)}  # every other job is ahead of the head
    grows = plan_grow(holders, sizes, free_now, NOW, waiting=True, reservation=before, lenders=lenders,
                      give_back_s=give_back_s, min_interval_s=300)
    assert all(g.job_id in lenders for g in grows)
    extra = sum(g.to_workers - sizes[g.job_id].workers for g in grows)
    assert extra <= free
    # The grown workers not lent are held for good (the worst case); lent ones come back at the
    # loan's time plus the pause's bound; each grown job still ends when it would have.
    kept = [Holder(g.job_id + "+", {"GPU": float((g.loan.to_workers if g.loan else g.to_workers)
                                                 - sizes[g.job_id].workers)}, None, backfilled=True) for g in grows]
    lent = [Holder(g.job_id + "~", {"GPU": float(g.to_workers - g.loan.to_workers)}, g.loan.at + give_back_s)
            for g in grows if g.loan is not None]
    for g in grows:
        if g.loan is not None:  # kept at least the resize interval, and back by the head's earliest start
            assert g.loan.head == "h" and sizes[g.job_id].workers <= g.loan.to_workers < g.to_workers
            assert before.earliest_at is not None and NOW + 300 <= g.loan.at <= before.earliest_at - give_back_s
    after = reserve("h", {"GPU": float(head_gpus)}, {"GPU": float(free - extra)}, ends + kept + lent, NOW)
    if before.start_at is not None:
        assert after.start_at is not None and after.start_at <= before.start_at


@settings(max_examples=400, deadline=None)
@given(queue=st.lists(st.tuples(st.integers(1, 3), st.integers(0, 4), st.booleans()), min_size=1, max_size=7),
       node_gpus=st.lists(st.integers(0, 4), min_size=1, max_size=3), by_nodes=st.booleans())
def test_an_elastic_jobs_extra_workers_never_keep_a_job_behind_it_from_starting(queue, node_gpus, by_nodes) -> None:
    order = [entry(f"q{i}", workers=lo, max_workers=lo + more if elastic else None)
             for i, (lo, more, elastic) in enumerate(queue)]
    nodes = [{"GPU": float(g)} for g in node_gpus] if by_nodes else None
    free = float(sum(node_gpus))
    adm = _admit(order, free, nodes)
    pinned = _admit([dataclasses.replace(e, max_workers=None) for e in order], free, nodes)
    # the same jobs start, and the same one waits first, as if every elastic job were fixed at its min
    assert [a.job_id for a in adm.start] == [a.job_id for a in pinned.start]
    assert (adm.head and adm.head.job_id) == (pinned.head and pinned.head.job_id)
    by_id = {e.job_id: e for e in order}
    took = 0
    for a in adm.start:
        e = by_id[a.job_id]
        size = a.workers if e.max_workers is not None else e.num_workers
        assert size is not None and e.num_workers <= size <= (e.max_workers or e.num_workers)
        took += size
        if nodes is not None:
            assert a.placement is not None and sum(a.placement) == size
    assert took <= free
    if adm.head is not None:  # beyond their mins, the elastic jobs left what the blocked head needs
        extra = sum((a.workers or 0) - by_id[a.job_id].num_workers for a in adm.start if by_id[a.job_id].max_workers)
        assert extra == 0 or free - took >= adm.head.num_workers
    if nodes is not None:  # and every gang fits its nodes, all together
        left = [g for g in node_gpus]
        for a in adm.start:
            for n, k in enumerate(a.placement or []):
                left[n] -= k
        assert min(left) >= 0
