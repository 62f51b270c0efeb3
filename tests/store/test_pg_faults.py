"""Faults of the database server, at the store: lost while running, a typed error naming the
server, nothing of the failed call committed, and the same store working again when it returns."""

from __future__ import annotations

import pytest

from scheduler.errors import RegistryUnavailable
from scheduler.jobs import Job, Transition
from scheduler.states import JobStatus
from scheduler.store import open_store
from scheduler.store import pg_schema as store_tables

SECRET = "pw-not-shown"


def _submit(store, job_id: str) -> None:
    job = Job(job_id=job_id, name="n", spec={}, priority=0, seq=0, created_at=1.0, updated_at=1.0)
    store.insert_jobs([(job, Transition(job_id, None, JobStatus.QUEUED, 1.0, "submitted", 0), None)])


@pytest.fixture
def restartable(pg_server):
    """The session's server, started again after the test whatever happened in it."""
    yield pg_server
    if not pg_server.running:
        pg_server.start()


@pytest.mark.parametrize("fenced", [False, True])
def test_a_lost_server_is_a_typed_error_and_the_store_carries_on_when_it_returns(
        restartable, fresh_pg_url, fenced) -> None:
    store = open_store(fresh_pg_url.replace("postgres@", f"postgres:{SECRET}@"))
    if fenced:
        store.acquire_lease("a", ttl_s=3600, now=1.0)
    _submit(store, "job_1")
    restartable.stop()
    for call in (lambda: _submit(store, "job_2"), lambda: store.get_job("job_1"), store.current_lease):
        with pytest.raises(RegistryUnavailable) as caught:
            call()
        assert f"127.0.0.1:{restartable.port}" in caught.value.message and SECRET not in caught.value.message
    restartable.start()
    assert store.get_job("job_1").status is JobStatus.QUEUED
    _submit(store, "job_3")
    assert [j.job_id for j in store.list_jobs()] == ["job_3", "job_1"]  # job_2 was never committed
    store.close()


@pytest.mark.parametrize("first", ["read", "write", "fenced write"])
def test_a_server_restarted_between_two_calls_is_not_an_error(restartable, fresh_pg_url, first) -> None:
    store = open_store(fresh_pg_url)
    if first == "fenced write":
        store.acquire_lease("a", ttl_s=3600, now=1.0)
    _submit(store, "job_1")
    restartable.stop()
    restartable.start()  # every pooled connection is now dead, and nothing has noticed yet
    if first == "read":
        assert store.get_job("job_1") is not None
    else:
        _submit(store, "job_2")  # nothing of it reached the dead connection: it goes again, once
        assert store.count_jobs() == 2
    store.close()


def test_a_connection_killed_while_idle_is_replaced_without_an_error(pg_server, fresh_pg_url) -> None:
    store = open_store(fresh_pg_url)
    _submit(store, "job_1")
    database = fresh_pg_url.rsplit("/", 1)[1]
    killed = pg_server.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()")
    assert int(killed) >= 1
    _submit(store, "job_2")  # the killed connection fails its first statement: a fresh one is used
    assert store.count_jobs() == 2
    store.close()


def test_a_connection_lost_inside_a_write_is_a_typed_error_and_commits_nothing(fresh_pg_url) -> None:
    store = open_store(fresh_pg_url)
    _submit(store, "job_1")

    def dies_halfway(conn) -> None:
        conn.execute(store_tables.jobs.update().values(priority=5))
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")  # the server ends this session

    with pytest.raises(RegistryUnavailable):
        store._write(dies_halfway)  # not retried: a statement of it had run
    assert store.get_job("job_1").priority == 0
    store.close()
