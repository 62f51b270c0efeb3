"""``trainq db copy``: an SQLite registry (and its event log) into an empty Postgres one.

Read in one SQLite read transaction (WAL: a consistent snapshot even while a scheduler still
writes it) and written in one Postgres transaction (all or nothing), keeping every id and
number: reports are read back in id order, jobs keep their ``seq`` and so their queue order.
The lease is not copied: leadership of the new registry starts afresh (epoch 1).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidSpec, RegistryNotEmpty, UnsupportedRegistry
from ..eventstore import events_path
from .pg_events import EPOCH_KEY
from .pg_schema import COPIED, events, lease, meta
from .postgres import PostgresStore
from .sqlite import SQLiteStore
from .url import parse_db_url

#: Rows per INSERT batch (bounded memory for a registry of any size).
BATCH = 2_000


def copy_sqlite_to_postgres(source: str, target: str) -> dict[str, int]:
    """Copy the SQLite registry at ``source`` (a path or ``sqlite:///``) into the empty Postgres
    registry at ``target``; returns the rows copied per table. The source is first brought to the
    current schema (as ``trainq serve`` would); ``RegistryNotEmpty`` if the target holds anything."""
    src, dst = parse_db_url(source), parse_db_url(target)
    if src.kind != "sqlite":
        raise UnsupportedRegistry(src.shown, "db copy reads an SQLite registry (--db PATH)")
    if dst.kind != "postgresql":
        raise UnsupportedRegistry(dst.shown, "db copy writes a Postgres registry (--to postgresql://...)")
    if src.target == ":memory:" or not os.path.isfile(src.target):
        raise InvalidSpec(f"no SQLite registry at {src.target}", field="db")
    SQLiteStore(src.target).close()  # migrates it in place, once, before the snapshot is read
    store = PostgresStore(target)
    try:
        db = sqlite3.connect(f"file:{src.target}?mode=ro", uri=True)
        try:
            db.execute("BEGIN")  # one snapshot for every table
            with store._engine.begin() as conn:
                # Two copies at once into one database: the second waits, then finds it full.
                conn.exec_driver_sql("LOCK TABLE jobs IN EXCLUSIVE MODE")
                held = {table.name: n for table in (*COPIED, events)
                        if (n := conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())}
                if held:
                    raise RegistryNotEmpty(dst.where, held)
                counts = {table.name: _copy_table(db, conn, table) for table in COPIED}
                counts["events"] = _copy_events(src.target, conn)
                for table in COPIED:
                    if "id" in table.c:  # identities continue after the copied ids
                        conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                                             f" COALESCE(MAX(id), 0) + 1, false) FROM {table.name}")
                conn.execute(lease.update().values(holder=None, expires_at=0.0))
        finally:
            db.close()
    finally:
        store.close()
    return counts


def _rows(db: sqlite3.Connection, table: sa.Table) -> Iterator[list[dict[str, Any]]]:
    columns = [c.name for c in table.c]
    flags = [c.name for c in table.c if isinstance(c.type, sa.Boolean)]
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table.name}")
    while batch := cursor.fetchmany(BATCH):
        rows = [dict(zip(columns, row)) for row in batch]
        for row in rows:
            for name in flags:  # SQLite keeps flags as 0/1; Postgres takes booleans only
                if row[name] is not None:
                    row[name] = bool(row[name])
        yield rows


def _copy_table(db: sqlite3.Connection, conn: sa.Connection, table: sa.Table) -> int:
    copied = 0
    for rows in _rows(db, table):
        conn.execute(table.insert(), rows)
        copied += len(rows)
    return copied


def _copy_events(source: str, conn: sa.Connection) -> int:
    """The event log beside the registry (``<path>.events``), with its name, so a live stream's
    reader that reconnects to the new registry resumes where it was."""
    path = events_path(source)
    if path is None or not os.path.isfile(path):
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is not None:
            conn.execute(meta.insert().values(key=EPOCH_KEY, value=f'"{row[0]}"'))
        return _copy_table(db, conn, events)
    finally:
        db.close()
