"""The store suite runs on both backends: ``store`` and ``make_store`` are parametrised over
``sqlite`` (a temp file) and ``postgres`` (a real server started once for the session from
Debian's postgresql package; tests/pg.py). Without the server binaries the postgres half skips,
saying how to install them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pg import PostgresServer

from scheduler.store import open_store

BACKENDS = ["sqlite", "postgres"]
#: Emptied before each test that uses the session's database.
TABLES = "jobs, transitions, reports, checkpoints, attempts, requests, meta, events"
_databases = itertools.count()


@pytest.fixture
def fresh_pg_url(pg_server: PostgresServer) -> str:
    """The URL of a new, empty database (nothing migrated yet)."""
    return pg_server.create_database(f"fresh_{next(_databases)}")


@pytest.fixture(scope="session")
def _pg_registry(pg_server: PostgresServer) -> Iterator[tuple[str, sa.Engine]]:
    url = pg_server.create_database("registry")
    open_store(url).close()  # migrated once
    # No pool: a test may restart the server, and a pooled connection would not survive it.
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.pool.NullPool)
    yield url, engine
    engine.dispose()


@pytest.fixture
def pg_url(_pg_registry: tuple[str, sa.Engine]) -> str:
    """The session's migrated registry database, emptied (and its lease freed) for this test."""
    url, engine = _pg_registry
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql("UPDATE lease SET holder = NULL, epoch = 0, expires_at = 0")
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registry(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The location of an empty registry of this test's backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "trainq.db")


@pytest.fixture
def make_store(registry: str) -> Iterator[Callable[..., Any]]:
    """Factory: a new store object on this test's registry (two calls: two competing schedulers)."""
    stores: list[Any] = []

    def make(**kwargs: Any) -> Any:
        store = open_store(registry, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    """A store on an empty registry, of each backend in turn."""
    return make_store()
