"""How a job, a request, a checkpoint and an attempt are stored as rows, and read back."""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ..jobs import Attempt, Job
from ..states import JobStatus

JSON_FIELDS = ("spec", "metrics", "lost_work")
JOB_COLUMNS = (
    "job_id", "seq", "name", "status", "priority", "spec", "created_at", "updated_at",
    "started_at", "finished_at", "paused_at", "attempt", "checkpoint_path", "resume_from",
    "metrics", "error", "warning", "lost_work", "pause_requested_at", "pause_deadline_at",
    "expected_paused_by", "pause_reason", "preempted_by", "preemptions", "retries", "not_before",
    "resumable", "cooperative", "checkpoint_requested_at", "owner", "borrowing", "backfill", "workers",
)
BOOL_FIELDS = ("resumable", "cooperative", "borrowing")


class RowLike(Protocol):
    """A row read by column name: ``sqlite3.Row``, or a SQLAlchemy row's ``_mapping`` (Postgres)."""

    def __getitem__(self, key: str) -> Any: ...



def status_filter(statuses: Iterable[JobStatus] | None) -> tuple[str, Sequence[str]]:
    if statuses is None:
        return "", ()
    values = [JobStatus(s).value for s in statuses]
    if not values:
        return "WHERE 0", ()
    return f"WHERE status IN ({', '.join('?' * len(values))})", values


def job_values(job: Job) -> list[Any]:
    """The job's columns as stored, in ``JOB_COLUMNS`` order (``INSERT_JOB``'s parameters)."""
    values = list(_JOB_ATTRS(job))
    values[_STATUS_AT] = job.status.value
    for i in _JSON_AT:
        if values[i] is not None:
            values[i] = to_json(values[i])
    return values


_JOB_ATTRS = operator.attrgetter(*JOB_COLUMNS)
_STATUS_AT = JOB_COLUMNS.index("status")
_JSON_AT = tuple(JOB_COLUMNS.index(key) for key in JSON_FIELDS)
INSERT_JOB = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
#: ``json.dumps(value, default=str)`` with its encoder made once, not on every call.
to_json = json.JSONEncoder(default=str).encode




def job_row_partial(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(JOB_COLUMNS)
    if unknown:
        raise ValueError(f"unknown job fields {sorted(unknown)}")
    return {k: (to_json(v) if k in JSON_FIELDS and v is not None else v)
            for k, v in changes.items()}


def job_from(row: RowLike) -> Job:
    data = {col: row[col] for col in JOB_COLUMNS}
    for key in JSON_FIELDS:
        if data[key] is not None:
            data[key] = json.loads(data[key])
    for key in BOOL_FIELDS:
        if data[key] is not None:
            data[key] = bool(data[key])
    data["status"] = JobStatus(data["status"])
    return Job(**data)


def request_from(row: RowLike) -> dict[str, Any]:
    return {"verb": row["verb"], "job_id": row["job_id"], "fingerprint": row["fingerprint"],
            "response": json.loads(row["response"]) if row["response"] else None, "at": row["at"]}


def checkpoint_from(row: RowLike) -> dict[str, Any]:
    return {"job_id": row["job_id"], "attempt": row["attempt"], "path": row["path"],
            "metrics": json.loads(row["metrics"]), "at": row["at"], "pinned": bool(row["pinned"]),
            "deleted_at": row["deleted_at"], "bytes": row["bytes"]}


def attempt_from(row: RowLike) -> Attempt:
    return Attempt(
        job_id=row["job_id"], attempt=row["attempt"], started_at=row["started_at"],
        resumed_from=row["resumed_from"], run_name=row["run_name"], ended_at=row["ended_at"],
        outcome=row["outcome"], lost_work=json.loads(row["lost_work"]) if row["lost_work"] else None,
        **{k: v for k, v in json.loads(row["extra"] or "{}").items() if k in ATTEMPT_EXTRA},
    )


#: the attempt's fields stored in its row's ``extra`` column (added after the table's schema)
ATTEMPT_EXTRA = ("accelerator_type", "workers")


def attempt_extra(attempt: Attempt) -> str:
    """The attempts row's ``extra`` column: fields added after its schema (a JSON object)."""
    return json.dumps({k: v for k in ATTEMPT_EXTRA if (v := getattr(attempt, k)) is not None})
