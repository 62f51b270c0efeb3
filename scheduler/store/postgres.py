"""``PostgresStore``: the registry on a Postgres server (SQLAlchemy Core over psycopg 3).

The same ``Store`` as ``SQLiteStore``, row for row (``rows.py`` decodes both), for a registry
that must outlive the head node. Differences that matter:

- every call is a round trip, so each write is one transaction of as few statements as it can
  be (a compare-and-set returns its row with RETURNING; a batch of submits is one multi-row
  INSERT per table);
- no decoded-jobs cache: the server may have other readers and, across a takeover, other writers;
- a lost server is a typed ``RegistryUnavailable`` naming ``host:port`` (never the password),
  and the next call after the server returns reconnects by itself (``pg_connection.py``);
- fenced writes (lease.py) check the lease row under ``FOR SHARE`` in the same transaction, so a
  takeover (``FOR UPDATE`` on that row) waits for a write in flight and fences every later one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..jobs import Attempt, Job, Report, Transition
from ..states import JobStatus
from . import pg_migrate
from .lease import Lease, take
from .pg_connection import PgConnection
from .pg_schema import attempts, checkpoints, jobs, lease, meta, reports, requests, transitions
from .protocol import Request
from .rows import (
    BOOL_FIELDS,
    JOB_COLUMNS,
    attempt_extra,
    attempt_from,
    checkpoint_from,
    job_from,
    job_row_partial,
    job_values,
    request_from,
    to_json,
)

#: Ids per IN (...) list: Postgres takes 65,535 bound parameters a statement.
CHUNK = 10_000
_LEADER = lease.c.name == "leader"


def _bools(row: dict[str, Any]) -> dict[str, Any]:
    for key in BOOL_FIELDS:
        if row.get(key) is not None:
            row[key] = bool(row[key])
    return row


def _job_row(job: Job) -> dict[str, Any]:
    return _bools(dict(zip(JOB_COLUMNS, job_values(job))))


def _report(r: Any) -> Report:
    return Report(r.job_id, r.attempt, r.seq, r.at, json.loads(r.metrics), r.checkpoint_path)


def _status_in(statuses: Iterable[JobStatus] | None) -> sa.ColumnElement[bool]:
    if statuses is None:
        return sa.true()
    return jobs.c.status.in_([JobStatus(s).value for s in statuses])


class PostgresStore(PgConnection):
    """The registry in Postgres. ``url``: ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE``."""

    def __init__(self, url: str, epoch: int | None = None) -> None:
        super().__init__(url, epoch)
        self._guarded(lambda: pg_migrate.upgrade(self._engine))

    @property
    def epoch(self) -> int | None:
        """The lease epoch this store writes under (None: unfenced)."""
        return self._fence

    @epoch.setter
    def epoch(self, epoch: int | None) -> None:
        self._fence = epoch

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.shown!r}, epoch={self.epoch})"

    @property
    def schema_revision(self) -> str | None:
        """The Alembic revision the server's schema is at."""
        return self._guarded(lambda: pg_migrate.current(self._engine))

    # -- jobs -----------------------------------------------------------------------------------
    def insert_job(self, job: Job, transition: Transition, request: Request | None = None) -> Job:
        """Insert one job with its first transition (and request key); returns it as stored."""
        return self.insert_jobs([(job, transition, request)])[0]

    def insert_jobs(self, new: Sequence[tuple[Job, Transition, Request | None]]) -> list[Job]:
        """Insert new jobs, each with its first transition and request key, in one commit, numbering
        their ``seq`` in the given order; returns them as stored. All or none."""
        if not new:
            return []

        def work(conn: sa.Connection) -> list[Job]:
            seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(jobs.c.seq), 0))).scalar_one()
            numbered = [job if job.seq == n else dataclasses.replace(job, seq=n)
                        for n, (job, _, _) in enumerate(new, seq + 1)]
            conn.execute(jobs.insert(), [_job_row(job) for job in numbered])
            self._insert_transitions(conn, [t for _, t, _ in new])
            keyed = [{"key": r.key, "verb": r.verb, "job_id": job.job_id, "fingerprint": r.fingerprint, "at": t.at}
                     for job, (_, t, r) in zip(numbered, new) if r is not None]
            if keyed:
                conn.execute(requests.insert(), keyed)
            return numbered
        return self._write(work)

    def get_job(self, job_id: str) -> Job | None:
        row = self._first(sa.select(jobs).where(jobs.c.job_id == job_id))
        return job_from(row._mapping) if row else None

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Many jobs by id (missing ids are left out)."""
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), CHUNK):
            chunk = list(job_ids[start:start + CHUNK])
            rows = self._all(sa.select(jobs).where(jobs.c.job_id.in_(chunk)))
            found.update((row.job_id, job_from(row._mapping)) for row in rows)
        return found

    def count_by_status(self) -> dict[JobStatus, int]:
        """How many jobs are in each state."""
        rows = self._all(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))
        return {JobStatus(row[0]): int(row[1]) for row in rows}

    def list_jobs(self, statuses: Iterable[JobStatus] | None = None, limit: int | None = None,
                  offset: int = 0) -> list[Job]:
        """Jobs newest first, optionally only those in ``statuses``."""
        query = sa.select(jobs).where(_status_in(statuses)).order_by(jobs.c.seq.desc()).limit(limit).offset(offset)
        return [job_from(row._mapping) for row in self._all(query)]

    def count_jobs(self, statuses: Iterable[JobStatus] | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(jobs).where(_status_in(statuses))
        return int(self._read(lambda c: c.execute(query).scalar_one()))

    def transition(self, job_id: str, expected: JobStatus, transition: Transition,
                   changes: dict[str, Any], request: Request | None = None) -> Job | None:
        """Compare-and-set: move the job to ``transition.to_status`` only if it is ``expected``;
        returns the updated job, or None (nothing written). ``request`` commits with it."""
        values = _bools(job_row_partial(changes))
        values.update(status=transition.to_status.value, updated_at=transition.at)

        def work(conn: sa.Connection) -> Job | None:
            row = conn.execute(jobs.update().where(jobs.c.job_id == job_id, jobs.c.status == expected.value)
                               .values(values).returning(jobs)).first()
            if row is None:
                return None
            self._insert_transitions(conn, [transition])
            if request is not None:
                conn.execute(requests.insert().values(key=request.key, verb=request.verb, job_id=job_id,
                                                      fingerprint=request.fingerprint, at=transition.at))
            return job_from(row._mapping)
        return self._write(work)

    def update_job(self, job_id: str, changes: dict[str, Any]) -> None:
        """Change fields other than ``status`` (which only ``transition`` writes)."""
        if "status" in changes:
            raise ValueError("status changes go through transition()")
        values = _bools(job_row_partial(changes))
        if values:
            self._write(lambda c: c.execute(jobs.update().where(jobs.c.job_id == job_id).values(values)))

    def jobs_in(self, statuses: Iterable[JobStatus]) -> list[Job]:
        """Every job in one of ``statuses``, in submission order."""
        query = sa.select(jobs).where(_status_in(statuses)).order_by(jobs.c.seq)
        return [job_from(row._mapping) for row in self._all(query)]

    def next_seq(self) -> int:
        """A submission number behind every job's."""
        return int(self._read(lambda c: c.execute(sa.select(sa.func.coalesce(sa.func.max(jobs.c.seq), 0) + 1))
                              .scalar_one()))

    # -- idempotency keys -----------------------------------------------------------------------
    def find_request(self, key: str) -> dict[str, Any] | None:
        """What a request key did: ``{verb, job_id, fingerprint, response, at}``, or None."""
        return self.find_requests([key]).get(key)

    def find_requests(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``find_request`` for many keys: the ones stored, by key."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = list(keys[start:start + CHUNK])
            rows = self._all(sa.select(requests).where(requests.c.key.in_(chunk)))
            found.update((row.key, request_from(row._mapping)) for row in rows)
        return found

    def set_request_response(self, key: str, response: dict[str, Any]) -> None:
        """Keep the answer a verb gave, to give it again when the same key comes back."""
        self._write(lambda c: c.execute(requests.update().where(requests.c.key == key)
                                        .values(response=to_json(response))), durable=False)

    def prune_requests(self, before: float) -> int:
        """Forget the idempotency keys recorded before ``before``; returns how many."""
        return self._write(lambda c: c.execute(requests.delete().where(requests.c.at < before)).rowcount,
                           durable=False)

    def count_requests(self) -> int:
        """How many idempotency keys are kept."""
        return int(self._read(lambda c: c.execute(sa.select(sa.func.count()).select_from(requests)).scalar_one()))

    # -- reports and checkpoints ----------------------------------------------------------------
    def record_report(self, report: Report) -> bool:
        """Record a report (and its checkpoint) and make it the job's latest, in one commit;
        a report already recorded (same job, attempt, seq) changes nothing and returns False."""
        metrics = to_json(report.metrics)

        def work(conn: sa.Connection) -> bool:
            # RETURNING tells whether the row went in (a conflict returns nothing); the driver's
            # rowcount of an INSERT is not reliable through SQLAlchemy's insert handling.
            added = conn.execute(pg_insert(reports).values(
                job_id=report.job_id, attempt=report.attempt, seq=report.seq, at=report.at, metrics=metrics,
                checkpoint_path=report.checkpoint_path).on_conflict_do_nothing().returning(reports.c.id)).first()
            if added is None:
                return False
            latest: dict[str, Any] = {"metrics": metrics}
            if report.checkpoint_path:
                conn.execute(pg_insert(checkpoints).values(
                    job_id=report.job_id, attempt=report.attempt, path=report.checkpoint_path, metrics=metrics,
                    at=report.at).on_conflict_do_nothing())
                latest["checkpoint_path"] = report.checkpoint_path
            conn.execute(jobs.update().where(jobs.c.job_id == report.job_id).values(latest))
            return True
        # Reports are many and a lost last one is re-sent by its runner: no wait for the WAL flush.
        return self._write(work, durable=False)

    def reports(self, job_id: str, attempt: int | None = None, after_id: int = 0,
                limit: int | None = None) -> list[Report]:
        """Reports in the order they were recorded."""
        query = sa.select(reports).where(reports.c.job_id == job_id, reports.c.id > after_id)
        if attempt is not None:
            query = query.where(reports.c.attempt == attempt)
        query = query.order_by(reports.c.id).limit(limit)
        return [_report(r) for r in self._all(query)]

    def last_reports(self, job_id: str, attempt: int, n: int) -> list[Report]:
        """The newest ``n`` reports of one attempt, oldest first."""
        query = (sa.select(reports).where(reports.c.job_id == job_id, reports.c.attempt == attempt)
                 .order_by(reports.c.id.desc()).limit(n))
        return [_report(r) for r in reversed(self._all(query))]

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the job recorded, newest first."""
        query = sa.select(checkpoints).where(checkpoints.c.job_id == job_id).order_by(checkpoints.c.id.desc())
        return [checkpoint_from(r._mapping) for r in self._all(query)]

    def find_checkpoint(self, job_id: str, path: str) -> dict[str, Any] | None:
        query = sa.select(checkpoints).where(checkpoints.c.job_id == job_id, checkpoints.c.path == path)
        row = self._first(query)
        return checkpoint_from(row._mapping) if row else None

    def update_checkpoint(self, job_id: str, path: str, changes: dict[str, Any]) -> bool:
        """Set a recorded checkpoint's ``pinned``, ``deleted_at`` or ``bytes``; False if unknown."""
        unknown = set(changes) - {"pinned", "deleted_at", "bytes"}
        if unknown:
            raise ValueError(f"unknown checkpoint fields {sorted(unknown)}")
        if not changes:
            return self.find_checkpoint(job_id, path) is not None
        values = {k: (bool(v) if k == "pinned" else v) for k, v in changes.items()}
        where = (checkpoints.c.job_id == job_id) & (checkpoints.c.path == path)
        return bool(self._write(lambda c: c.execute(checkpoints.update().where(where).values(values)).rowcount == 1))

    def checkpoint_bytes(self, job_id: str) -> int:
        """Bytes the job's checkpoints that are not deleted use on storage (as last measured)."""
        return self.checkpoint_bytes_of([job_id]).get(job_id, 0)

    def checkpoint_bytes_of(self, job_ids: Sequence[str]) -> dict[str, int]:
        """``checkpoint_bytes`` of many jobs in one query."""
        if not job_ids:
            return {}
        query = (sa.select(checkpoints.c.job_id, sa.func.coalesce(sa.func.sum(checkpoints.c.bytes), 0))
                 .where(checkpoints.c.job_id.in_(list(job_ids)), checkpoints.c.deleted_at.is_(None))
                 .group_by(checkpoints.c.job_id))
        return {row[0]: int(row[1]) for row in self._all(query)}

    def transitions(self, job_id: str) -> list[Transition]:
        query = sa.select(transitions).where(transitions.c.job_id == job_id).order_by(transitions.c.id)
        return [Transition(r.job_id, JobStatus(r.from_status) if r.from_status else None, JobStatus(r.to_status),
                           r.at, r.reason, r.attempt) for r in self._all(query)]

    # -- attempts -------------------------------------------------------------------------------
    def save_attempt(self, attempt: Attempt) -> None:
        """Insert or replace an attempt's row."""
        values = {"started_at": attempt.started_at, "resumed_from": attempt.resumed_from,
                  "run_name": attempt.run_name, "ended_at": attempt.ended_at, "outcome": attempt.outcome,
                  "lost_work": None if attempt.lost_work is None else json.dumps(attempt.lost_work),
                  "extra": attempt_extra(attempt)}
        statement = pg_insert(attempts).values(job_id=attempt.job_id, attempt=attempt.attempt, **values)
        self._write(lambda c: c.execute(statement.on_conflict_do_update(index_elements=["job_id", "attempt"],
                                                                        set_=values)))

    def get_attempt(self, job_id: str, attempt: int) -> Attempt | None:
        query = sa.select(attempts).where(attempts.c.job_id == job_id, attempts.c.attempt == attempt)
        row = self._first(query)
        return attempt_from(row._mapping) if row else None

    def attempts(self, job_id: str) -> list[Attempt]:
        query = sa.select(attempts).where(attempts.c.job_id == job_id).order_by(attempts.c.attempt)
        return [attempt_from(r._mapping) for r in self._all(query)]

    def attempts_since(self, since: float | None) -> list[Attempt]:
        """Every attempt still running or ended at or after ``since`` (all of them when None)."""
        query = sa.select(attempts).order_by(attempts.c.started_at)
        if since is not None:
            query = query.where(attempts.c.ended_at.is_(None) | (attempts.c.ended_at >= since))
        return [attempt_from(r._mapping) for r in self._all(query)]

    # -- small durable values -------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        """A JSON value stored under ``key``, or None."""
        value = self._read(lambda c: c.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar())
        return None if value is None else json.loads(value)

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        statement = pg_insert(meta).values(key=key, value=json.dumps(value))
        self._write(lambda c: c.execute(statement.on_conflict_do_update(index_elements=["key"],
                                                                        set_={"value": statement.excluded.value})),
                    durable=False)

    # -- the leader lease (lease.py) ------------------------------------------------------------
    def acquire_lease(self, holder: str, ttl_s: float, now: float) -> Lease | None:
        """Take the lease for ``holder`` when it is free or expired: returns it with a new, higher
        epoch, and fences this store at that epoch; None while another holder's lease is live."""
        def work(conn: sa.Connection) -> Lease | None:
            # FOR UPDATE: competing takers queue on the row, and wait for fenced writes in flight.
            row = conn.execute(sa.select(lease).where(_LEADER).with_for_update()).one()
            taken = take(row.holder, row.epoch, row.expires_at, holder, ttl_s, now)
            if taken is not None:
                conn.execute(lease.update().where(_LEADER).values(holder=taken.holder, epoch=taken.epoch,
                                                                  expires_at=taken.expires_at))
            return taken
        taken = self._unfenced(work)
        if taken is not None:
            self.epoch = taken.epoch
        return taken

    def renew_lease(self, holder: str, epoch: int, ttl_s: float, now: float) -> bool:
        """Extend ``holder``'s lease at ``epoch`` to ``now + ttl_s``; False once another took it."""
        update = lease.update().where(_LEADER, lease.c.holder == holder, lease.c.epoch == epoch)
        return self._unfenced(lambda c: c.execute(update.values(expires_at=now + ttl_s)).rowcount == 1)

    def current_lease(self) -> Lease | None:
        """The lease as the registry holds it now (expired or not), or None if never taken."""
        row = self._read(lambda c: c.execute(sa.select(lease).where(_LEADER)).one())
        return None if row.holder is None else Lease(row.holder, row.epoch, row.expires_at)

    def fence(self, epoch: int | None) -> None:
        """Write only under ``epoch`` from now on (``LeaseLost`` once a higher one exists); None: unfenced."""
        self.epoch = epoch

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _insert_transitions(conn: sa.Connection, items: Sequence[Transition]) -> None:
        conn.execute(transitions.insert(), [
            {"job_id": t.job_id, "from_status": t.from_status.value if t.from_status else None,
             "to_status": t.to_status.value, "at": t.at, "reason": t.reason, "attempt": t.attempt} for t in items])
