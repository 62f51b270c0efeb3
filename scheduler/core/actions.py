"""What a scheduling pass decides, as typed actions (``scheduling.Pass.apply`` carries them out).

Each stage of a pass returns a list of these; nothing in them touches Ray or the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..policy import Resources
from ..policy.elastic import Loan


class Why(Enum):
    """Why a running job is asked to make way."""

    PRIORITY = "priority"  # a higher-priority job waits
    RECLAIM = "reclaim"  # its owner borrows beyond a guarantee another user now claims
    BACKFILL = "backfill"  # it was backfilled on the condition that it leaves before its head starts
    TIME_SLICE = "time_slice"  # its slice is over and equal-priority jobs wait


@dataclass(frozen=True)
class Start:
    """queued -> pending: launch a new attempt."""

    job_id: str
    borrowing: bool = False
    backfill: str | None = None  # how it was backfilled (``policy.backfill``), None: in its turn
    accelerator_type: str | None = None  # the type admission chose of the job's accelerator_type
    placement: list[int] | None = None  # workers per node, in ``node_ids`` order (None: unknown)
    node_ids: list[str] | None = None
    workers: int | None = None  # an elastic job's size for this attempt (None: its fixed size)


@dataclass(frozen=True)
class MakeWay:
    """running -> pausing at its next checkpoint, for ``for_job`` (then back to the queue)."""

    job_id: str
    for_job: str | None
    why: Why
    expected_lost_work_s: float | None = None
    detail: str = ""  # for PRIORITY: the two priorities


@dataclass(frozen=True)
class AskCapacity:
    """Ask the autoscaler for these bundles (an empty list withdraws the ask)."""

    bundles: list[Resources]


@dataclass(frozen=True)
class Hold:
    """Hold a queued job for a dependency, its sweep's limit or its resize (``held`` None: let it
    go; ``max_workers``: an elastic job let go after a shrink starts with at most that many;
    ``resized``: let go after a resize, it starts with the size planned, ``Entry.resized``)."""

    job_id: str
    held: tuple[str, str] | None
    max_workers: int | None = None
    resized: bool = False


@dataclass(frozen=True)
class CancelUnmet:
    """queued -> cancelled: a dependency can never be met (``policy.dependencies``)."""

    job_id: str
    reason: str


@dataclass(frozen=True)
class Resize:
    """running -> pausing at its next checkpoint, then requeued in its place and started again at
    another size; ``to_workers`` is what the policy expects it to get."""

    job_id: str
    to_workers: int
    for_job: str | None = None  # a shrink: the job it makes room for (None: a grow into idle room)
    expected_lost_work_s: float | None = None
    detail: str = ""  # a shrink: why (the two priorities, a reclaimed guarantee, a loan taken back)
    loan: Loan | None = None  # a grow: the workers a waiting head lends it, and when they go back
    repays: str | None = None  # a shrink giving back the workers this waiting head lent it


@dataclass(frozen=True)
class MarkBorrowing:
    """An active job's attempt now runs beyond its owner's guarantee, or no longer does: its owner's
    usage changed (``Snapshot.borrowing``)."""

    job_id: str
    borrowing: bool


Action = Start | MakeWay | Resize | AskCapacity | Hold | CancelUnmet | MarkBorrowing
