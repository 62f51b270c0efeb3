"""Usage: the fair-share ledger (charged every tick) and the usage report per user or job."""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidSpec
from ..jobs import Job, iso
from ..policy import Resources, accelerators, fairshare
from .writer import Writer

#: Where the fair-share ledger is kept in the store, and how often it is saved.
LEDGER_KEY, LEDGER_SAVE_S = "fairshare_ledger", 60.0


class Usage:
    """Who used what: the decayed ledger fair share orders by, and the accounting report."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        saved = self.ctx.store.get_meta(LEDGER_KEY) or {}
        self.ledger = fairshare.UsageLedger.from_dict(saved, self.ctx.settings.fairshare_half_life_s)
        self._charged_at: float | None = None  # when running jobs were last charged to the ledger
        self._saved_at = 0.0

    def share_base(self, capacity: Resources) -> Resources:
        """What shares of the cluster are measured against: its size, or its largest size when an
        autoscaler has shrunk it (a cluster scaled to zero still compares GPUs with CPUs)."""
        most = self.ctx.cluster.max_capacity()
        return {k: max(capacity.get(k, 0.0), most.get(k, 0.0)) for k in set(capacity) | set(most)}

    def charge(self, now: float) -> None:
        """Charge what each owner's attempts held since the last tick to the fair-share ledger."""
        since, self._charged_at = self._charged_at, now
        if since is None or now <= since:
            return
        capacity = self.share_base(self.ctx.cluster.capacity())
        for (job_id, _), demand in self.writer.held.items():
            self.ledger.charge(self.writer.owners.get(job_id, ""), demand, now - since, now, capacity)
        if now - self._saved_at >= LEDGER_SAVE_S:
            self._saved_at = now
            self.ctx.store.set_meta(LEDGER_KEY, self.ledger.to_dict())

    def report(self, by: str = "user", since: float | None = None) -> dict[str, Any]:
        """Resource use per user or per job since ``since`` (epoch seconds; None: all time).

        Each row: ``resource_seconds`` per resource (and per accelerator type, ``GPU:A100``), ``gpu_hours``,
        ``gpu_hours_by_type`` (of attempts placed on a type), ``cpu_hours``, ``lost_work_s``
        (work redone after pauses and failures), ``preemptions`` and ``attempts``; per user also
        ``jobs`` and ``fair_share_usage`` (the decayed usage fair share orders by); and
        ``checkpoint_bytes``, what the row's jobs hold on storage now (their checkpoints not
        deleted, as measured when recorded), also summed over the rows at the top.
        """
        if by not in ("user", "job"):
            raise InvalidSpec(f"by must be 'user' or 'job', got {by!r}", field="by")
        if since is not None and (not math.isfinite(since)):
            raise InvalidSpec("since must be a time", field="since")
        now = self.ctx.clock()
        attempts = self.ctx.store.attempts_since(since)
        jobs = self.ctx.store.get_jobs(sorted({a.job_id for a in attempts}))
        rows: dict[str, dict[str, Any]] = {}
        for a in attempts:
            job = jobs.get(a.job_id)
            if job is None:
                continue
            owner = job.owner or ""
            key = owner if by == "user" else a.job_id
            row = rows.setdefault(key, _row(by, key, job))
            seconds = max(0.0, (a.ended_at if a.ended_at is not None else now) - max(a.started_at, since or 0.0))
            demand = self.writer.spec(job).demand(a.workers)  # what this attempt held (an elastic job's size)
            for name, amount in accelerators.per_type(demand, a.accelerator_type).items():
                row["resource_seconds"][name] = row["resource_seconds"].get(name, 0.0) + amount * seconds
            row["lost_work_s"] += float((a.lost_work or {}).get("seconds") or 0.0)
            row["attempts"] += 1
            if a.job_id not in row["_jobs"]:
                row["_jobs"].add(a.job_id)
                row["preemptions"] += job.preemptions
        held = self._checkpoint_bytes(sorted({j for row in rows.values() for j in row["_jobs"]}))
        out = []
        for key, row in sorted(rows.items()):
            row["checkpoint_bytes"] = sum(held.get(j, 0) for j in row["_jobs"])
            rs = row["resource_seconds"]
            row["resource_seconds"] = {k: round(v, 3) for k, v in sorted(rs.items())}
            row["gpu_hours"] = round(rs.get("GPU", 0.0) / 3600, 6)
            row["gpu_hours_by_type"] = {k.partition(":")[2]: round(v / 3600, 6) for k, v in sorted(rs.items())
                                        if k.startswith("GPU:")}
            row["cpu_hours"] = round(rs.get("CPU", 0.0) / 3600, 6)
            row["lost_work_s"] = round(row["lost_work_s"], 3)
            n = len(row.pop("_jobs"))
            if by == "user":
                row["jobs"] = n
                row["fair_share_usage"] = round(self.ledger.of(key, now), 6)
            out.append(row)
        return {"by": by, "since": iso(since), "until": iso(now), "rows": out,
                "checkpoint_bytes": sum(r["checkpoint_bytes"] for r in out)}

    def _checkpoint_bytes(self, job_ids: list[str]) -> dict[str, int]:
        # In slices: SQLite limits the values one statement binds (999 in older builds).
        held: dict[str, int] = {}
        for i in range(0, len(job_ids), 500):
            held.update(self.ctx.store.checkpoint_bytes_of(job_ids[i:i + 500]))
        return held


def _row(by: str, key: str, job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {"user": key} if by == "user" else {"job_id": key, "name": job.name, "user": job.owner}
    row.update(resource_seconds={}, gpu_hours=0.0, cpu_hours=0.0, lost_work_s=0.0, preemptions=0, attempts=0,
               _jobs=set())
    return row
