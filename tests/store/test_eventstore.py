"""The persisted event log: numbering continues across a restart, and it stays bounded."""

from __future__ import annotations

from scheduler.events import EventLog
from scheduler.eventstore import EventStore, events_path


def test_numbering_and_events_survive_a_restart(tmp_path) -> None:
    path = str(tmp_path / "trainq.db.events")
    log = EventLog(path=path)
    for i in range(5):
        log.append({"type": "status", "job_id": "a" if i % 2 else "b", "n": i})
    again = EventLog(path=path)
    assert again.epoch == log.epoch and again.last_seq == 5
    assert [e["n"] for e in again.since(2)] == [2, 3, 4]
    assert [e["seq"] for e in again.since(0, job_id="a")] == [2, 4]
    again.append({"type": "report", "job_id": "a"})
    assert again.last_seq == 6 and again.since(5)[0]["seq"] == 6


def test_an_in_memory_log_gets_a_new_epoch_each_start() -> None:
    assert EventLog().epoch != EventLog().epoch
    assert events_path(":memory:") is None and events_path("/x/trainq.db") == "/x/trainq.db.events"


def test_the_file_keeps_only_the_newest_events(tmp_path) -> None:
    path = str(tmp_path / "e.events")
    log = EventLog(capacity=20, path=path)
    for i in range(100):
        log.append({"type": "report", "job_id": "a", "n": i})
    store = EventStore(path, capacity=20)
    kept = store.load(1000)
    assert len(kept) <= 20 + 2 and kept[-1]["n"] == 99  # trimmed every capacity/10 appends
    reloaded = EventLog(capacity=20, path=path)
    assert reloaded.last_seq == 100 and [e["n"] for e in reloaded.since(95)] == [95, 96, 97, 98, 99]
    assert reloaded.since(10) and reloaded.since(10)[0]["seq"] == 81  # older ones are gone


def test_a_gap_in_the_log_is_scanned_not_skipped(tmp_path) -> None:
    log = EventLog()
    for i in range(5):
        log.append({"type": "x", "n": i})
    log._events.remove(log._events[2])  # as if seq 3 could not be persisted before a restart
    assert [e["seq"] for e in log.since(1)] == [2, 4, 5]
    assert [e["seq"] for e in log.since(3)] == [4, 5]
