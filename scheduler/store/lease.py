"""The leader lease: which scheduler may write the registry, and its epoch (a fencing token).

One row, ``lease(name='leader', holder, epoch, expires_at)``, in the registry itself (both backends).
A scheduler takes the lease when it is free or expired, and each take raises the epoch by one.
A store *fenced* at an epoch refuses every write (``LeaseLost``) once the row holds a higher one:
the check runs inside the write's own transaction (under SQLite's write lock; under a row lock on
Postgres), so a deposed scheduler cannot slip a write in after its successor took over, however
long it was paused (Kleppmann's fencing token; Chubby's sequencer).

The rule of who may take the lease is written once, here, as a pure function; each backend only
reads and writes the row in a transaction around it.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from ..errors import LeaseLost
from .connection import Transaction

LEADER = "leader"


@dataclass(frozen=True)
class Lease:
    """A lease as the registry holds it: ``holder`` may write until ``expires_at`` (renewing before)."""

    holder: str
    epoch: int
    expires_at: float

    def live(self, now: float) -> bool:
        """True while the lease has not expired."""
        return now < self.expires_at


def take(holder: str | None, epoch: int, expires_at: float, me: str, ttl_s: float, now: float) -> Lease | None:
    """The rule: the lease row ``(holder, epoch, expires_at)`` is ``me``'s for ``ttl_s`` from ``now``
    with the next epoch when it is free, expired, or already ``me``'s (a restarted holder takes a
    new epoch, which fences whatever its earlier self still has open); None while another holds it."""
    if ttl_s <= 0:
        raise ValueError(f"a lease's ttl_s must be > 0, not {ttl_s}")
    if holder is not None and holder != me and now < expires_at:
        return None
    return Lease(me, epoch + 1, now + ttl_s)


def check_fence(fence: int, current: int, holder: str | None) -> None:
    """Raise ``LeaseLost`` when the registry's epoch ``current`` is past the store's ``fence``."""
    if current > fence:
        raise LeaseLost(fence, current, holder)


# -- SQLite -------------------------------------------------------------------------------------------
READ = "SELECT holder, epoch, expires_at FROM lease WHERE name = 'leader'"


class SQLiteLeasing:
    """The lease methods of ``SQLiteStore`` (kept here beside the rule they apply)."""

    _db: sqlite3.Connection
    _lock: threading.RLock
    #: The epoch this store's writes are fenced by (None: unfenced).
    epoch: int | None

    def acquire_lease(self, holder: str, ttl_s: float, now: float) -> Lease | None:
        """Take the lease for ``holder`` when it is free or expired: returns it with a new, higher
        epoch, and fences this store at that epoch; None while another holder's lease is live."""
        # BEGIN IMMEDIATE: two schedulers deciding at once are serialised by SQLite's write lock.
        with self._lock, Transaction(self._db):
            row = self._db.execute(READ).fetchone()
            lease = take(row[0], row[1], row[2], holder, ttl_s, now)
            if lease is not None:
                self._db.execute("UPDATE lease SET holder = ?, epoch = ?, expires_at = ? WHERE name = 'leader'",
                                 (lease.holder, lease.epoch, lease.expires_at))
        if lease is not None:
            self.epoch = lease.epoch
        return lease

    def renew_lease(self, holder: str, epoch: int, ttl_s: float, now: float) -> bool:
        """Extend ``holder``'s lease at ``epoch`` to ``now + ttl_s``; False once another took it.
        (An expired lease nobody took is renewed: its epoch is unchanged, so nobody wrote meanwhile.)"""
        with self._lock, Transaction(self._db):
            cur = self._db.execute("UPDATE lease SET expires_at = ? WHERE name = 'leader' AND holder = ?"
                                   " AND epoch = ?", (now + ttl_s, holder, epoch))
        return cur.rowcount == 1

    def current_lease(self) -> Lease | None:
        """The lease as the registry holds it now (expired or not), or None if never taken."""
        holder, epoch, expires_at = self._db.execute(READ).fetchone()
        return None if holder is None else Lease(holder, epoch, expires_at)

    def fence(self, epoch: int | None) -> None:
        """Write only under ``epoch`` from now on (``LeaseLost`` once a higher one exists); None: unfenced."""
        self.epoch = epoch
