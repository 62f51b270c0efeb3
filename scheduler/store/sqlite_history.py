"""The read-only history queries of ``SQLiteStore``: reports, checkpoints, transitions, attempts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..jobs import Attempt, Report, Transition
from ..states import JobStatus
from .rows import attempt_from, checkpoint_from


class SQLiteHistory:
    """What a job did, as recorded (kept apart from the writes of ``SQLiteStore``)."""

    _db: sqlite3.Connection

    def reports(self, job_id: str, attempt: int | None = None, after_id: int = 0,
                limit: int | None = None) -> list[Report]:
        """Reports in the order they were recorded."""
        sql = "SELECT * FROM reports WHERE job_id = ? AND id > ?"
        args: list[Any] = [job_id, after_id]
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(attempt)
        sql += " ORDER BY id LIMIT ?"
        args.append(-1 if limit is None else limit)
        return [
            Report(r["job_id"], r["attempt"], r["seq"], r["at"], json.loads(r["metrics"]), r["checkpoint_path"])
            for r in self._db.execute(sql, args)
        ]

    def last_reports(self, job_id: str, attempt: int, n: int) -> list[Report]:
        """The newest ``n`` reports of one attempt, oldest first (a step rate's window)."""
        rows = self._db.execute("SELECT * FROM reports WHERE job_id = ? AND attempt = ? ORDER BY id DESC LIMIT ?",
                                (job_id, attempt, n)).fetchall()
        return [Report(r["job_id"], r["attempt"], r["seq"], r["at"], json.loads(r["metrics"]), r["checkpoint_path"])
                for r in reversed(rows)]

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the job recorded, newest first."""
        rows = self._db.execute("SELECT * FROM checkpoints WHERE job_id = ? ORDER BY id DESC", (job_id,))
        return [checkpoint_from(r) for r in rows]

    def find_checkpoint(self, job_id: str, path: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM checkpoints WHERE job_id = ? AND path = ?", (job_id, path)).fetchone()
        return checkpoint_from(row) if row else None

    def checkpoint_bytes(self, job_id: str) -> int:
        """Bytes the job's checkpoints that are not deleted use on storage (as last measured)."""
        row = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM checkpoints WHERE job_id = ?"
                               " AND deleted_at IS NULL", (job_id,)).fetchone()
        return int(row[0])

    def checkpoint_bytes_of(self, job_ids: Sequence[str]) -> dict[str, int]:
        """``checkpoint_bytes`` of many jobs in one query (a page of a list)."""
        if not job_ids:
            return {}
        rows = self._db.execute(
            f"SELECT job_id, COALESCE(SUM(bytes), 0) FROM checkpoints WHERE job_id IN ({', '.join('?' * len(job_ids))})"
            " AND deleted_at IS NULL GROUP BY job_id", tuple(job_ids)).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def transitions(self, job_id: str) -> list[Transition]:
        rows = self._db.execute("SELECT * FROM transitions WHERE job_id = ? ORDER BY id", (job_id,))
        return [
            Transition(r["job_id"], JobStatus(r["from_status"]) if r["from_status"] else None,
                       JobStatus(r["to_status"]), r["at"], r["reason"], r["attempt"])
            for r in rows
        ]

    def get_attempt(self, job_id: str, attempt: int) -> Attempt | None:
        row = self._db.execute("SELECT * FROM attempts WHERE job_id = ? AND attempt = ?", (job_id, attempt)).fetchone()
        return attempt_from(row) if row else None

    def attempts(self, job_id: str) -> list[Attempt]:
        rows = self._db.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))
        return [attempt_from(r) for r in rows]

    def attempts_since(self, since: float | None) -> list[Attempt]:
        """Every attempt still running or ended at or after ``since`` (all of them when None)."""
        if since is None:
            rows = self._db.execute("SELECT * FROM attempts ORDER BY started_at")
        else:
            rows = self._db.execute("SELECT * FROM attempts WHERE ended_at IS NULL OR ended_at >= ?"
                                    " ORDER BY started_at", (since,))
        return [attempt_from(r) for r in rows]
