"""Accelerator types and placement strategies, pure: the spec, placement, type choice, node-aware
victims and quotas per type (``policy.accelerators``, ``placement``, ``preemption``, ``quota``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.errors import InvalidSpec
from scheduler.policy import accelerators
from scheduler.policy.admission import admit_with_quotas
from scheduler.policy.placement import STRATEGIES, holds, place_gang
from scheduler.policy.preemption import Candidate, choose_victims
from scheduler.policy.queue import Entry
from scheduler.policy.quota import BORROWING, OVER_MAX, Quota, check, never_fits_quota
from scheduler.spec import parse_spec

NOW = 10_000.0
A100, T4 = "accelerator_type:A100", "accelerator_type:T4"


def node(cpus: float, gpus: float = 0, kind: str | None = None) -> dict[str, float]:
    out = {"CPU": float(cpus), "GPU": float(gpus)}
    if kind:
        out[f"accelerator_type:{kind}"] = 1.0
    return out


def entry(workers: int = 1, worker: dict | None = None, types: tuple[str, ...] = (), strategy: str = "PACK",
          job_id: str = "h", priority: int = 10) -> Entry:
    w = worker or {"CPU": 1.0}
    return Entry(job_id, priority, 0, {k: v * workers for k, v in w.items()}, w, workers, types=types,
                 strategy=strategy)


def totals(nodes: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in nodes:
        for k, v in n.items():
            out[k] = out.get(k, 0.0) + v
    return out


# -- the spec -------------------------------------------------------------------------------------
def test_the_spec_takes_one_type_or_a_preference_list_and_a_strategy() -> None:
    assert parse_spec({"entrypoint": "a:b"}).accelerator_types() == ()
    assert parse_spec({"entrypoint": "a:b", "accelerator_type": "A100"}).accelerator_types() == ("A100",)
    both = parse_spec({"entrypoint": "a:b", "accelerator_type": ["A100", "T4"], "placement_strategy": "STRICT_PACK"})
    assert both.accelerator_types() == ("A100", "T4") and both.placement_strategy == "STRICT_PACK"
    for bad, field in [({"accelerator_type": []}, "accelerator_type"), ({"accelerator_type": ["T4", "T4"]},
                       "accelerator_type"), ({"accelerator_type": "A 100"}, "accelerator_type"),
                       ({"placement_strategy": "TIGHT"}, "placement_strategy")]:
        with pytest.raises(InvalidSpec) as e:
            parse_spec({"entrypoint": "a:b", **bad})
        assert e.value.fields["field"].startswith(field)


# -- placement strategies -------------------------------------------------------------------------
def test_each_strategy_places_as_ray_would_allow() -> None:
    nodes = [{"CPU": 1.0}, {"CPU": 3.0}, {"CPU": 2.0}]
    assert place_gang({"CPU": 1.0}, 3, nodes, "PACK") == [0, 3, 0]
    assert place_gang({"CPU": 1.0}, 3, nodes, "SPREAD") == [1, 1, 1]
    assert place_gang({"CPU": 1.0}, 2, nodes, "STRICT_PACK") == [0, 0, 2]  # the tightest node that holds it
    assert place_gang({"CPU": 1.0}, 4, nodes, "STRICT_PACK") is None  # 6 free, but no node has 4
    assert place_gang({"CPU": 1.0}, 3, nodes, "STRICT_SPREAD") == [1, 1, 1]
    assert place_gang({"CPU": 1.0}, 4, nodes, "STRICT_SPREAD") is None  # 3 nodes for 4 workers


nodes_st = st.lists(st.fixed_dictionaries({"CPU": st.integers(0, 4).map(float)}), min_size=0, max_size=5)


@settings(max_examples=300, deadline=None)
@given(nodes=nodes_st, n=st.integers(1, 8), cpus=st.integers(1, 2), strategy=st.sampled_from(STRATEGIES))
def test_a_placement_exists_exactly_when_the_strategy_allows_and_respects_every_node(nodes, n, cpus, strategy) -> None:
    worker = {"CPU": float(cpus)}
    room = [holds(worker, x) for x in nodes]
    feasible = {"PACK": sum(room) >= n, "SPREAD": sum(room) >= n, "STRICT_PACK": any(r >= n for r in room),
                "STRICT_SPREAD": sum(1 for r in room if r) >= n}[strategy]
    placed = place_gang(worker, n, nodes, strategy)
    assert (placed is not None) == feasible
    if placed is not None:
        assert sum(placed) == n and all(p <= r for p, r in zip(placed, room, strict=True))
        if strategy == "STRICT_PACK":
            assert sum(1 for p in placed if p) == 1
        if strategy == "STRICT_SPREAD":
            assert max(placed) == 1


# -- choosing a type ------------------------------------------------------------------------------
def test_a_preference_list_takes_the_first_type_that_fits_and_never_mixes_types() -> None:
    nodes = [node(2, 1, "A100"), node(2, 1, "A100"), node(2, 4, "T4")]
    gang = entry(2, {"CPU": 1.0, "GPU": 1.0}, ("A100", "T4"))
    got = accelerators.choose(gang, totals(nodes), nodes)
    assert got is not None and got.accelerator_type == "A100" and got.placement == [1, 1, 0]
    nodes[0]["GPU"] = 0.0  # one A100 busy: 1 A100 GPU left, not enough for the gang; T4 holds it whole
    got = accelerators.choose(gang, totals(nodes), nodes)
    assert got is not None and got.accelerator_type == "T4" and got.placement == [0, 0, 2]
    assert got.worker[T4] == accelerators.PER_WORKER and A100 not in got.demand


@settings(max_examples=200, deadline=None)
@given(kinds=st.lists(st.sampled_from(["A100", "T4", None]), min_size=1, max_size=5),
       gpus=st.lists(st.integers(0, 3), min_size=5, max_size=5), n=st.integers(1, 5),
       types=st.permutations(["A100", "T4"]).map(tuple), strategy=st.sampled_from(STRATEGIES))
def test_a_gang_lands_on_nodes_of_its_chosen_type_only(kinds, gpus, n, types, strategy) -> None:
    nodes = [node(4, g, k) for k, g in zip(kinds, gpus, strict=False)]
    got = accelerators.choose(entry(n, {"GPU": 1.0}, types, strategy), totals(nodes), nodes)
    if got is None:
        return
    assert got.accelerator_type in types and got.placement is not None
    chosen = f"accelerator_type:{got.accelerator_type}"
    assert all(nodes[i].get(chosen, 0) > 0 for i, k in enumerate(got.placement) if k)
    earlier = types[:types.index(got.accelerator_type)]
    assert all(accelerators.choose(entry(n, {"GPU": 1.0}, (t,), strategy), totals(nodes), nodes) is None
               for t in earlier)  # a preferred type that fits is never passed over


def test_a_type_no_node_has_is_named_with_the_types_the_cluster_has() -> None:
    nodes = [node(2, 1, "A100"), node(2, 4, "T4"), node(1)]
    assert accelerators.unknown_types(["H100"], nodes, {}) == ["A100", "T4"]
    assert accelerators.unknown_types(["H100", "T4"], nodes, {}) is None  # a fallback it has
    assert accelerators.unknown_types(["H100"], [], {"GPU": 8, "accelerator_type:H100": 1}) is None  # promised
    assert accelerators.unknown_types([], nodes, {}) is None


def test_strict_pack_never_fits_a_cluster_whose_nodes_are_all_too_small() -> None:
    nodes = [node(2), node(2)]
    assert accelerators.never_fits(entry(3, strategy="STRICT_PACK"), totals(nodes), nodes)
    assert not accelerators.never_fits(entry(2, strategy="STRICT_PACK"), totals(nodes), nodes)
    assert not accelerators.never_fits(entry(3), {"CPU": 4.0}, [node(2), node(2)])  # PACK spans nodes


def test_why_not_says_strict_pack_needs_one_node_with_the_numbers() -> None:
    nodes = [node(1), node(1)]  # 2 CPUs free in all, 1 on each node
    why = accelerators.why_not(entry(2, strategy="STRICT_PACK"), {"CPU": 2.0}, nodes)
    assert why == ("STRICT_PACK needs 2 workers × 1 CPU on one node; the most any node holds now is 1 (1 CPU free)")
    assert "no A100 node is up" in str(accelerators.why_not(entry(1, types=("A100",)), {"CPU": 2.0}, nodes))
    assert accelerators.why_not(entry(1), {"CPU": 2.0}, nodes) is None  # it fits


# -- admission ------------------------------------------------------------------------------------
def test_admission_gives_each_job_its_first_type_that_fits_now() -> None:
    nodes = [node(4, 2, "A100"), node(4, 2, "T4")]
    order = [entry(2, {"GPU": 1.0}, ("A100", "T4"), job_id="a", priority=0),
             entry(2, {"GPU": 1.0}, ("A100", "T4"), job_id="b", priority=0),
             entry(1, {"GPU": 1.0}, ("A100",), job_id="c", priority=0)]
    adm = admit_with_quotas(order, totals(nodes), NOW, owners={}, used={}, quotas={}, nodes_free=nodes)
    assert [(a.job_id, a.accelerator_type, a.placement) for a in adm.start] == [("a", "A100", [2, 0]),
                                                                                 ("b", "T4", [0, 2])]
    assert adm.head is not None and adm.head.job_id == "c"  # A100 only, and the A100 node is full


def test_a_per_type_max_sends_the_job_to_its_next_type_and_holds_it_when_every_type_is_over() -> None:
    nodes = [node(4, 4, "A100"), node(4, 4, "T4")]
    quotas = {"u": Quota({}, {"GPU:A100": 2})}
    order = [entry(2, {"GPU": 1.0}, ("A100", "T4"), job_id="a", priority=0),
             entry(2, {"GPU": 1.0}, ("A100", "T4"), job_id="b", priority=0),
             entry(1, {"GPU": 1.0}, ("A100",), job_id="c", priority=0)]
    adm = admit_with_quotas(order, totals(nodes), NOW, owners=dict.fromkeys("abc", "u"), used={}, quotas=quotas,
                            nodes_free=nodes)
    assert [(a.job_id, a.accelerator_type) for a in adm.start] == [("a", "A100"), ("b", "T4")]
    assert "GPU:A100" in adm.held["c"] and "max of 2" in adm.held["c"]


# -- quotas per type ------------------------------------------------------------------------------
def test_quotas_count_and_borrow_per_type() -> None:
    q = Quota({"GPU": 4, "GPU:A100": 1}, {"GPU:A100": 2})
    a100 = accelerators.per_type({"GPU": 2.0, A100: 0.002}, "A100")
    assert a100 == {"GPU": 2.0, "GPU:A100": 2.0}
    assert check(a100, {}, q).status == BORROWING  # within GPU 4 but beyond the A100 guarantee of 1
    assert check(accelerators.per_type({"GPU": 2.0}, "T4"), {}, q).status == "guaranteed"
    assert check(a100, {"GPU:A100": 1.0}, q).status == OVER_MAX
    assert never_fits_quota({"GPU": 3.0}, q, "u", ("A100",)) is not None
    assert never_fits_quota({"GPU": 3.0}, q, "u", ("A100", "T4")) is None  # T4 may hold it


# -- node-aware victims ---------------------------------------------------------------------------
def running(job_id: str, node_id: str, workers: int = 1, priority: int = 0, ckpt_age: float = 10.0) -> Candidate:
    return Candidate(job_id, priority, {"CPU": float(workers)}, 0.0, last_checkpoint_at=NOW - ckpt_age,
                     worker={"CPU": 1.0}, nodes={node_id: workers})


def test_a_strict_pack_head_preempts_only_the_job_whose_node_then_holds_it_whole() -> None:
    # Two 2-CPU nodes, each with one 1-CPU job: 2 CPUs free in all, but no node holds 2.
    nodes = {"n1": {"CPU": 1.0}, "n2": {"CPU": 1.0}}
    holders = [running("on-n1", "n1", ckpt_age=50), running("on-n2", "n2", ckpt_age=5)]
    gang = entry(2, strategy="STRICT_PACK")
    got = choose_victims("h", 10, gang.demand, holders, {"CPU": 2.0}, {"CPU": 4.0}, NOW, gang=gang, nodes=nodes)
    assert got is not None and got.victims == ["on-n2"]  # the cheaper one; its node then holds the gang
    assert got.placement == {"n2": 2}


def test_nobody_is_preempted_when_no_victim_set_makes_room_the_gang_can_use() -> None:
    nodes = {"n1": {"CPU": 1.0}, "n2": {"CPU": 1.0}, "n3": {"CPU": 0.0}}
    # the only lower-priority job runs on n3 (1 CPU node): freeing it gives no node 3 CPUs
    holders = [running("low", "n3"), running("high", "n1", priority=50)]
    gang = entry(3, strategy="STRICT_PACK")
    assert choose_victims("h", 10, gang.demand, holders, {"CPU": 2.0}, {"CPU": 4.0}, NOW, gang=gang,
                          nodes=nodes) is None
    # the totals alone would have paused "low" for nothing
    assert choose_victims("h", 10, gang.demand, holders, {"CPU": 2.0}, {"CPU": 4.0}, NOW) is not None


def test_room_freed_on_another_type_is_no_room() -> None:
    nodes = {"a": {"GPU": 0.0, A100: 1.0}, "t": {"GPU": 0.0, "accelerator_type:T4": 1.0}}
    on_t4 = Candidate("t4-job", 0, {"GPU": 1.0}, 0.0, worker={"GPU": 1.0, "accelerator_type:T4": 0.001},
                      nodes={"t": 1})
    gang = entry(1, {"GPU": 1.0}, ("A100",))
    assert choose_victims("h", 10, gang.demand, [on_t4], {"GPU": 0.0, A100: 1.0}, {"GPU": 2.0}, NOW, gang=gang,
                          nodes=nodes) is None


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=4),
       jobs=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 2), st.integers(0, 5), st.integers(0, 100)),
                     max_size=6),
       n=st.integers(1, 4), strategy=st.sampled_from(STRATEGIES))
def test_victims_always_make_placeable_room_and_each_one_is_needed(sizes, jobs, n, strategy) -> None:
    ids = [f"n{i}" for i in range(len(sizes))]
    free = {i: float(s) for i, s in zip(ids, sizes, strict=True)}
    holders = []
    for k, (at, workers, prio, age) in enumerate(jobs):
        node_id = ids[at % len(ids)]
        workers = min(workers, int(free[node_id]))
        if workers == 0:
            continue
        free[node_id] -= workers
        holders.append(Candidate(f"j{k}", prio, {"CPU": float(workers)}, 0.0, last_checkpoint_at=NOW - age,
                                 worker={"CPU": 1.0}, nodes={node_id: workers}))
    nodes = {i: {"CPU": c} for i, c in free.items()}
    gang = entry(n, strategy=strategy)
    total = {"CPU": sum(free.values())}
    got = choose_victims("h", 10, gang.demand, holders, total, {"CPU": float(sum(sizes))}, NOW, gang=gang, nodes=nodes)

    def room_with(victims: list[Candidate]) -> list[dict[str, float]]:
        room = {i: dict(r) for i, r in nodes.items()}
        for v in victims:
            for node_id, k in (v.nodes or {}).items():
                room[node_id]["CPU"] += k
        return list(room.values())

    eligible = [c for c in holders if c.priority < 10]
    if got is None:  # either it fits, or even every eligible victim would not make room
        assert place_gang({"CPU": 1.0}, n, room_with([])) is not None or \
            place_gang({"CPU": 1.0}, n, room_with(eligible), strategy) is None
        return
    chosen = [c for c in holders if c.job_id in got.victims]
    assert all(c.priority < 10 for c in chosen)
    assert place_gang({"CPU": 1.0}, n, room_with(chosen), strategy) is not None
    for c in chosen:  # nobody paused for nothing
        assert place_gang({"CPU": 1.0}, n, room_with([x for x in chosen if x is not c]), strategy) is None


def test_types_present_reads_nodes_and_ignores_zero_amounts() -> None:
    assert accelerators.types_in([{A100: 1.0}, {T4: 0.0}, {"CPU": 2.0}]) == ["A100"]
    assert list(itertools.chain(accelerators.per_type({"CPU": 1.0}, None))) == ["CPU"]
