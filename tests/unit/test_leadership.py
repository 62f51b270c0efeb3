"""One active scheduler per registry: the leadership over a real registry file, with a fake clock."""

from __future__ import annotations

import pytest
from fakes import FakeClock

from scheduler.errors import LeaseLost
from scheduler.jobs import Job, Transition
from scheduler.leadership import Leadership
from scheduler.states import JobStatus
from scheduler.store import SQLiteStore


def _job(job_id: str, now: float) -> tuple[Job, Transition, None]:
    job = Job(job_id=job_id, name="j", spec={"entrypoint": "m:f"}, priority=0, seq=1, status=JobStatus.QUEUED,
              created_at=now, updated_at=now)
    return job, Transition(job_id, None, JobStatus.QUEUED, now, "submitted", 0), None


def test_a_second_scheduler_stands_by_and_takes_over_only_when_the_lease_expires(tmp_path) -> None:
    clock = FakeClock()
    db = str(tmp_path / "r.db")
    first = Leadership(SQLiteStore(db), "scheduler@a", ttl_s=15, clock=clock)
    second = Leadership(SQLiteStore(db), "scheduler@b", ttl_s=15, clock=clock)
    assert first.take() and first.describe()["role"] == "leader"
    assert not second.take()
    standby = second.describe()
    assert standby["role"] == "standby" and standby["leader"]["holder"] == "scheduler@a"
    assert "scheduler@a leads the registry" in second.standby_message()
    for _ in range(10):  # the leader renews every third of the ttl: the standby never gets in
        clock.advance(5)
        assert first.keep()
        assert not second.take()
    clock.advance(16)  # the leader stopped renewing (killed, partitioned): the lease expires
    assert second.take() and second.lease is not None and second.lease.epoch == first.lease.epoch + 1
    assert not first.keep() and not first.leading  # renewing now fails: it must stop acting


def test_a_deposed_leaders_writes_are_refused_and_a_restart_takes_its_own_lease_back(tmp_path) -> None:
    clock = FakeClock()
    db = str(tmp_path / "r.db")
    old_store, new_store = SQLiteStore(db), SQLiteStore(db)
    old = Leadership(old_store, "scheduler@a", ttl_s=15, clock=clock)
    assert old.take()
    old_store.insert_jobs([_job("job_1", clock())])
    clock.advance(20)
    assert Leadership(new_store, "scheduler@b", ttl_s=15, clock=clock).take()
    with pytest.raises(LeaseLost):  # fenced by its epoch: nothing it writes lands any more
        old_store.insert_jobs([_job("job_2", clock())])
    assert new_store.get_job("job_2") is None and new_store.get_job("job_1") is not None
    # Ray restarted "b" (same actor id, so the same holder): it takes its lease back at once.
    again = Leadership(SQLiteStore(db), "scheduler@b", ttl_s=15, clock=clock)
    assert again.take() and again.lease is not None and again.lease.epoch == 3


def test_a_holder_known_dead_on_this_machine_is_taken_over_at_once(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    from scheduler.leadership import holder_name, known_dead

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = holder_name("scheduler", "a1", pid=gone.pid)
    assert known_dead(dead)
    assert not known_dead(holder_name("scheduler", "a1"))  # this very process: alive
    assert not known_dead(holder_name("scheduler", "a1", host="another-" + socket.gethostname(), pid=gone.pid))

    clock = FakeClock()
    db = str(tmp_path / "r.db")
    old = Leadership(SQLiteStore(db), dead, ttl_s=15, clock=clock)
    assert old.take()
    clock.advance(1)  # its lease is live for 14 s more, but its process is gone (Ray restarted it, say)
    new = Leadership(SQLiteStore(db), holder_name("scheduler", "a1"), ttl_s=15, clock=clock)
    assert new.take() and new.holder == dead and new.lease is not None and new.lease.epoch == 2
    assert new.keep()
    elsewhere = Leadership(SQLiteStore(db), "scheduler@b@other-host:1", ttl_s=15, clock=clock,
                           is_dead=lambda holder: False)
    assert not elsewhere.take()  # a holder it cannot see is alive until its lease expires
