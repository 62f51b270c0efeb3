"""Accelerator types, placement strategies and node-aware preemption through the core, with a fake
launcher, a fake cluster (free resources per node, as Ray reports them) and a fake clock."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.config import Settings
from scheduler.core.snapshot import SETTLE_S
from scheduler.errors import DoesNotFit, UnknownAcceleratorType


def _core(make_core, nodes: list[dict[str, float]]):
    launcher, clock = FakeLauncher(), FakeClock()
    total: dict[str, float] = {}
    for n in nodes:
        for k, v in n.items():
            total[k] = total.get(k, 0.0) + v
    cluster = FakeCluster(total, node_sizes=[dict(n) for n in nodes], free_per_node=[dict(n) for n in nodes])
    core = make_core(cluster, launcher, clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:")
    return core, launcher, clock, cluster


def gpu_node(kind: str, gpus: float = 1) -> dict[str, float]:
    return {"CPU": 2.0, "GPU": float(gpus), f"accelerator_type:{kind}": 1.0}


def test_a_job_preferring_a100_then_t4_gets_a100_when_free_and_t4_when_not(make_core) -> None:
    core, launcher, *_ = _core(make_core, [gpu_node("A100"), gpu_node("T4")])
    pref = {"use_gpu": True, "accelerator_type": ["A100", "T4"]}
    first = core.submit(spec(name="first", **pref))["job_id"]
    second = core.submit(spec(name="second", **pref))["job_id"]
    got = {j: core.history(j)["attempts"][0]["accelerator_type"] for j in (first, second)}
    assert got == {first: "A100", second: "T4"}  # the second saw the A100 taken by the first (pending)
    # Ray Train is given the one type the attempt got, never the list
    assert launcher.specs[(first, 1)]["accelerator_type"] == "A100"
    assert launcher.specs[(second, 1)]["accelerator_type"] == "T4"
    assert core.get(first)["spec"]["accelerator_type"] == ["A100", "T4"]  # the job keeps what was asked
    assert any("admitted as attempt 1 on T4" in t["reason"] for t in core.history(second)["transitions"])


def test_a_type_the_cluster_lacks_is_refused_naming_the_types_it_has(make_core) -> None:
    core, *_ = _core(make_core, [gpu_node("A100"), gpu_node("T4"), {"CPU": 4.0}])
    with pytest.raises(UnknownAcceleratorType) as e:
        core.submit(spec(use_gpu=True, accelerator_type=["H100", "L4"]))
    assert "H100 or L4" in e.value.message and "the types it has: A100, T4" in e.value.message
    assert e.value.fields["field"] == "accelerator_type"
    with pytest.raises(DoesNotFit) as big:  # a gang no single node holds, with STRICT_PACK
        core.submit(spec(num_workers=5, placement_strategy="STRICT_PACK"))  # 8 CPUs, 4 on one node
    assert "STRICT_PACK" in big.value.message


def test_a_strict_pack_gang_waits_with_the_numbers_when_no_node_holds_it(make_core) -> None:
    core, _, _, cluster = _core(make_core, [{"CPU": 2.0}, {"CPU": 2.0}])
    a = core.submit(spec(min_runtime_s=0))["job_id"]
    b = core.submit(spec(min_runtime_s=0))["job_id"]
    for job_id in (a, b):
        RunnerSim(core, job_id, 1).started()
    cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 1.0}]  # one job on each node, as Ray now reports
    head = core.submit(spec(num_workers=2, placement_strategy="STRICT_PACK"))["job_id"]  # same priority
    waiting = core.get(head)
    assert waiting["status"] == "queued"
    assert waiting["pending_reason"]["message"] == (
        "STRICT_PACK needs 2 workers × 1 CPU on one node; the most any node holds now is 1 (1 CPU free)")


def _two_low_jobs_one_per_node(make_core):
    """Two 1-CPU jobs, one on each of two 2-CPU nodes, each with a checkpoint (a's 100 s older)."""
    core, launcher, clock, cluster = _core(make_core, [{"CPU": 2.0}, {"CPU": 2.0}])
    a = core.submit(spec(name="a", min_runtime_s=0))["job_id"]
    b = core.submit(spec(name="b", min_runtime_s=0))["job_id"]
    sims = {a: RunnerSim(core, a, 1), b: RunnerSim(core, b, 1)}
    for sim in sims.values():
        sim.started()
    cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 1.0}]
    sims[a].report(0, "/s/a/ck")
    clock.advance(100)
    return core, launcher, clock, cluster, a, b, sims


def test_a_strict_pack_head_preempts_only_the_job_whose_node_then_holds_it(make_core) -> None:
    core, launcher, _, cluster, a, b, sims = _two_low_jobs_one_per_node(make_core)
    sims[b].report(0, "/s/b/ck")  # b's checkpoint is fresher: the cheaper victim
    head = core.submit(spec(num_workers=2, placement_strategy="STRICT_PACK", priority=10))["job_id"]
    assert launcher.pauses == [(b, 1)] and core.get(a)["status"] == "running"
    assert core.get(head)["pending_reason"]["code"] == "preempting"
    assert b in core.get(head)["pending_reason"]["message"]
    core.tick()
    assert launcher.pauses == [(b, 1)]  # nothing more while b pauses
    sims[b].exit("paused")
    cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 2.0}]  # b's node is empty again
    core.tick()
    assert core.get(head)["status"] == "pending"  # it starts on b's node, whole


def test_room_a_victim_just_released_counts_as_on_its_way_while_ray_still_shows_it_taken(make_core) -> None:
    # The race the accelerator scenario met: the victim's run ends, trainq schedules at once, and
    # Ray's per-node view still shows its CPU taken; the head must wait for that room, not pause a second job.
    core, launcher, clock, cluster, a, b, sims = _two_low_jobs_one_per_node(make_core)
    sims[b].report(0, "/s/b/ck")
    head = core.submit(spec(num_workers=2, placement_strategy="STRICT_PACK", priority=10))["job_id"]
    assert launcher.pauses == [(b, 1)]
    sims[b].exit("paused")  # Ray's view is stale: b's CPU still shows as taken
    core.tick()
    clock.advance(1)
    core.tick()
    assert launcher.pauses == [(b, 1)] and core.get(a)["status"] == "running"
    assert core.get(head)["status"] == "queued"
    cluster.free_per_node = [{"CPU": 1.0}, {"CPU": 2.0}]  # Ray catches up
    core.tick()
    assert core.get(head)["status"] == "pending"


def test_room_that_never_shows_in_ray_is_made_again_once_it_has_had_time_to(make_core) -> None:
    # Something outside trainq took the released CPU: after the settling time the head makes room anew.
    core, launcher, clock, _, a, b, sims = _two_low_jobs_one_per_node(make_core)
    sims[b].report(0, "/s/b/ck")
    head = core.submit(spec(num_workers=2, placement_strategy="STRICT_PACK", priority=10))["job_id"]
    sims[b].exit("paused")
    core.tick()
    assert launcher.pauses == [(b, 1)]
    clock.advance(SETTLE_S + 1)
    core.tick()
    assert launcher.pauses == [(b, 1), (a, 1)]
    assert a in core.get(head)["pending_reason"]["message"]
