"""Checkpoints: recording them, retention, whether one still exists, and their public form.

``policy.retention`` decides which to delete; the checkpoint storage (``CheckpointFS``) deletes.
"""

from __future__ import annotations

import os
from typing import Any

from .. import security
from ..errors import CheckpointMissing, CheckpointRefused
from ..jobs import Job, iso
from ..policy import retention
from ..states import ACTIVE
from .writer import Writer


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


def _public(c: dict[str, Any]) -> dict[str, Any]:
    stored = retention.Stored(c["path"], c["attempt"], c["pinned"], c["deleted_at"] is not None)
    return {**c, "at": iso(c["at"]), "deleted_at": iso(c["deleted_at"]), "state": retention.state_of(stored)}


def _inside(path: str, root: str) -> bool:
    if "://" in root or "://" in path:
        return path.startswith(root.rstrip("/") + "/") and "/../" not in path
    # Resolved: a symlink (or "..") inside the job's folder must not lead into another job's.
    return security.is_under(path, [root])
