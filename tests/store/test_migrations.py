"""Schemas: an SQLite registry of the previous schema upgrades in place and keeps working; the
Postgres schema that Alembic makes is the one the queries are built from; a newer one is refused."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from scheduler.jobs import Job, Report, Transition
from scheduler.states import JobStatus
from scheduler.store import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, open_event_store, open_store
from scheduler.store.migrations import statements
from scheduler.store.pg_schema import metadata


def test_an_sqlite_registry_of_schema_6_upgrades_in_place_and_still_works(tmp_path) -> None:
    path = str(tmp_path / "trainq.db")
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:6]:
        for statement in statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version=6")
    db.execute("INSERT INTO jobs (job_id, seq, name, status, priority, spec, created_at, updated_at, cooperative)"
               " VALUES ('job_1', 1, 'old', 'running', 2, '{\"entrypoint\": \"m:f\"}', 1.0, 1.0, 1)")
    db.execute("INSERT INTO transitions (job_id, from_status, to_status, at, reason, attempt)"
               " VALUES ('job_1', NULL, 'queued', 1.0, 'submitted', 0)")
    db.execute("INSERT INTO requests (key, verb, job_id, at) VALUES ('k', 'submit', 'job_1', 1.0)")
    db.commit()
    db.close()

    store = SQLiteStore(path)
    assert SCHEMA_VERSION == 8 and store.schema_version == 8
    job = store.get_job("job_1")
    assert (job.name, job.status, job.priority, job.cooperative) == ("old", JobStatus.RUNNING, 2, True)
    assert job.workers is None  # schema 8: not known for an attempt started before it
    store.update_job("job_1", {"workers": 3})
    assert store.get_job("job_1").workers == 3
    assert store.find_request("k")["job_id"] == "job_1" and len(store.transitions("job_1")) == 1
    assert store.current_lease() is None and store.acquire_lease("s", ttl_s=5, now=10).epoch == 1
    assert store.record_report(Report("job_1", 0, 1, 2.0, {"step": 1}, "/ck/1"))  # fenced now: still the leader
    new = Job(job_id="job_2", name="new", spec={}, priority=0, seq=0, created_at=3.0, updated_at=3.0)
    assert store.insert_job(new, Transition("job_2", None, JobStatus.QUEUED, 3.0, "submitted", 0)).seq == 2
    store.close()


def test_the_migrated_postgres_schema_is_the_one_the_queries_use(fresh_pg_url) -> None:
    open_store(fresh_pg_url).close()
    engine = sa.create_engine(fresh_pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
        lease = conn.exec_driver_sql("SELECT name, holder, epoch FROM lease").all()
    engine.dispose()
    assert differences == []
    assert lease == [("leader", None, 0)]


def test_opening_a_migrated_registry_again_changes_nothing_and_a_newer_one_is_refused(fresh_pg_url) -> None:
    store = open_store(fresh_pg_url)
    assert store.schema_revision == "0002"
    store.close()
    open_store(fresh_pg_url).close()  # at head already
    engine = sa.create_engine(fresh_pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(RuntimeError, match="newer than this trainq"):
        open_store(fresh_pg_url)


def test_the_event_log_lives_in_the_postgres_registry(pg_url) -> None:
    log = open_event_store(pg_url.replace("postgres@", "postgres:hunter2@"), capacity=20)
    log.append_many([{"seq": i, "type": "report", "n": i} for i in range(1, 31)])
    again = open_event_store(pg_url, capacity=20)
    assert again.epoch == log.epoch and again.last_seq() == 30
    assert [e["n"] for e in again.load(3)] == [28, 29, 30]
    assert len(again.load(100)) <= 22  # trimmed to the newest (every capacity/10 appends)
    assert "hunter2" not in repr(log) and ":***@" in repr(log)
    log.close()
    again.close()
