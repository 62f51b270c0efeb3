"""The registry's schema as numbered migrations (append only; a file at version i upgrades in place)."""

from __future__ import annotations

import sqlite3

# Numbered migrations: index i brings the schema from version i to i + 1. Append only.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL,
        spec TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL, finished_at REAL, paused_at REAL,
        attempt INTEGER NOT NULL DEFAULT 0,
        checkpoint_path TEXT, resume_from TEXT,
        metrics TEXT, error TEXT, warning TEXT, lost_work TEXT,
        pause_requested_at REAL, pause_deadline_at REAL
    );
    CREATE INDEX jobs_by_status ON jobs (status, seq);
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        from_status TEXT, to_status TEXT NOT NULL,
        at REAL NOT NULL, reason TEXT NOT NULL, attempt INTEGER NOT NULL
    );
    CREATE INDEX transitions_by_job ON transitions (job_id, id);
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        attempt INTEGER NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL,
        metrics TEXT NOT NULL, checkpoint_path TEXT,
        UNIQUE (job_id, attempt, seq)
    );
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        attempt INTEGER NOT NULL, path TEXT NOT NULL, metrics TEXT NOT NULL, at REAL NOT NULL,
        UNIQUE (job_id, path)
    );
    CREATE TABLE attempts (
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        attempt INTEGER NOT NULL, started_at REAL NOT NULL, resumed_from TEXT, run_name TEXT NOT NULL,
        ended_at REAL, outcome TEXT, lost_work TEXT, extra TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (job_id, attempt)
    );
    """,
    # 2: preemption, automatic requeue, checkpoint-now, resumability, pause estimates.
    """
    ALTER TABLE jobs ADD COLUMN expected_paused_by REAL;
    ALTER TABLE jobs ADD COLUMN pause_reason TEXT;
    ALTER TABLE jobs ADD COLUMN preempted_by TEXT;
    ALTER TABLE jobs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN not_before REAL;
    ALTER TABLE jobs ADD COLUMN resumable INTEGER;
    ALTER TABLE jobs ADD COLUMN cooperative INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN checkpoint_requested_at REAL;
    """,
    # 3: checkpoint retention: pinned by a user, deleted by the rule, size on storage.
    """
    ALTER TABLE checkpoints ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checkpoints ADD COLUMN deleted_at REAL;
    ALTER TABLE checkpoints ADD COLUMN bytes INTEGER;
    """,
    # 4: idempotent verbs: a request key seen once is answered the same way when it comes again.
    """
    CREATE TABLE requests (
        key TEXT PRIMARY KEY,
        verb TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        fingerprint TEXT,
        response TEXT,
        at REAL NOT NULL
    );
    """,
    # 5: users and quotas (owner, borrowing), backfill, and small durable values (the fair-share ledger).
    """
    ALTER TABLE jobs ADD COLUMN owner TEXT;
    ALTER TABLE jobs ADD COLUMN borrowing INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN backfill TEXT;
    CREATE INDEX jobs_by_owner ON jobs (owner);
    CREATE INDEX attempts_by_end ON attempts (ended_at);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 6: fewer pages written per submit. Request keys in one B-tree keyed by the key (WITHOUT
    # ROWID: the table and its key index were two); no index on owner (no query reads by it).
    """
    DROP INDEX jobs_by_owner;
    CREATE TABLE requests_by_key (
        key TEXT PRIMARY KEY,
        verb TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        fingerprint TEXT,
        response TEXT,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO requests_by_key (key, verb, job_id, fingerprint, response, at)
        SELECT key, verb, job_id, fingerprint, response, at FROM requests;
    DROP TABLE requests;
    ALTER TABLE requests_by_key RENAME TO requests;
    """,
    # 7: the leader lease and its epoch (a fencing token; see lease.py). The one row exists from
    # the start, so taking the lease is always an UPDATE under the write lock.
    """
    CREATE TABLE lease (
        name TEXT PRIMARY KEY,
        holder TEXT,
        epoch INTEGER NOT NULL,
        expires_at REAL NOT NULL
    );
    INSERT INTO lease (name, holder, epoch, expires_at) VALUES ('leader', NULL, 0, 0);
    """,
    # 8: how many workers the job's current attempt runs with (an elastic job's size changes)
    """
    ALTER TABLE jobs ADD COLUMN workers INTEGER;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the SQLite registry on ``db`` to ``SCHEMA_VERSION``, one migration per transaction;
    refuses a file a newer trainq made (its ``user_version`` is past ours)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}, newer than this trainq ({SCHEMA_VERSION});"
                           " upgrade trainq")
    for i in range(version, SCHEMA_VERSION):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(MIGRATIONS[i]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={i + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
