"""Open the registry (and its event log) that ``TRAINQ_DB`` / ``--db`` names: the one place a
location becomes a store, so an unsupported URL is refused here rather than taken as a path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from ..eventstore import EventStore, events_path
from .sqlite import SQLiteStore
from .url import parse_db_url

if TYPE_CHECKING:  # SQLAlchemy and psycopg load only when a Postgres registry is opened
    from .pg_events import PgEventStore
    from .postgres import PostgresStore

AnyStore = Union[SQLiteStore, "PostgresStore"]
AnyEventStore = Union[EventStore, "PgEventStore"]


def open_store(url_or_path: str, epoch: int | None = None) -> AnyStore:
    """The registry at ``url_or_path`` (a path, ``sqlite:///PATH`` or ``postgresql://...``), its
    writes fenced by ``epoch`` when given. Raises ``UnsupportedRegistry`` for any other form and
    ``RegistryUnavailable`` (naming host:port) when a server cannot be reached."""
    url = parse_db_url(url_or_path)
    if url.kind == "postgresql":
        from .postgres import PostgresStore

        return PostgresStore(url_or_path, epoch=epoch)
    return SQLiteStore(url.target, epoch=epoch)


def open_event_store(url_or_path: str, capacity: int = 10_000) -> AnyEventStore | None:
    """The event log of the registry at ``url_or_path``: a file beside an SQLite registry
    (``<path>.events``), the ``events`` table of a Postgres one; None for ``:memory:``."""
    url = parse_db_url(url_or_path)
    if url.kind == "postgresql":
        from .pg_events import PgEventStore

        return PgEventStore(url_or_path, capacity)
    path = events_path(url.target)
    return None if path is None else EventStore(path, capacity)
