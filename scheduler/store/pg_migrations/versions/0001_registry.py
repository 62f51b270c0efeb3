"""The registry as of SQLite schema 7: jobs, transitions, reports, checkpoints, attempts,
requests, meta, the leader lease and the event log.

A frozen copy (migrations never import the current ``pg_schema``, which moves on).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True)


def _job_ref() -> sa.Column:
    return sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.job_id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "jobs",
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
    )
    op.create_index("jobs_by_status", "jobs", ["status", "seq"])
    op.create_table(
        "transitions", _id(), _job_ref(),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
    )
    op.create_index("transitions_by_job", "transitions", ["job_id", "id"])
    op.create_table(
        "reports", _id(), _job_ref(),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("checkpoint_path", sa.Text),
        sa.UniqueConstraint("job_id", "attempt", "seq", name="reports_job_attempt_seq"),
    )
    op.create_table(
        "checkpoints", _id(), _job_ref(),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", sa.Double),
        sa.Column("bytes", sa.BigInteger),
        sa.UniqueConstraint("job_id", "path", name="checkpoints_job_path"),
    )
    op.create_table(
        "attempts", _job_ref(),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("resumed_from", sa.Text),
        sa.Column("run_name", sa.Text, nullable=False),
        sa.Column("ended_at", sa.Double),
        sa.Column("outcome", sa.Text),
        sa.Column("lost_work", sa.Text),
        sa.Column("extra", sa.Text, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("job_id", "attempt"),
    )
    op.create_index("attempts_by_end", "attempts", ["ended_at"])
    op.create_table(
        "requests",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("verb", sa.Text, nullable=False),
        _job_ref(),
        sa.Column("fingerprint", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_table("meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False))
    lease = op.create_table(
        "lease",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    # The one row exists from the start, so taking the lease is always an UPDATE of a locked row.
    op.bulk_insert(lease, [{"name": "leader", "holder": None, "epoch": 0, "expires_at": 0.0}])
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("body", sa.Text, nullable=False),
    )
