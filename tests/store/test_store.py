"""The registry, on each backend (``store`` and ``make_store`` are parametrised: tests/store/conftest.py).

A test that takes ``tmp_path`` instead is about the SQLite file itself (its cache, its migrations)."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import sqlalchemy as sa

from scheduler.jobs import Attempt, Job, Report, Transition
from scheduler.states import JobStatus
from scheduler.store import MIGRATIONS, SCHEMA_VERSION, Request, SQLiteStore
from scheduler.store.migrations import statements as _statements


def _job(job_id: str = "job_1") -> Job:
    return Job(job_id=job_id, name="n", spec={"entrypoint": "m:f"}, priority=3, seq=0,
               created_at=10.0, updated_at=10.0)


def test_survives_reopen(make_store) -> None:
    s = make_store()
    s.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    s.transition("job_1", JobStatus.QUEUED, Transition("job_1", JobStatus.QUEUED, JobStatus.PENDING, 11.0, "go", 1),
                 {"attempt": 1})
    s.record_report(Report("job_1", 1, 1, 12.0, {"step": 4}, "/ck/1"))
    s.save_attempt(Attempt("job_1", 1, 11.0, run_name="attempt-1"))
    s.close()

    s = make_store()
    job = s.get_job("job_1")
    assert job.status is JobStatus.PENDING and job.attempt == 1 and job.priority == 3
    assert job.checkpoint_path == "/ck/1" and job.metrics == {"step": 4}
    assert [t.to_status for t in s.transitions("job_1")] == [JobStatus.QUEUED, JobStatus.PENDING]
    assert s.checkpoints("job_1")[0]["path"] == "/ck/1"
    assert s.get_attempt("job_1", 1).run_name == "attempt-1"


def test_an_sqlite_file_is_at_the_current_schema(tmp_path) -> None:
    s = SQLiteStore(str(tmp_path / "db.sqlite"))
    assert s.schema_version == SCHEMA_VERSION
    s.close()


def test_compare_and_set_writes_nothing_on_mismatch(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    t = Transition("job_1", JobStatus.RUNNING, JobStatus.COMPLETED, 11.0, "x", 0)
    assert store.transition("job_1", JobStatus.RUNNING, t, {"finished_at": 11.0}) is None
    job = store.get_job("job_1")
    assert job.status is JobStatus.QUEUED and job.finished_at is None
    assert len(store.transitions("job_1")) == 1


def test_reports_are_idempotent_and_ordered(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    assert store.record_report(Report("job_1", 1, 1, 1.0, {"step": 0}))
    assert store.record_report(Report("job_1", 1, 2, 2.0, {"step": 1}, "/ck/a"))
    assert not store.record_report(Report("job_1", 1, 2, 2.0, {"step": 1}, "/ck/a"))  # a resend
    assert store.record_report(Report("job_1", 2, 1, 3.0, {"step": 2}, "/ck/b"))
    assert [r.metrics["step"] for r in store.reports("job_1")] == [0, 1, 2]
    assert [c["path"] for c in store.checkpoints("job_1")] == ["/ck/b", "/ck/a"]
    assert store.get_job("job_1").checkpoint_path == "/ck/b"


def test_status_only_through_transition(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    with pytest.raises(ValueError):
        store.update_job("job_1", {"status": "running"})


def test_newer_schema_is_refused(tmp_path) -> None:
    path = str(tmp_path / "db.sqlite")
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer than this trainq"):
        SQLiteStore(path)


def test_list_filters_and_pages(store) -> None:
    for i in range(5):
        job = _job(f"job_{i}")
        store.insert_job(job, Transition(job.job_id, None, JobStatus.QUEUED, 10.0, "s", 0))
    assert [j.job_id for j in store.list_jobs(limit=2)] == ["job_4", "job_3"]
    assert [j.job_id for j in store.list_jobs(limit=2, offset=2)] == ["job_2", "job_1"]
    assert store.count_jobs([JobStatus.QUEUED]) == 5 and store.count_jobs([JobStatus.RUNNING]) == 0


def test_reads_of_a_job_see_every_write_to_it(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    store.insert_job(_job("job_2"), Transition("job_2", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    store.get_job("job_1")
    assert [j.job_id for j in store.list_jobs()] == ["job_2", "job_1"]

    store.transition("job_1", JobStatus.QUEUED, Transition("job_1", JobStatus.QUEUED, JobStatus.PENDING, 11.0, "go", 1),
                     {"attempt": 1})
    assert store.get_job("job_1").status is JobStatus.PENDING and store.list_jobs()[1].attempt == 1
    store.update_job("job_1", {"priority": 7})
    assert store.get_jobs(["job_1"])["job_1"].priority == 7
    store.record_report(Report("job_1", 1, 1, 12.0, {"step": 4}, "/ck/1"))
    assert store.list_jobs([JobStatus.PENDING])[0].metrics == {"step": 4}
    assert store.get_job("job_1").checkpoint_path == "/ck/1"
    assert not store.transition("job_2", JobStatus.RUNNING,  # a failed compare-and-set changes nothing
                                Transition("job_2", JobStatus.RUNNING, JobStatus.QUEUED, 13.0, "no", 0), {})
    assert store.get_job("job_2").status is JobStatus.QUEUED


def test_sqlite_keeps_decoded_copies_until_their_row_is_written(tmp_path) -> None:
    store = SQLiteStore(str(tmp_path / "trainq.db"))
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    store.insert_job(_job("job_2"), Transition("job_2", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    first = store.get_job("job_1")
    assert store.get_job("job_1") is first  # kept: an unchanged job is not decoded again
    assert store.list_jobs()[1] is first
    store.update_job("job_1", {"priority": 7})
    assert store.get_job("job_1") is not first and store.get_job("job_1").priority == 7
    store.close()


def test_a_jobs_public_dict_is_new_on_every_call(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    shown = store.get_job("job_1").to_dict(queue_position=1)
    shown["status"], shown["name"] = "tampered", "x"
    again = store.get_job("job_1").to_dict(queue_position=2)
    assert (again["status"], again["name"], again["queue_position"]) == ("queued", "n", 2)
    assert again["created_at"] == "1970-01-01T00:00:10.000Z"


def test_none_and_bools_read_back_as_stored(make_store) -> None:
    job = dataclasses.replace(_job(), cooperative=True, resumable=None, borrowing=False)
    make_store().insert_job(job, Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    again = make_store().get_job("job_1")  # another store object: decoded from the row
    assert again.cooperative is True and again.resumable is None and again.borrowing is False


def test_sqlite_stores_none_and_bools_as_null_and_integers(tmp_path) -> None:
    # None and bool bind through registered adapters (a fast path); they must store as before.
    store = SQLiteStore(str(tmp_path / "trainq.db"))
    job = dataclasses.replace(_job(), cooperative=True, resumable=None, borrowing=False)
    store.insert_job(job, Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    row = store._db.execute("SELECT typeof(cooperative), cooperative, typeof(resumable), typeof(borrowing),"
                            " borrowing, typeof(owner) FROM jobs WHERE job_id = 'job_1'").fetchone()
    assert tuple(row) == ("integer", 1, "null", "integer", 0, "null")
    store.close()


def test_the_decoded_copies_keep_the_newest_when_full(tmp_path, monkeypatch) -> None:
    store = SQLiteStore(str(tmp_path / "trainq.db"))
    monkeypatch.setattr("scheduler.store.sqlite.JOB_CACHE_SIZE", 3)
    for i in range(5):
        store.insert_job(_job(f"job_{i}"), Transition(f"job_{i}", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    assert list(store._jobs) == ["job_2", "job_3", "job_4"]  # the oldest went first
    assert store.get_job("job_0").job_id == "job_0"  # read again from its row, and kept
    assert list(store._jobs) == ["job_3", "job_4", "job_0"]


def test_request_keys_are_found_many_at_once(store) -> None:
    store.insert_jobs([(_job(f"job_{i}"), Transition(f"job_{i}", None, JobStatus.QUEUED, 10.0, "s", 0),
                        Request(f"k{i}", "submit", f"fp{i}")) for i in range(3)])
    keys = [f"k{i}" for i in range(12_000)]  # more than one query's bound parameters (both backends)
    found = store.find_requests(keys)
    assert sorted(found) == ["k0", "k1", "k2"] and found["k1"] == store.find_request("k1")
    assert found["k2"]["job_id"] == "job_2" and found["k2"]["fingerprint"] == "fp2"
    assert store.find_requests([]) == {}


def test_a_registry_from_before_keyed_requests_keeps_its_keys(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:6]:
        for statement in _statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version=6")
    db.execute("INSERT INTO jobs (job_id, seq, name, status, priority, spec, created_at, updated_at)"
               " VALUES ('job_1', 1, 'n', 'queued', 0, '{}', 1.0, 1.0)")
    db.execute("INSERT INTO requests (key, verb, job_id, fingerprint, at) VALUES ('k', 'submit', 'job_1', 'fp', 1.0)")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.find_request("k") == {"verb": "submit", "job_id": "job_1", "fingerprint": "fp", "response": None,
                                       "at": 1.0}
    tables = dict(store._db.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')").fetchall())
    assert "WITHOUT ROWID" in tables["requests"] and "jobs_by_owner" not in tables
    store.close()


def test_old_request_keys_are_pruned_and_young_ones_kept(store) -> None:
    for i, at in enumerate([10.0, 20.0, 30.0]):
        job = dataclasses.replace(_job(), job_id=f"job_{i}")
        store.insert_job(job, Transition(job.job_id, None, JobStatus.QUEUED, at, "submitted", 0),
                         Request(f"k{i}", "submit", "f"))
    assert store.count_requests() == 3
    assert store.prune_requests(before=25.0) == 2
    assert store.count_requests() == 1 and store.find_request("k2") is not None and store.find_request("k0") is None


def test_checkpoints_pins_sizes_and_deletions(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    store.record_report(Report("job_1", 1, 1, 1.0, {"step": 1}, "/ck/a"))
    store.record_report(Report("job_1", 1, 2, 2.0, {"step": 2}, "/ck/b"))
    assert store.update_checkpoint("job_1", "/ck/a", {"pinned": True, "bytes": 5_000_000_000})
    assert store.update_checkpoint("job_1", "/ck/b", {"bytes": 7})
    assert not store.update_checkpoint("job_1", "/ck/none", {"bytes": 1})
    assert store.find_checkpoint("job_1", "/ck/a")["pinned"] is True
    assert store.checkpoint_bytes("job_1") == 5_000_000_007  # past 32 bits
    store.update_checkpoint("job_1", "/ck/b", {"deleted_at": 3.0})
    assert store.checkpoint_bytes_of(["job_1", "job_x"]) == {"job_1": 5_000_000_000}
    with pytest.raises(ValueError):
        store.update_checkpoint("job_1", "/ck/a", {"path": "/elsewhere"})


def test_attempts_reports_and_values(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0))
    store.save_attempt(Attempt("job_1", 1, 11.0, run_name="a-1"))
    store.save_attempt(Attempt("job_1", 2, 20.0, run_name="a-2"))
    store.save_attempt(Attempt("job_1", 1, 11.0, run_name="a-1", ended_at=15.0, outcome="paused",
                               lost_work={"steps": 2}))  # replaces attempt 1's row
    assert [(a.attempt, a.outcome) for a in store.attempts("job_1")] == [(1, "paused"), (2, None)]
    assert store.get_attempt("job_1", 1).lost_work == {"steps": 2} and store.get_attempt("job_1", 3) is None
    assert [a.attempt for a in store.attempts_since(16.0)] == [2]  # 1 ended before, 2 still runs
    assert len(store.attempts_since(None)) == 2
    for seq in range(1, 6):
        store.record_report(Report("job_1", 2, seq, 20.0 + seq, {"step": seq}))
    assert [r.seq for r in store.last_reports("job_1", 2, 2)] == [4, 5]
    assert [r.seq for r in store.reports("job_1", attempt=2, limit=2)] == [1, 2]
    assert store.get_meta("ledger") is None
    store.set_meta("ledger", {"alice": 1.5})
    store.set_meta("ledger", {"alice": 2.5})
    assert store.get_meta("ledger") == {"alice": 2.5}
    assert store.next_seq() == 2 and store.count_by_status() == {JobStatus.QUEUED: 1}
    assert [j.job_id for j in store.jobs_in([JobStatus.QUEUED])] == ["job_1"] and store.jobs_in([]) == []


def test_a_verb_answer_is_kept_with_its_key(store) -> None:
    store.insert_job(_job(), Transition("job_1", None, JobStatus.QUEUED, 10.0, "submitted", 0), Request("k", "submit"))
    t = Transition("job_1", JobStatus.QUEUED, JobStatus.PAUSED, 11.0, "pause", 0)
    assert store.transition("job_1", JobStatus.QUEUED, t, {"paused_at": 11.0}, Request("k2", "pause")).paused_at == 11.0
    store.set_request_response("k2", {"status": "paused"})
    assert store.find_request("k2")["response"] == {"status": "paused"} and store.find_request("k2")["verb"] == "pause"
    with pytest.raises((sqlite3.IntegrityError, sa.exc.IntegrityError)):  # a key is used once: nothing written
        store.transition("job_1", JobStatus.PAUSED, Transition("job_1", JobStatus.PAUSED, JobStatus.QUEUED, 12.0,
                                                               "resume", 0), {}, Request("k2", "resume"))
    assert store.get_job("job_1").status is JobStatus.PAUSED and len(store.transitions("job_1")) == 2
