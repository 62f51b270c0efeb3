"""The event log in the Postgres registry: the ``events`` table beside the jobs (on SQLite it is a
file of its own, ``scheduler.eventstore``), so the whole registry lives in one database and a
scheduler on a new head node resumes the numbering where the old one stopped.

The same interface as ``scheduler.eventstore.EventStore``: ``epoch``, ``last_seq``, ``load``,
``append``, ``append_many``, ``close``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from . import pg_migrate
from .pg_connection import PgConnection
from .pg_schema import events, meta

#: The key in ``meta`` that names this registry's event log (what ``EventStore`` keeps as ``epoch``).
EPOCH_KEY = "events_epoch"


class PgEventStore(PgConnection):
    """Append-only, bounded, numbered events in the registry's ``events`` table."""

    def __init__(self, url: str, capacity: int = 10_000) -> None:
        super().__init__(url)
        self.capacity = capacity
        self._since_trim = 0
        self._guarded(lambda: pg_migrate.upgrade(self._engine))

        def name_the_log(conn: sa.Connection) -> str:
            # ON CONFLICT DO NOTHING, then read: two starting at once agree on the first one's name.
            conn.execute(pg_insert(meta).values(key=EPOCH_KEY, value=json.dumps(uuid.uuid4().hex[:8]))
                         .on_conflict_do_nothing())
            return str(json.loads(conn.execute(sa.select(meta.c.value).where(meta.c.key == EPOCH_KEY)).scalar_one()))
        #: Names this log (``EventStore.epoch``: unrelated to the lease's epoch).
        self.epoch = self._unfenced(name_the_log)

    def __repr__(self) -> str:
        return f"PgEventStore({self.url.shown!r})"

    def last_seq(self) -> int:
        """The number of the newest event kept (0 when none ever was)."""
        query = sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0))
        return int(self._read(lambda c: c.execute(query).scalar_one()))

    def load(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first."""
        query = sa.select(events.c.body).order_by(events.c.seq.desc()).limit(limit)
        rows = self._all(query)
        return [json.loads(body) for body, in reversed(rows)]

    def append(self, event: dict[str, Any]) -> None:
        """Persist one numbered event (its ``seq`` is the key)."""
        self.append_many([event])

    def append_many(self, items: list[dict[str, Any]]) -> None:
        """Persist numbered events in one transaction; trims the oldest now and then."""
        if not items:
            return
        rows = [{"seq": event["seq"], "body": _to_json(event)} for event in items]
        statement = pg_insert(events)
        upsert = statement.on_conflict_do_update(index_elements=["seq"], set_={"body": statement.excluded.body})
        self._since_trim += len(rows)
        trim = self._since_trim >= max(1, self.capacity // 10)
        if trim:
            self._since_trim = 0

        def work(conn: sa.Connection) -> None:
            conn.execute(upsert, rows)
            if trim:
                conn.execute(events.delete().where(events.c.seq <= rows[-1]["seq"] - self.capacity))
        # The log is context for live streams, not the record: no wait for the WAL flush.
        self._write(work, durable=False)


#: ``json.dumps(value, default=str)`` with its encoder made once, not on every event.
_to_json = json.JSONEncoder(default=str).encode
