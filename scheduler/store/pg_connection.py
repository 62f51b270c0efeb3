"""The Postgres registry's connections: one engine per store, reads in autocommit, writes in
one transaction each (fenced by the lease's epoch when the store holds one), and every way of
losing the server turned into ``RegistryUnavailable`` naming ``host:port``, never the password.

A connection that met a dead server is dropped, so the first call after the server returns
reconnects by itself. A call whose first statement met a
connection that died while idle (the server restarted between two calls) runs once more on a
fresh one: nothing of it had reached the server. Any other failure is not retried here: the
caller hears ``RegistryUnavailable``, and the write did not happen or, if the server died during
its COMMIT, may have (the idempotency keys make a retried verb act once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from ..errors import RegistryUnavailable
from .lease import check_fence
from .pg_schema import lease
from .url import RegistryURL, parse_db_url

T = TypeVar("T")
_LEADER = lease.c.name == "leader"
_LEASE_FOR_SHARE = sa.select(lease.c.epoch, lease.c.holder).where(_LEADER).with_for_update(read=True)
#: ``Connection.info`` key of the current try's count of statements run.
_SENT = "trainq_sent"


def connect(url: RegistryURL) -> sa.Engine:
    """An engine for ``url`` that has reached the server once (``RegistryUnavailable`` if it cannot)."""
    # hide_parameters: a failed statement's message never carries the values it bound.
    engine = sa.create_engine(url.target, pool_size=2, max_overflow=8, hide_parameters=True,
                              connect_args={"connect_timeout": 5, "application_name": "trainq"})
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as e:
        engine.dispose()
        raise unavailable(url, e) from None
    return engine


def unavailable(url: RegistryURL, error: sa.exc.DBAPIError) -> RegistryUnavailable:
    # The driver's first line says why (refused, timed out, auth failed); it names host and port
    # but never the password. Masked anyway, in case a server echoes its connection string.
    why = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
    password = sa.make_url(url.target).password
    if password:
        why = why.replace(password, "***")
    return RegistryUnavailable(url.where, why)


class PgConnection:
    """The engine and transactions ``PostgresStore`` and ``PgEventStore`` are built on."""

    def __init__(self, url: str, epoch: int | None = None) -> None:
        self.url = parse_db_url(url)
        if self.url.kind != "postgresql":
            raise ValueError(f"not a Postgres URL: {self.url.shown}")
        #: The lease epoch writes are fenced by (None: unfenced).
        self._fence = epoch
        self._engine = connect(self.url)
        sa.event.listen(self._engine, "after_cursor_execute", _count_sent)
        # One connection for reads (autocommit: no BEGIN/ROLLBACK round trips around a SELECT)
        # and one for writes, held rather than checked out of the pool per call: a checkout and
        # its return cost more than the query (a get took 380 µs that way, 110 µs over raw psycopg).
        self._held: dict[bool, sa.Connection] = {}
        # The actor serialises calls, but a stray thread must not interleave on a held connection.
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            for conn in self._held.values():
                conn.close()
            self._held.clear()
            self._engine.dispose()

    def _connection(self, read: bool) -> sa.Connection:
        conn = self._held.get(read)
        if conn is None or conn.invalidated or conn.closed:
            if conn is not None:
                conn.close()
            conn = self._engine.connect()
            if read:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            self._held[read] = conn
        return conn

    # -- transactions ---------------------------------------------------------------------------
    def _guarded(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            raise unavailable(self.url, e) from None
        except sa.exc.DBAPIError as e:
            if e.connection_invalidated:
                raise unavailable(self.url, e) from None
            raise

    def ping(self) -> None:
        """One round trip to the server: ``RegistryUnavailable`` when it cannot be reached (``/health``)."""
        self._read(lambda c: c.execute(sa.text("SELECT 1")).one())

    def _read(self, work: Callable[[sa.Connection], T]) -> T:
        """Run a read (autocommit: no BEGIN/ROLLBACK round trips around it)."""
        return self._run(work, read=True)

    def _all(self, query: sa.Executable) -> list[Any]:
        """Every row a read returns."""
        return list(self._read(lambda c: c.execute(query).all()))

    def _first(self, query: sa.Executable) -> Any:
        """The first row a read returns, or None."""
        return self._read(lambda c: c.execute(query).first())

    def _write(self, work: Callable[[sa.Connection], T], durable: bool = True) -> T:
        """Run ``work`` in one transaction, fenced by the lease's epoch when set. ``durable=False``
        commits without waiting for the WAL flush (reports, request answers: as ``SQLiteStore`` does)."""
        return self._run(work, fenced=True, durable=durable)

    def _unfenced(self, work: Callable[[sa.Connection], T]) -> T:
        """A transaction of the lease itself: never fenced (a deposed store may try to take it again)."""
        return self._run(work)

    def _run(self, work: Callable[[sa.Connection], T], read: bool = False, fenced: bool = False,
             durable: bool = True) -> T:
        for retry in (False, True):
            sent = [0]  # statements of this try that the server ran (``_count_sent``)
            try:
                with self._lock:
                    conn = self._connection(read)
                    conn.info[_SENT] = sent
                    if read:
                        return work(conn)
                    with conn.begin():
                        if fenced and self._fence is not None:
                            # FOR SHARE: a takeover's FOR UPDATE waits for this commit, and fences the next.
                            row = conn.execute(_LEASE_FOR_SHARE).one()
                            check_fence(self._fence, row.epoch, row.holder)
                        if not durable:
                            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                        return work(conn)
            except sa.exc.DBAPIError as e:
                # A held connection that died while idle (a server restart) fails on its first
                # statement: nothing of this call reached the server, so it goes once more, on a
                # fresh connection (``_connection`` replaces an invalidated one).
                if not retry and e.connection_invalidated and sent[0] == 0:
                    continue
                if isinstance(e, (sa.exc.OperationalError, sa.exc.InterfaceError)) or e.connection_invalidated:
                    raise unavailable(self.url, e) from None
                raise
        raise AssertionError("unreachable: the second try returns or raises")


def _count_sent(conn: sa.Connection, *_: Any) -> None:
    sent = conn.info.get(_SENT)
    if sent is not None:
        sent[0] += 1
