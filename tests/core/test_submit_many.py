"""Group commit in the core: ``submit_many`` stores a batch of submits with one commit, and each
submit still gets exactly the answer it would get alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fakes import FakeCluster
from helpers import spec

from scheduler.errors import DoesNotFit, IdempotencyConflict, InvalidSpec
from scheduler.events import EventLog
from scheduler.jobs import Job
from scheduler.states import JobStatus


def _commits(core) -> list[int]:
    """Count the store's commits from now on (its transactions, as SQLite sees them)."""
    seen = [0]
    core.store._db.set_trace_callback(lambda sql: seen.__setitem__(0, seen[0] + (sql.strip() == "COMMIT")))
    return seen


def test_a_batch_is_stored_with_one_commit_in_order_and_each_item_gets_its_own_answer(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 0.5}, maximum={"CPU": 8}))  # room for none now
    commits = _commits(core)
    answers = core.submit_many([
        (spec(name="a"), "ka", None),
        (spec(num_workers=99), "kb", None),  # larger than the cluster can ever be: refused alone
        ({"entrypoint": "steps:count_steps", "num_workers": 0}, None, None),  # invalid: refused alone
        (spec(name="c"), None, None),
        (spec(name="d"), "kd", None),
    ])
    assert commits[0] == 1  # three new jobs, one commit
    a, b, bad, c, d = answers
    assert isinstance(b, DoesNotFit) and isinstance(bad, InvalidSpec) and bad.fields["field"] == "num_workers"
    assert [j.name for j in (a, c, d)] == ["a", "c", "d"] and a.seq < c.seq < d.seq
    assert all(j.status is JobStatus.QUEUED for j in (a, c, d)) and core.count("queued") == 3
    assert [e.job_id for e in core.writer.queue.in_order()] == [a.job_id, c.job_id, d.job_id]
    for job in (a, c, d):  # all three on disk, each with its first transition
        assert core.store.get_job(job.job_id).name == job.name
        assert core.store.transitions(job.job_id)[0].reason == "submitted"


def test_one_submit_is_a_batch_of_one_and_raises_its_error(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    job = core.submit(spec(name="solo"))
    # Scheduled after its commit, in the same call, and answered as it is now.
    assert job["name"] == "solo" and job["status"] == "pending" and core.launcher.launched[0][0] == job["job_id"]
    with pytest.raises(InvalidSpec, match="num_workers"):
        core.submit({"entrypoint": "steps:count_steps", "num_workers": -1})
    assert core.count() == 1


def test_a_key_used_twice_in_one_batch_acts_once_and_a_key_with_another_spec_is_a_conflict(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 1}))
    first, again, other, clash = core.submit_many([
        (spec(name="x"), "same", None), (spec(name="x"), "same", None),
        (spec(name="y"), "other", None), (spec(name="z"), "same", None),
    ])
    assert isinstance(first, Job) and again.job_id == first.job_id and other.job_id != first.job_id
    assert isinstance(clash, IdempotencyConflict) and first.job_id in str(clash) and "different spec" in str(clash)
    assert core.count() == 2
    # The next batch finds the stored keys: the same jobs, nothing new.
    replayed = core.submit_many([(spec(name="x"), "same", None), (spec(name="y"), "other", None)])
    assert [j.job_id for j in replayed] == [first.job_id, other.job_id] and core.count() == 2


def test_a_batch_whose_commit_fails_stores_queues_and_announces_nothing(make_core, monkeypatch) -> None:
    core = make_core(FakeCluster({"CPU": 0.5}, maximum={"CPU": 8}))
    events: list[dict] = []
    core.listeners.append(events.append)

    def disk_full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(core.store, "_insert_transitions", disk_full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        core.submit_many([(spec(name="a"), "ka", None), (spec(name="b"), "kb", None)])
    monkeypatch.undo()
    assert core.count() == 0 and len(core.writer.queue) == 0 and events == []
    assert core.store.list_jobs() == [] and core.store.find_request("ka") is None  # all or none
    # Nothing half-done stands in the way: the same keys work afterwards.
    _, b = core.submit_many([(spec(name="a"), "ka", None), (spec(name="b"), "kb", None)])
    assert core.count() == 2 and core.store.find_request("kb")["job_id"] == b.job_id


def test_submit_json_answers_as_get_does_and_errors_stay_typed(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 0.5}, maximum={"CPU": 8}))
    ok, refused = core.submit_json([(spec(name="q"), "k", None), (spec(num_workers=99), None, None)])
    assert isinstance(refused, DoesNotFit)
    body = json.loads(ok)
    assert body == {**core.get(body["job_id"]), "pending_reason": None, "eta": None, "eta_basis": None}
    assert body["status"] == "queued" and body["queue_position"] == 1


def test_events_of_a_batch_are_seen_at_once_and_written_to_the_file_together(tmp_path: Path) -> None:
    log = EventLog(path=str(tmp_path / "events"))
    writes: list[int] = []
    store_append = log._store.append_many
    log._store.append_many = lambda events: (writes.append(len(events)), store_append(events))[1]
    with log.batch():
        log.append({"type": "status", "job_id": "a"})
        with log.batch():  # nested: the outer batch writes
            log.append({"type": "status", "job_id": "b"})
        assert [e["job_id"] for e in log.since(0)] == ["a", "b"]  # readers see them before the write
        assert writes == []
    log.append({"type": "status", "job_id": "c"})
    assert writes == [2, 1]
    reopened = EventLog(path=str(tmp_path / "events"))  # a restart reads all three back, numbered
    assert [(e["seq"], e["job_id"]) for e in reopened.since(0)] == [(1, "a"), (2, "b"), (3, "c")]


def test_a_batch_reads_its_keys_in_one_query_and_a_key_sent_again_gets_its_job(make_core) -> None:
    core = make_core(FakeCluster({"CPU": 0.5}, maximum={"CPU": 8}))
    (first,) = core.submit_many([(spec(name="a"), "ka", None)])
    selects: list[str] = []
    core.store._db.set_trace_callback(lambda sql: selects.append(sql) if "FROM requests" in sql else None)
    answers = core.submit_many([(spec(name=f"n{i}"), f"k{i}", None) for i in range(5)] + [(spec(name="a"), "ka", None)])
    assert len(selects) == 1  # the six keys looked up together, not one query each
    assert answers[-1].job_id == first.job_id and core.count() == 6  # the resent key made nothing new
