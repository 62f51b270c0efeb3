"""The Postgres registry's tables as SQLAlchemy Core metadata: what the queries of ``PostgresStore``
and ``trainq db copy`` are built from.

The same tables and columns as the SQLite schema (``migrations.py``), so one set of row decoders
(``rows.py``) reads both; JSON stays text. Types differ where Postgres is stricter: times are
double precision (SQLite's REAL), flags are boolean (SQLite's 0/1), ids and sizes 64-bit.
The schema on a server is made by Alembic (``pg_migrations/``); a test checks that the migrated
database and this metadata agree, so the two cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _id() -> sa.Column[int]:
    # BY DEFAULT, not ALWAYS: ``db copy`` keeps SQLite's ids (reports are read back in id order).
    return sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True)


def _job_ref() -> sa.Column[str]:
    return sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.job_id"), nullable=False)


jobs = sa.Table(
    "jobs", metadata,
    sa.Column("job_id", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    *(sa.Column(name, sa.Double) for name in ("started_at", "finished_at", "paused_at")),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    *(sa.Column(name, sa.Text) for name in ("checkpoint_path", "resume_from", "metrics", "error", "warning",
                                            "lost_work")),
    *(sa.Column(name, sa.Double) for name in ("pause_requested_at", "pause_deadline_at", "expected_paused_by")),
    sa.Column("pause_reason", sa.Text),
    sa.Column("preempted_by", sa.Text),
    sa.Column("preemptions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.Double),
    sa.Column("resumable", sa.Boolean),
    sa.Column("cooperative", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("checkpoint_requested_at", sa.Double),
    sa.Column("owner", sa.Text),
    sa.Column("borrowing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("backfill", sa.Text),
    sa.Column("workers", sa.Integer),
    sa.Index("jobs_by_status", "status", "seq"),
)

transitions = sa.Table(
    "transitions", metadata, _id(), _job_ref(),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Index("transitions_by_job", "job_id", "id"),
)

reports = sa.Table(
    "reports", metadata, _id(), _job_ref(),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("checkpoint_path", sa.Text),
    sa.UniqueConstraint("job_id", "attempt", "seq", name="reports_job_attempt_seq"),
)

checkpoints = sa.Table(
    "checkpoints", metadata, _id(), _job_ref(),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deleted_at", sa.Double),
    sa.Column("bytes", sa.BigInteger),
    sa.UniqueConstraint("job_id", "path", name="checkpoints_job_path"),
)

attempts = sa.Table(
    "attempts", metadata, _job_ref(),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("resumed_from", sa.Text),
    sa.Column("run_name", sa.Text, nullable=False),
    sa.Column("ended_at", sa.Double),
    sa.Column("outcome", sa.Text),
    sa.Column("lost_work", sa.Text),
    sa.Column("extra", sa.Text, nullable=False, server_default="{}"),
    sa.PrimaryKeyConstraint("job_id", "attempt"),
    sa.Index("attempts_by_end", "ended_at"),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("verb", sa.Text, nullable=False),
    _job_ref(),
    sa.Column("fingerprint", sa.Text),
    sa.Column("response", sa.Text),
    sa.Column("at", sa.Double, nullable=False),
)

meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: One row, ``name = 'leader'``, made by the migration: the leader lease and its epoch.
lease = sa.Table(
    "lease", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

#: The event log (on SQLite a file of its own beside the registry; here a table in the one database).
events = sa.Table(
    "events", metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("body", sa.Text, nullable=False),
)

#: The registry's tables in an order that satisfies the foreign keys (``db copy`` fills them so).
COPIED = (jobs, transitions, reports, checkpoints, attempts, requests, meta)
