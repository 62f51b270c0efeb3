"""``trainq db copy --to URL``: an SQLite registry, event log included, into an empty Postgres one."""

from __future__ import annotations

from scheduler.cli import main
from scheduler.events import EventLog
from scheduler.jobs import Attempt, Job, Report, Transition
from scheduler.states import JobStatus
from scheduler.store import Request, SQLiteStore, open_event_store, open_store

SECRET = "copy-pw"


def _fill(path: str) -> None:
    store = SQLiteStore(path)
    for i in range(3):
        job = Job(job_id=f"job_{i}", name=f"n{i}", spec={"entrypoint": "m:f"}, priority=i, seq=0, created_at=1.0,
                  updated_at=1.0, owner="alice", cooperative=bool(i % 2))
        store.insert_job(job, Transition(job.job_id, None, JobStatus.QUEUED, 1.0, "submitted", 0),
                         Request(f"k{i}", "submit", "fp"))
    store.transition("job_0", JobStatus.QUEUED, Transition("job_0", JobStatus.QUEUED, JobStatus.PENDING, 2.0, "go", 1),
                     {"attempt": 1})
    store.save_attempt(Attempt("job_0", 1, 2.0, run_name="a-1"))
    for seq in (1, 2):
        store.record_report(Report("job_0", 1, seq, 2.0 + seq, {"step": seq}, f"/ck/{seq}"))
    store.update_checkpoint("job_0", "/ck/1", {"pinned": True, "bytes": 10})
    store.set_meta("fairshare", {"alice": 1.0})
    store.close()
    log = EventLog(path=f"{path}.events")
    for i in range(4):
        log.append({"type": "status", "job_id": "job_0", "n": i})


def test_copy_moves_every_table_and_says_what_it_copied(tmp_path, fresh_pg_url, capsys) -> None:
    source = str(tmp_path / "trainq.db")
    _fill(source)
    target = fresh_pg_url.replace("postgres@", f"postgres:{SECRET}@")
    assert main(["db", "copy", "--to", target, "--db", source]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "***" in out
    counts = dict(line.split() for line in out.splitlines()[1:])
    assert counts == {"jobs": "3", "transitions": "4", "reports": "2", "checkpoints": "2", "attempts": "1",
                      "requests": "3", "meta": "1", "events": "4"}

    before, after = SQLiteStore(source), open_store(target)
    for job_id in ("job_0", "job_1", "job_2"):
        assert after.get_job(job_id) == before.get_job(job_id)
        assert after.transitions(job_id) == before.transitions(job_id)
    assert after.checkpoints("job_0") == before.checkpoints("job_0")
    assert after.reports("job_0") == before.reports("job_0")
    assert after.attempts("job_0") == before.attempts("job_0") and after.find_request("k2") == before.find_request("k2")
    assert after.get_meta("fairshare") == {"alice": 1.0} and after.current_lease() is None
    # Numbering goes on after the copied rows (ids and seq), and the copy's first leader takes epoch 1.
    assert after.record_report(Report("job_0", 1, 3, 9.0, {"step": 3}))
    assert [r.seq for r in after.reports("job_0", after_id=2)] == [3]
    assert after.next_seq() == 4 and after.acquire_lease("new", ttl_s=5, now=1.0).epoch == 1
    events = open_event_store(target)
    assert events.last_seq() == 4 and events.epoch == EventLog(path=f"{source}.events").epoch
    for store in (before, after, events):
        store.close()


def test_a_target_that_holds_anything_is_refused_and_left_as_it_was(tmp_path, fresh_pg_url, capsys) -> None:
    source = str(tmp_path / "trainq.db")
    _fill(source)
    assert main(["db", "copy", "--to", fresh_pg_url, "--db", source]) == 0
    capsys.readouterr()
    assert main(["db", "copy", "--to", fresh_pg_url, "--db", source]) == 4  # conflict
    err = capsys.readouterr().err
    assert "not empty (3 jobs" in err and "new database" in err
    assert open_store(fresh_pg_url).count_jobs() == 3


def test_copy_refuses_what_it_cannot_copy(tmp_path, capsys) -> None:
    assert main(["db", "copy", "--to", f"mysql://u:{SECRET}@h/db", "--db", str(tmp_path / "x.db")]) == 5
    assert main(["db", "copy", "--to", "postgresql://u@127.0.0.1:1/db", "--db", str(tmp_path / "none.db")]) == 5
    err = capsys.readouterr().err
    assert "scheme 'mysql'" in err and SECRET not in err and "no SQLite registry at" in err
    assert not (tmp_path / "none.db").exists()  # a missing source is not created empty
