"""The leader lease and its epoch, on both backends: two store objects on one registry compete
as two schedulers would, and the deposed one's writes are refused (fencing)."""

from __future__ import annotations

import threading

import pytest

from scheduler.errors import LeaseLost
from scheduler.jobs import Job, Report, Transition
from scheduler.states import JobStatus
from scheduler.store import Lease
from scheduler.store.lease import take


def _submit(store, job_id: str) -> None:
    job = Job(job_id=job_id, name="n", spec={}, priority=0, seq=0, created_at=1.0, updated_at=1.0)
    store.insert_jobs([(job, Transition(job_id, None, JobStatus.QUEUED, 1.0, "submitted", 0), None)])


def test_the_rule() -> None:
    assert take(None, 0, 0.0, "a", 10, now=5) == Lease("a", 1, 15)
    assert take("b", 4, 20.0, "a", 10, now=5) is None  # b's lease is live
    assert take("b", 4, 20.0, "a", 10, now=20) == Lease("a", 5, 30)  # expired at 20
    assert take("a", 4, 20.0, "a", 10, now=5) == Lease("a", 5, 15)  # its own: a new epoch
    with pytest.raises(ValueError):
        take(None, 0, 0.0, "a", 0, now=5)


def test_a_live_lease_keeps_the_other_out_until_it_expires(make_store) -> None:
    a, b = make_store(), make_store()
    assert a.current_lease() is None
    assert a.acquire_lease("a", ttl_s=10, now=100) == Lease("a", 1, 110)
    assert b.acquire_lease("b", ttl_s=10, now=105) is None
    assert a.renew_lease("a", 1, ttl_s=10, now=108)
    assert b.acquire_lease("b", ttl_s=10, now=115) is None  # renewed to 118
    assert b.current_lease() == Lease("a", 1, 118)
    assert b.acquire_lease("b", ttl_s=10, now=118) == Lease("b", 2, 128)
    assert not a.renew_lease("a", 1, ttl_s=10, now=119)  # taken over: a may not extend it
    assert a.current_lease() == Lease("b", 2, 128)


def test_the_deposed_stores_writes_are_refused_and_write_nothing(make_store) -> None:
    a, b = make_store(), make_store()
    a.acquire_lease("a", ttl_s=10, now=100)
    _submit(a, "job_1")
    assert a.epoch == 1
    b.acquire_lease("b", ttl_s=10, now=200)
    writes = {
        "insert": lambda: _submit(a, "job_2"),
        "transition": lambda: a.transition("job_1", JobStatus.QUEUED, Transition(
            "job_1", JobStatus.QUEUED, JobStatus.PAUSED, 2.0, "pause", 0), {"paused_at": 2.0}),
        "update": lambda: a.update_job("job_1", {"priority": 9}),
        "report": lambda: a.record_report(Report("job_1", 1, 1, 2.0, {"step": 1}, "/ck")),
        "meta": lambda: a.set_meta("ledger", {"x": 1}),
    }
    for name, write in writes.items():
        with pytest.raises(LeaseLost) as caught:
            write()
        assert caught.value.fields == {"epoch": 1, "current_epoch": 2, "holder": "b"}, name
    job = b.get_job("job_1")
    assert (job.status, job.priority, job.metrics) == (JobStatus.QUEUED, 0, None)
    assert b.count_jobs() == 1 and b.get_meta("ledger") is None and a.reports("job_1") == []
    _submit(b, "job_2")  # the leader writes
    assert a.get_job("job_2") is not None  # and the deposed one still reads


def test_a_store_opened_at_an_old_epoch_is_fenced_and_an_unfenced_one_is_not(make_store) -> None:
    make_store().acquire_lease("a", ttl_s=10, now=100)
    make_store().acquire_lease("b", ttl_s=10, now=200)  # epoch 2
    with pytest.raises(LeaseLost):
        _submit(make_store(epoch=1), "job_1")
    _submit(make_store(epoch=2), "job_1")
    _submit(make_store(), "job_2")  # unfenced (no lease in use): writes as before
    store = make_store(epoch=1)
    store.fence(None)
    _submit(store, "job_3")
    assert make_store().count_jobs() == 3


def test_two_stores_taking_the_lease_at_once_never_both_win(make_store) -> None:
    a, b = make_store(), make_store()
    epochs = []
    for round_ in range(8):
        now = 1000.0 * (round_ + 1)  # the previous round's lease has expired
        won: dict[str, Lease | None] = {}
        start = threading.Barrier(2)

        def contend(store, name: str, now: float = now, won: dict = won, start=start) -> None:
            start.wait()
            won[name] = store.acquire_lease(name, ttl_s=10, now=now)

        threads = [threading.Thread(target=contend, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [lease for lease in won.values() if lease is not None]
        assert len(winners) == 1, won
        epochs.append(winners[0].epoch)
        assert a.current_lease() == winners[0]
    assert epochs == list(range(1, 9))  # one new epoch per take, never reused
