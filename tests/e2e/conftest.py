"""Fixtures of the end-to-end tests on a real Ray that also need a real Postgres (the registry of
the schedulers that must outlive a head node)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from pg import PostgresServer

_names = itertools.count()


@pytest.fixture
def new_pg_registry(pg_server: PostgresServer) -> Callable[[], str]:
    """Factory: the URL of a new, empty Postgres database for a registry (with a password in the
    URL, which nothing may show)."""
    def make() -> str:
        name = f"e2e_{next(_names)}"
        pg_server.create_database(name)
        return pg_server.url(name, password="s3cret-pw")

    return make
