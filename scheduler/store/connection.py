"""SQLite connection details: how a transaction commits, and how None and bool bind."""

from __future__ import annotations

import sqlite3


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
    """

    def __init__(self, db: sqlite3.Connection, durable: bool = True) -> None:
        self._db = db
        self._durable = durable

    def __enter__(self) -> None:
        if not self._durable:
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            if not self._durable:
                self._db.execute("PRAGMA synchronous=FULL")
