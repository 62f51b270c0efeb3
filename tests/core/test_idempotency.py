"""Idempotent verbs and reconciliation in the core, with fakes: what a retried call or a lost
runner event does to the registry."""

from __future__ import annotations

import pytest
from fakes import FakeCluster, FakeLauncher, RunnerSim
from helpers import spec

from scheduler.errors import IdempotencyConflict, IllegalTransition, InvalidSpec


def test_a_submit_retried_with_its_key_returns_the_same_job_even_after_a_restart(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    first = core.submit(spec(), idempotency_key="k1")
    again = core.submit(spec(), idempotency_key="k1")
    assert again["job_id"] == first["job_id"] and core.count() == 1
    # Ray re-runs an in-flight call on the restarted actor: a new core over the same store.
    restarted = make_core(FakeCluster({"CPU": 1}))
    assert restarted.submit(spec(), idempotency_key="k1")["job_id"] == first["job_id"]
    assert restarted.count() == 1
    other = restarted.submit(spec(), idempotency_key="k2")
    assert other["job_id"] != first["job_id"] and restarted.count() == 2


def test_a_key_reused_for_something_else_is_a_conflict_and_changes_nothing(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    job = core.submit(spec(), idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match="different spec"):
        core.submit(spec(num_workers=1, priority=5), idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match="not to cancel"):
        core.cancel(job["job_id"], idempotency_key="k")
    assert core.count() == 1 and core.get(job["job_id"])["status"] == "pending"
    for bad in ("", "x" * 201, "tab\there"):
        with pytest.raises(InvalidSpec, match="idempotency_key"):
            core.submit(spec(), idempotency_key=bad)
    assert core.count() == 1


def test_a_resume_that_committed_answers_the_same_when_retried_instead_of_409(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 1}), launcher)
    blocker = core.submit(spec())
    job = core.submit(spec())
    core.pause(job["job_id"])
    first = core.resume(job["job_id"], idempotency_key="r1")
    assert first["status"] == "queued" and first["queue_position"] == 1
    restarted = make_core(FakeCluster({"CPU": 1}), launcher)
    assert restarted.resume(job["job_id"], idempotency_key="r1") == first
    with pytest.raises(IllegalTransition):  # without the key it is a second, refused resume
        restarted.resume(job["job_id"])
    with pytest.raises(IdempotencyConflict, match="not job"):
        restarted.resume(blocker["job_id"], idempotency_key="r1")
    assert restarted.get(blocker["job_id"])["status"] == "pending"
    history = restarted.history(job["job_id"])["transitions"]
    assert [t["to_status"] for t in history].count("queued") == 2  # submitted, resumed once


def test_a_failed_verb_records_no_key_so_its_retry_runs_again(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    job = core.submit(spec())
    with pytest.raises(IllegalTransition):
        core.resume(job["job_id"], idempotency_key="r")  # pending: nothing to resume
    core.pause(job["job_id"])
    assert core.resume(job["job_id"], idempotency_key="r")["status"] in ("queued", "pending")


def test_reconciliation_settles_a_job_whose_runner_vanished_and_stops_orphans(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 2}), launcher)
    a = core.submit(spec(max_retries=0))["job_id"]
    b = core.submit(spec())["job_id"]
    RunnerSim(core, a, 1).started()
    RunnerSim(core, b, 1).started()
    # b's runner is watched (its end reaches the core anyway); a's is gone with no word; an
    # old attempt of b is alive; so is a run of a job another registry owns.
    done = core.reconcile(alive={(b, 1), (b, 0), ("job_of_another_registry", 3)}, watched={(b, 1)})
    assert core.get(a)["status"] == "failed"
    assert "reconciliation found no runner" in core.get(a)["error"]
    assert core.get(b)["status"] == "running"
    assert (b, 0) in launcher.stops and (a, 1) not in core.held
    assert ("job_of_another_registry", 3) not in launcher.stops  # never stop another scheduler's run
    assert len(done) == 2 and any("settled" in line for line in done)
    assert core.held[(b, 0)] == {"CPU": 1.0}  # the orphan's CPU is in use until its runner ends
    # it ended without a word: what it held is released once, then all is quiet
    assert core.reconcile(alive={(b, 1)}, watched={(b, 1)}) == [f"{b} attempt 0: resources held by no runner; released"]
    assert core.reconcile(alive={(b, 1)}, watched={(b, 1)}) == []


def test_reconciliation_releases_resources_that_no_runner_holds(make_core) -> None:
    launcher = FakeLauncher()
    core = make_core(FakeCluster({"CPU": 1}), launcher)
    a = core.submit(spec())["job_id"]
    waiting = core.submit(spec())["job_id"]
    RunnerSim(core, a, 1).started()
    core.cancel(a)  # stopping: held until its runner says it stopped, which never comes
    assert core.get(waiting)["status"] == "queued"
    done = core.reconcile(alive=set(), watched=set())
    assert any("released" in line for line in done)
    assert core.get(waiting)["status"] == "pending"


def test_a_launch_that_fails_later_fails_the_job_with_the_error(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    a = core.submit(spec())["job_id"]
    b = core.submit(spec())["job_id"]
    core.on_launch_failed(a, 1, "RuntimeError: working_dir upload failed")
    assert core.get(a)["status"] == "failed" and "upload failed" in core.get(a)["error"]
    assert core.get(b)["status"] == "pending"


def test_keys_older_than_their_ttl_are_pruned_so_a_steady_stream_of_verbs_keeps_the_registry_bounded(
        make_core) -> None:
    from fakes import FakeClock

    from scheduler.config import Settings

    clock = FakeClock()
    core = make_core(FakeCluster({"CPU": 1}), clock=clock)
    core.settings = Settings(storage_root=core.storage_root, db_path=":memory:", request_keys_ttl_s=3600)
    sizes, jobs = [], []
    for minute in range(6 * 60):  # six hours, a keyed submit and a keyed pause every minute
        job = core.submit(spec(), idempotency_key=f"s-{minute}")
        jobs.append(job["job_id"])
        core.pause(job["job_id"], idempotency_key=f"p-{minute}")
        clock.advance(60)
        core.tick()
        sizes.append(core.store.count_requests())
    # An hour of keys (120) plus at most one prune interval's worth (10 minutes: 20) are kept.
    assert max(sizes[120:]) <= 2 * 60 + 2 * 10 + 2, max(sizes)
    assert sizes[-1] >= 2 * 60  # nothing younger than the TTL went
    # Within the TTL a key still replays; past it, the same key acts again as a new request.
    assert core.submit(spec(), idempotency_key=f"s-{6 * 60 - 1}")["job_id"] == jobs[-1]
    assert core.count() == 6 * 60
    again = core.submit(spec(), idempotency_key="s-0")
    assert again["job_id"] != jobs[0] and core.count() == 6 * 60 + 1
