"""Which checkpoints of a job to delete, pure (the core records it, the storage deletes).

Retention counts a job's checkpoints across all of its attempts, newest first: the ``keep``
newest that still exist stay; an older one is deleted unless it is pinned by a user or
protected by the job's state (what a paused, queued or failed job will resume from, the final
checkpoint of a completed job, what a running attempt may still read). Pinned and protected
checkpoints are kept *in addition* to the ``keep`` newest, never instead of them, so a pin
never makes trainq delete a newer checkpoint. ``keep=None`` keeps everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Per-checkpoint states as the API shows them.
KEPT, PINNED, DELETED = "kept", "pinned", "deleted"


@dataclass(frozen=True)
class Stored:
    """A recorded checkpoint as retention sees it."""

    path: str
    attempt: int
    pinned: bool = False
    deleted: bool = False


def choose_deletions(checkpoints: Sequence[Stored], keep: int | None, protected: Iterable[str]) -> list[str]:
    """The paths to delete now, oldest last as given (``checkpoints`` is newest first).

    Checkpoints already deleted are neither counted nor chosen again, so applying the decision
    and asking once more returns nothing.
    """
    if keep is None:
        return []
    if keep < 0:
        raise ValueError(f"keep must be >= 0 or None, got {keep}")
    guarded = set(protected)
    live = [c for c in checkpoints if not c.deleted]
    return [c.path for c in live[keep:] if not c.pinned and c.path not in guarded]


def protected_paths(status: str, checkpoint_path: str | None, resume_from: str | None) -> set[str]:
    """What a job in ``status`` may still need, whatever the rule says.

    - ``checkpoint_path`` (the latest recorded) is what a paused, failed or cancelled job resumes
      from, the final checkpoint of a completed job, and what Ray Train restores on a
      worker-group retry of the running attempt.
    - ``resume_from`` is what a queued or starting attempt is about to read, and what a running
      attempt was seeded with (read again if its workers restart before its first checkpoint).
    """
    keep = {checkpoint_path} if checkpoint_path else set()
    if resume_from and status in ("queued", "pending", "running", "pausing"):
        keep.add(resume_from)
    return keep


def state_of(stored: Stored) -> str:
    """``deleted``, ``pinned`` or ``kept``."""
    return DELETED if stored.deleted else PINNED if stored.pinned else KEPT
