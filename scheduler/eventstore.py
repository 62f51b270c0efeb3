"""The event log on disk: a small SQLite file next to the registry (``<db_path>.events``).

It lets live streams resume across a scheduler restart: numbering continues where it stopped,
and a reader that reconnects with the last event id it saw gets every event after it that is
still kept. Bounded: only the newest ``capacity`` events are kept. A separate file (not a
table in the registry) keeps the registry's numbered migrations to the job model alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


def events_path(db_path: str) -> str | None:
    """Where the event log of the registry at ``db_path`` lives (None: keep it in memory only)."""
    if not db_path or db_path == ":memory:" or "://" in db_path:
        return None
    return f"{db_path}.events"


class EventStore:
    """Append-only, bounded, numbered events in SQLite (WAL)."""

    def __init__(self, path: str, capacity: int = 10_000) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.capacity = capacity
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (what a restart is); only an OS crash may
        # lose the newest events, and the registry itself stays exact (it syncs FULL).
        self._db.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA.split(";"):
            self._db.execute(statement)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is None:
            self.epoch = uuid.uuid4().hex[:8]
            self._db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        else:
            self.epoch = row[0]
        self._since_trim = 0

    def last_seq(self) -> int:
        """The number of the newest event kept (0 when none ever was)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def load(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first."""
        rows = self._db.execute("SELECT body FROM events ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def append(self, event: dict[str, Any]) -> None:
        """Persist one numbered event (its ``seq`` is the key); trims the oldest now and then."""
        self.append_many([event])

    def append_many(self, events: list[dict[str, Any]]) -> None:
        """Persist numbered events in one transaction (one write to the log for all)."""
        if not events:
            return
        rows = [(event["seq"], _to_json(event)) for event in events]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO events (seq, body) VALUES (?, ?)", rows)
                self._since_trim += len(rows)
                if self._since_trim >= max(1, self.capacity // 10):
                    self._since_trim = 0
                    self._db.execute("DELETE FROM events WHERE seq <= ?", (rows[-1][0] - self.capacity,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the file."""
        self._db.close()


#: ``json.dumps(value, default=str)`` with its encoder made once, not on every event.
_to_json = json.JSONEncoder(default=str).encode
