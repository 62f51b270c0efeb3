"""SQLite connection details: how a transaction commits, and how None and bool bind."""

from __future__ import annotations

import sqlite3

from ..errors import LeaseLost

#: The lease row's epoch and holder, read inside a fenced write's transaction.
LEASE_EPOCH = "SELECT epoch, holder FROM lease WHERE name = 'leader'"


def bind_none_and_bool_fast() -> None:
    """sqlite3 binds an int, float or str as it is, but for any other value (None and bool among
    them) it first looks for an adapter: a registry miss, then an AttributeError raised and caught
    twice. A job row has some twenty None columns, so that search was a tenth of a submit's CPU.
    Registered, None and bool cost one lookup and a call. sqlite3's adapters are process-wide by
    its design: these bind exactly as before (None as NULL, a bool as 0 or 1), only faster."""
    sqlite3.register_adapter(type(None), lambda value: None)
    sqlite3.register_adapter(bool, int)


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error.

    ``durable=False`` commits without an fsync (WAL, synchronous=NORMAL): the commit survives a
    crash of the process but not of the machine until the next durable commit syncs the log.
    ``fence``: the epoch of the lease this writer holds; the transaction raises ``LeaseLost`` and
    writes nothing when the registry's lease has a higher one. The check costs one read of a
    one-row table, and it is sound because BEGIN IMMEDIATE already holds the write lock: no other
    scheduler can take the lease between the check and this commit.
    """

    def __init__(self, db: sqlite3.Connection, durable: bool = True, fence: int | None = None) -> None:
        self._db = db
        self._durable = durable
        self._fence = fence

    def __enter__(self) -> None:
        if not self._durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")
        if self._fence is not None:
            epoch, holder = self._db.execute(LEASE_EPOCH).fetchone()
            if epoch > self._fence:
                self.__exit__(LeaseLost)  # __exit__ is not called when __enter__ raises
                raise LeaseLost(self._fence, epoch, holder)

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            if not self._durable:
                self._db.execute("PRAGMA synchronous=FULL")
