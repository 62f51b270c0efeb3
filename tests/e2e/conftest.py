"""Fixtures of the end-to-end tests on a real Ray that also need a real Postgres (the registry of
the schedulers that must outlive a head node)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from pg import INSTALL_HINT, PostgresServer, bin_dir

_names = itertools.count()


@pytest.fixture(scope="session")
def e2e_pg() -> Iterator[PostgresServer]:
    """One local Postgres server for the session's end-to-end tests (skips where none can be had)."""
    if bin_dir() is None:
        pytest.skip(INSTALL_HINT)
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def new_pg_registry(e2e_pg: PostgresServer) -> Callable[[], str]:
    """Factory: the URL of a new, empty Postgres database for a registry (with a password in the
    URL, which nothing may show)."""
    def make() -> str:
        name = f"e2e_{next(_names)}"
        e2e_pg.create_database(name)
        return e2e_pg.url(name, password="s3cret-pw")

    return make
