"""``SQLiteStore``: the embedded registry, one file on the head node in WAL mode."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..jobs import Attempt, Job, Report, Transition
from ..states import JobStatus
from .connection import Transaction, bind_none_and_bool_fast
from .lease import SQLiteLeasing
from .migrations import migrate
from .protocol import Request
from .rows import (
    INSERT_JOB,
    attempt_extra,
    job_from,
    job_row_partial,
    job_values,
    request_from,
    status_filter,
    to_json,
)
from .sqlite_history import SQLiteHistory

INSERT_REQUEST = "INSERT INTO requests (key, verb, job_id, fingerprint, at) VALUES (?, ?, ?, ?, ?)"
#: How many decoded jobs the store keeps (a few MB; the oldest kept goes first).
JOB_CACHE_SIZE = 20_000


class SQLiteStore(SQLiteHistory, SQLiteLeasing):
    """SQLite in WAL mode, synchronous=FULL: a state change is on disk before the call returns.

    Reports and request answers commit without their own fsync (see ``Transaction``). Opened with
    an ``epoch`` (or after ``acquire_lease``), every write is fenced by it (lease.py).
    """

    def __init__(self, path: str, epoch: int | None = None) -> None:
        self.path = path
        #: The lease epoch this store writes under (None: unfenced); see ``fence``.
        self.epoch = epoch
        bind_none_and_bool_fast()
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # The actor serialises calls, but a lock keeps a stray thread from interleaving a transaction.
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # 32 MB of page cache, not SQLite's 2 MB: the indexes a submit or a page of a list walks
        # stay in memory as the registry grows (about 5% of a submit's time at 100,000 jobs).
        self._db.execute("PRAGMA cache_size=-32768")
        self._migrate()
        # Decoded jobs by id, dropped on every write to their row (this store is the database's
        # only writer): reads of unchanged jobs, the common case of pages polled by clients,
        # skip the decoding. ``_gen`` counts writes, so a read that raced one is not kept.
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._gen = 0

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            migrate(self._db, self.path)

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def ping(self) -> None:
        """One round trip to the registry (``/health`` asks it; a file on this node always answers)."""
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    # -- jobs ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self, job_id: str, durable: bool = True) -> Iterator[None]:
        """A commit that writes ``job_id``'s row: its decoded copy is dropped once the commit is
        over (a read during it may have kept the row unfinished), whether it went through or not."""
        try:
            with self._lock, self._tx(durable):
                yield
        finally:
            self._gen += 1
            self._jobs.pop(job_id, None)

    def _decoded(self, rows: Iterable[sqlite3.Row], gen: int) -> list[Job]:
        """Jobs from their rows, reusing decoded copies; new ones are kept unless a write raced."""
        out = []
        for row in rows:
            job = self._jobs.get(row["job_id"])
            if job is None:
                job = job_from(row)
                if gen == self._gen:
                    self._keep(job)
            out.append(job)
        return out

    def _keep(self, job: Job) -> None:
        """Keep ``job`` as its row's decoded copy (the oldest kept goes when the cache is full)."""
        if len(self._jobs) >= JOB_CACHE_SIZE:
            # An OrderedDict: a plain dict finds its first key by skipping the slots earlier pops
            # left, a scan that grows with every eviction until the dict is resized.
            self._jobs.popitem(last=False)
        self._jobs[job.job_id] = job

    def insert_job(self, job: Job, transition: Transition, request: Request | None = None) -> Job:
        """Insert a new job and its first transition (and its request key) in one commit; returns
        the job as stored (with its ``seq``)."""
        return self.insert_jobs([(job, transition, request)])[0]

    def insert_jobs(self, new: Sequence[tuple[Job, Transition, Request | None]]) -> list[Job]:
        """Insert new jobs, each with its first transition and request key, in one commit (one
        fsync for all: group commit), numbering their ``seq`` in the given order; returns them as stored
        (with their ``seq``). All or none."""
        if not new:
            return []
        try:
            with self._lock, self._tx():
                seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
                # Rows are immutable: a job given with another number is stored as a numbered copy
                # (the core numbers its batches itself, so its jobs are stored as they are).
                new = [(job if job.seq == number else dataclasses.replace(job, seq=number), t, r)
                       for number, (job, t, r) in enumerate(new, seq + 1)]
                self._db.executemany(INSERT_JOB, [job_values(job) for job, _, _ in new])
                self._insert_transitions([t for _, t, _ in new])
                self._db.executemany(INSERT_REQUEST, [(r.key, r.verb, job.job_id, r.fingerprint, t.at)
                                                       for job, t, r in new if r is not None])
        finally:
            self._gen += 1
        # The jobs as committed are their rows' decoded copies, so the verb's answer right after
        # needs no query (a new id was never read: nothing older is kept for it).
        for job, _, _ in new:
            self._keep(job)
        return [job for job, _, _ in new]

    def get_job(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        gen = self._gen
        row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return self._decoded([row], gen)[0] if row else None

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Many jobs by id in one query (missing ids are left out)."""
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), 500):  # SQLite's limit on bound parameters
            chunk = tuple(job_ids[start:start + 500])
            gen = self._gen
            rows = self._db.execute(f"SELECT * FROM jobs WHERE job_id IN ({', '.join('?' * len(chunk))})", chunk)
            found.update((job.job_id, job) for job in self._decoded(rows, gen))
        return found

    def count_by_status(self) -> dict[JobStatus, int]:
        """How many jobs are in each state (one scan, at start-up; the core counts from there)."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {JobStatus(row[0]): int(row[1]) for row in rows}

    def list_jobs(self, statuses: Iterable[JobStatus] | None = None, limit: int | None = None,
                  offset: int = 0) -> list[Job]:
        """Jobs newest first, optionally only those in ``statuses``."""
        where, args = status_filter(statuses)
        sql = f"SELECT job_id FROM jobs {where} ORDER BY seq DESC LIMIT ? OFFSET ?"
        ids = [r[0] for r in self._db.execute(sql, (*args, -1 if limit is None else limit, offset))]
        jobs = {job_id: job for job_id in ids if (job := self._jobs.get(job_id)) is not None}
        if len(jobs) < len(ids):
            jobs.update(self.get_jobs([job_id for job_id in ids if job_id not in jobs]))
        return [jobs[job_id] for job_id in ids if job_id in jobs]

    def count_jobs(self, statuses: Iterable[JobStatus] | None = None) -> int:
        where, args = status_filter(statuses)
        return int(self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0])

    def transition(self, job_id: str, expected: JobStatus, transition: Transition,
                   changes: dict[str, Any], request: Request | None = None) -> Job | None:
        """Compare-and-set: move the job to ``transition.to_status`` only if it is ``expected``.

        Returns the updated job, or None when the job was not in ``expected`` (nothing written).
        A ``request`` key is recorded in the same commit, so a retried verb can tell it was done.
        """
        row = job_row_partial(changes)
        row["status"] = transition.to_status.value
        row["updated_at"] = transition.at
        sets = ", ".join(f"{k} = ?" for k in row)
        with self._writing(job_id):
            cur = self._db.execute(
                f"UPDATE jobs SET {sets} WHERE job_id = ? AND status = ?",
                (*row.values(), job_id, expected.value),
            )
            if cur.rowcount != 1:
                return None
            self._insert_transitions([transition])
            self._insert_request(request, job_id, transition.at)
        return self.get_job(job_id)

    # -- idempotency keys -------------------------------------------------------------------------
    def find_request(self, key: str) -> dict[str, Any] | None:
        """What a request key did: ``{verb, job_id, fingerprint, response, at}``, or None."""
        return self.find_requests([key]).get(key)

    def find_requests(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``find_request`` for many keys in one query: the ones stored, by key."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = tuple(keys[start:start + 500])
            rows = self._db.execute(f"SELECT * FROM requests WHERE key IN ({', '.join('?' * len(chunk))})", chunk)
            found.update((row["key"], request_from(row)) for row in rows)
        return found

    def set_request_response(self, key: str, response: dict[str, Any]) -> None:
        """Keep the answer a verb gave, to give it again when the same key comes back."""
        with self._lock, self._tx(durable=False):
            self._db.execute("UPDATE requests SET response = ? WHERE key = ?",
                             (to_json(response), key))

    def prune_requests(self, before: float) -> int:
        """Forget the idempotency keys recorded before ``before``; returns how many."""
        with self._lock, self._tx(durable=False):
            return self._db.execute("DELETE FROM requests WHERE at < ?", (before,)).rowcount

    def count_requests(self) -> int:
        """How many idempotency keys are kept."""
        return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def update_job(self, job_id: str, changes: dict[str, Any]) -> None:
        """Change fields other than ``status`` (which only ``transition`` writes)."""
        if "status" in changes:
            raise ValueError("status changes go through transition()")
        row = job_row_partial(changes)
        if not row:
            return
        with self._writing(job_id):
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE job_id = ?",
                             (*row.values(), job_id))

    def jobs_in(self, statuses: Iterable[JobStatus]) -> list[Job]:
        """Every job in one of ``statuses``, in submission order."""
        where, args = status_filter(statuses)
        return [job_from(r) for r in self._db.execute(f"SELECT * FROM jobs {where} ORDER BY seq", args)]

    # -- reports and checkpoints ----------------------------------------------------------------
    def record_report(self, report: Report) -> bool:
        """Record a report (and its checkpoint) and make it the job's latest, in one commit.

        Idempotent: a report already recorded (same job, attempt, seq) changes nothing and
        returns False, so a runner may safely resend after a scheduler restart.
        """
        metrics = to_json(report.metrics)
        # Reports are many and a lost last one is re-sent by its runner (or only a metric is
        # lost), so they skip the fsync: it comes with the next state change's commit.
        with self._writing(report.job_id, durable=False):
            cur = self._db.execute(
                "INSERT OR IGNORE INTO reports (job_id, attempt, seq, at, metrics, checkpoint_path)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (report.job_id, report.attempt, report.seq, report.at, metrics, report.checkpoint_path),
            )
            if cur.rowcount != 1:
                return False
            if report.checkpoint_path:
                self._db.execute(
                    "INSERT OR IGNORE INTO checkpoints (job_id, attempt, path, metrics, at) VALUES (?, ?, ?, ?, ?)",
                    (report.job_id, report.attempt, report.checkpoint_path, metrics, report.at),
                )
                self._db.execute("UPDATE jobs SET metrics = ?, checkpoint_path = ? WHERE job_id = ?",
                                 (metrics, report.checkpoint_path, report.job_id))
            else:
                self._db.execute("UPDATE jobs SET metrics = ? WHERE job_id = ?", (metrics, report.job_id))
        return True

    def update_checkpoint(self, job_id: str, path: str, changes: dict[str, Any]) -> bool:
        """Set a recorded checkpoint's ``pinned``, ``deleted_at`` or ``bytes``; False if unknown."""
        unknown = set(changes) - {"pinned", "deleted_at", "bytes"}
        if unknown:
            raise ValueError(f"unknown checkpoint fields {sorted(unknown)}")
        if not changes:
            return self.find_checkpoint(job_id, path) is not None
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._lock, self._tx():
            cur = self._db.execute(f"UPDATE checkpoints SET {sets} WHERE job_id = ? AND path = ?",
                                   (*changes.values(), job_id, path))
        return cur.rowcount == 1

    # -- attempts -----------------------------------------------------------------------------
    def save_attempt(self, attempt: Attempt) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO attempts (job_id, attempt, started_at, resumed_from, run_name,"
                " ended_at, outcome, lost_work, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (attempt.job_id, attempt.attempt, attempt.started_at, attempt.resumed_from, attempt.run_name,
                 attempt.ended_at, attempt.outcome,
                 None if attempt.lost_work is None else json.dumps(attempt.lost_work), attempt_extra(attempt)),
            )

    def next_seq(self) -> int:
        """A submission number behind every job's: a job requeued behind the others takes it."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])

    # -- small durable values -------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        """A JSON value stored under ``key``, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (without its own fsync: the next state change syncs it)."""
        with self._lock, self._tx(durable=False):
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    # -- helpers ------------------------------------------------------------------------------
    def _insert_transitions(self, transitions: Sequence[Transition]) -> None:
        self._db.executemany(
            "INSERT INTO transitions (job_id, from_status, to_status, at, reason, attempt) VALUES (?, ?, ?, ?, ?, ?)",
            [(t.job_id, t.from_status.value if t.from_status else None, t.to_status.value, t.at, t.reason, t.attempt)
             for t in transitions],
        )

    def _insert_request(self, request: Request | None, job_id: str, at: float) -> None:
        if request is not None:
            self._db.execute(INSERT_REQUEST, (request.key, request.verb, job_id, request.fingerprint, at))

    def _tx(self, durable: bool = True) -> Transaction:
        return Transaction(self._db, durable, self.epoch)
