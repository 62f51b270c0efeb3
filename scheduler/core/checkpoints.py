"""Checkpoints: recording them, retention, whether one still exists, and their public form.

``policy.retention`` decides which to delete; the checkpoint storage (``CheckpointFS``) deletes.
The start-up sweep (``checkpoint_fs.sweep_leftovers``) asks here which deleted ones it may remove.
"""

from __future__ import annotations

import os
from typing import Any

from .. import security
from ..checkpoint_fs import Leftover, SweepOutcome
from ..errors import CheckpointMissing, CheckpointRefused
from ..jobs import Job, iso
from ..policy import retention
from ..states import ACTIVE
from .writer import Writer

#: Store meta: when the last completed sweep began (its ``since`` for the next one) and what it did.
SWEEP_KEY = "checkpoint_sweep"


class Checkpoints:
    """A job's recorded checkpoints, and the rules over them."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.ctx = writer.ctx
        #: active job -> (attempt, when its attempt last reported a checkpoint); dropped when it ends
        self._last: dict[str, tuple[int, float | None]] = {}

    def public(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint the job recorded (path, metrics, time, attempt), newest first, each
        with its retention ``state`` (``kept``, ``pinned``, ``deleted``) and ``bytes`` on storage."""
        self.writer.job(job_id)
        return [_public(c) for c in self.ctx.store.checkpoints(job_id)]

    def pin(self, job: Job, path: str, pinned: bool) -> dict[str, Any]:
        """Pin a recorded checkpoint (kept whatever the retention rule says) or unpin it.

        Unpinning applies the rule at once, so an old checkpoint may be deleted right away.
        """
        store, job_id = self.ctx.store, job.job_id
        candidate = self.recorded(job, path)
        record = store.find_checkpoint(job_id, candidate)
        assert record is not None  # recorded() checked it
        if pinned and record["deleted_at"] is not None:
            raise CheckpointRefused(job_id, path, f"it was deleted at {iso(record['deleted_at'])} under the"
                                    " job's keep_checkpoints rule; only a checkpoint that still exists can be pinned")
        if record["pinned"] != pinned:
            store.update_checkpoint(job_id, candidate, {"pinned": pinned})
            self.writer.notify({"type": "checkpoint_pin", "job_id": job_id, "checkpoint_path": candidate,
                                "pinned": pinned, "at": iso(self.ctx.clock())})
        if not pinned:
            self.apply_retention(job_id)
        found = store.find_checkpoint(job_id, candidate)
        assert found is not None
        return _public(found)

    def recorded(self, job: Job, path: str) -> str:
        """``path`` normalised, if it is a checkpoint this job recorded inside its own folder."""
        root = self.writer.job_root(job)
        if "\x00" in path:  # no path holds one, and os.path refuses to look at it
            raise CheckpointRefused(job.job_id, path, "a path cannot contain a NUL byte")
        candidate = path if "://" in path else os.path.normpath(path)
        if not _inside(candidate, root):
            raise CheckpointRefused(job.job_id, path, f"it is outside the job's storage {root}")
        if self.ctx.store.find_checkpoint(job.job_id, candidate) is None:
            raise CheckpointRefused(job.job_id, path, "this job never recorded that checkpoint"
                                    " (see its checkpoints list)")
        return candidate

    def on_recorded(self, job_id: str, attempt: int, at: float, path: str) -> None:
        """A new checkpoint was recorded: remember when, measure it, apply the job's retention rule."""
        self._last[job_id] = (attempt, at)
        # A listing of the folder, not a read of its contents; measured once, when recorded.
        self.ctx.store.update_checkpoint(job_id, path, {"bytes": self.ctx.checkpoint_fs.size(path)})
        self.apply_retention(job_id)

    def apply_retention(self, job_id: str) -> list[str]:
        """Delete the job's checkpoints its ``keep_checkpoints`` rule no longer keeps.

        Each one is recorded as deleted before the storage is asked to delete it, so it is never
        offered for a resume again even while its folder is still being removed.
        """
        store = self.ctx.store
        job = store.get_job(job_id)
        if job is None:
            return []
        if job.status not in ACTIVE:
            self._last.pop(job_id, None)  # its attempt is over: nothing asks when it last saved
        keep = self.writer.spec(job).keep_checkpoints
        if keep is None:
            return []
        stored = [retention.Stored(c["path"], c["attempt"], c["pinned"], c["deleted_at"] is not None)
                  for c in store.checkpoints(job_id)]
        protected = retention.protected_paths(job.status.value, job.checkpoint_path, job.resume_from)
        doomed = retention.choose_deletions(stored, keep, protected)
        now = self.ctx.clock()
        for path in doomed:
            store.update_checkpoint(job_id, path, {"deleted_at": now})
            self.ctx.checkpoint_fs.delete(path)
        if doomed:
            self.writer.notify({"type": "checkpoints_deleted", "job_id": job_id, "paths": doomed,
                                "keep_checkpoints": keep, "at": iso(now)})
        return doomed

    # -- the start-up sweep (``checkpoint_fs.SweepSource``) ------------------------------------------
    def sweep_window(self) -> tuple[float | None, float]:
        """``(since, now)``: a sweep beginning now looks at deletions recorded from ``since``, when the
        last completed sweep began (None: never swept). Older ones were checked by that sweep, and
        nothing puts a folder back, so each start looks only at what the last run deleted."""
        last = self.ctx.store.get_meta(SWEEP_KEY) or {}
        since = last.get("since")
        return (None if since is None else float(since)), self.ctx.clock()

    def leftovers(self, since: float | None, offset: int, limit: int) -> tuple[list[Leftover], int | None]:
        """The checkpoints the sweep may remove among ``limit`` jobs from ``offset`` (newest first),
        and the next page's offset (None: no more jobs). See ``leftover_paths`` for which."""
        jobs = self.ctx.store.list_jobs(limit=limit, offset=offset)
        found: list[Leftover] = []
        for job in jobs:
            found += leftover_paths(job.job_id, self.ctx.store.checkpoints(job.job_id), self.writer.job_root(job),
                                    since)
        # New jobs shift later pages by their number: a job may be read twice, never skipped.
        return found, (offset + len(jobs) if len(jobs) == limit else None)

    def swept(self, began_at: float, found: list[Leftover], outcome: SweepOutcome) -> None:
        """Record a finished sweep: the next one looks from when this one began, or from the oldest
        folder it failed to remove (so that one is tried again); announce what went, per job."""
        failed = set(outcome.failed)
        retry = [f.deleted_at for f in found if f.path in failed]
        since = min([began_at, *retry])
        self.ctx.store.set_meta(SWEEP_KEY, {"since": since, "at": began_at, "checked": outcome.checked,
                                            "removed": len(outcome.removed), "bytes_freed": outcome.bytes_freed,
                                            "failed": len(outcome.failed)})
        gone = set(outcome.removed)
        by_job: dict[str, list[str]] = {}
        for f in found:
            if f.path in gone:
                by_job.setdefault(f.job_id, []).append(f.path)
        for job_id, paths in by_job.items():
            self.writer.notify({"type": "checkpoints_swept", "job_id": job_id, "paths": paths,
                                "at": iso(self.ctx.clock())})

    def existing_start(self, job: Job, start_from: str | None, named: bool) -> tuple[str | None, str | None]:
        """Check that the checkpoint a resume would start from still exists and is complete.

        A named checkpoint that is gone is refused (``CheckpointMissing``, naming the newest one
        that exists); the job's latest one that is gone falls back to the newest that exists,
        and the second value says so for the resume's message.
        """
        if start_from is None:
            return None, None
        record = self.ctx.store.find_checkpoint(job.job_id, start_from)
        if record is not None and record["deleted_at"] is not None:
            why = f"trainq deleted it at {iso(record['deleted_at'])} under the job's keep_checkpoints rule"
        elif not self.ctx.checkpoint_fs.complete(start_from):
            why = "its folder is missing or empty on storage (removed outside trainq?)"
        else:
            return start_from, None
        newest = self._newest_existing(job.job_id, skip=start_from)
        if named or newest is None:
            raise CheckpointMissing(job.job_id, start_from, newest, why)
        return newest, (f"its latest checkpoint {start_from} is gone ({why}), so it resumes from {newest},"
                        " the newest recorded checkpoint that still exists")

    def _newest_existing(self, job_id: str, skip: str) -> str | None:
        for c in self.ctx.store.checkpoints(job_id):
            if c["path"] != skip and c["deleted_at"] is None and self.ctx.checkpoint_fs.complete(c["path"]):
                return str(c["path"])
        return None

    def last_at(self, job: Job) -> float | None:
        """When the job's current attempt last reported a checkpoint (None: not yet)."""
        cached = self._last.get(job.job_id)
        if cached is None or cached[0] != job.attempt:
            mine = [c["at"] for c in self.ctx.store.checkpoints(job.job_id) if c["attempt"] == job.attempt]
            cached = (job.attempt, max(mine) if mine else None)
            if job.status in ACTIVE:
                self._last[job.job_id] = cached
        return cached[1]


def leftover_paths(job_id: str, records: list[dict[str, Any]], root: str, since: float | None) -> list[Leftover]:
    """The job's checkpoints the sweep may remove: recorded as deleted (from ``since``), inside the
    job's own folder, and neither the folder of a checkpoint it still keeps nor one holding or
    inside such a folder. The sweep never removes anything else."""
    kept = [_norm(str(r["path"])) for r in records if r["deleted_at"] is None]
    out = []
    for r in records:
        deleted_at, path = r["deleted_at"], str(r["path"])
        if deleted_at is None or (since is not None and deleted_at < since) or not _inside(path, root):
            continue
        mine = _norm(path)
        if any(k == mine or k.startswith(mine + "/") or mine.startswith(k + "/") for k in kept):
            continue
        out.append(Leftover(job_id, path, float(deleted_at)))
    return out


def _public(c: dict[str, Any]) -> dict[str, Any]:
    stored = retention.Stored(c["path"], c["attempt"], c["pinned"], c["deleted_at"] is not None)
    return {**c, "at": iso(c["at"]), "deleted_at": iso(c["deleted_at"]), "state": retention.state_of(stored)}


def _norm(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.normpath(path)


def _inside(path: str, root: str) -> bool:
    if "://" in root or "://" in path:
        return path.startswith(root.rstrip("/") + "/") and "/../" not in path
    # Resolved: a symlink (or "..") inside the job's folder must not lead into another job's.
    return security.is_under(path, [root])
