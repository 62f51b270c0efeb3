"""Where the registry lives: the forms TRAINQ_DB / --db accept, the ones refused, and a password
that never shows (messages, reprs, the settings, a failed connection)."""

from __future__ import annotations

import os

import pytest
from pg import free_port

from scheduler.config import Settings
from scheduler.errors import RegistryUnavailable, UnsupportedRegistry
from scheduler.store import open_store, parse_db_url, redacted
from scheduler.store.url import MASK

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize("given, kind, target", [
    ("/var/trainq/trainq.db", "sqlite", "/var/trainq/trainq.db"),
    ("trainq.db", "sqlite", "trainq.db"),
    (":memory:", "sqlite", ":memory:"),
    ("sqlite:///rel/trainq.db", "sqlite", "rel/trainq.db"),
    ("sqlite:////abs/trainq.db", "sqlite", "/abs/trainq.db"),
    (f"postgresql://tq:{SECRET}@db.internal:6543/trainq", "postgresql",
     f"postgresql+psycopg://tq:{SECRET}@db.internal:6543/trainq"),
    ("postgres://tq@db/trainq", "postgresql", "postgresql+psycopg://tq@db/trainq"),
    ("postgresql+psycopg://tq@db/trainq?sslmode=require", "postgresql",
     "postgresql+psycopg://tq@db/trainq?sslmode=require"),
])
def test_the_accepted_forms(given, kind, target) -> None:
    url = parse_db_url(given)
    assert (url.kind, url.target) == (kind, target)
    assert SECRET not in repr(url) and SECRET not in url.shown


def test_a_server_is_named_by_host_and_port() -> None:
    assert parse_db_url(f"postgresql://tq:{SECRET}@db.internal:6543/trainq").where == "db.internal:6543"
    assert parse_db_url("postgresql://tq@db/trainq").where == "db:5432"


@pytest.mark.parametrize("given, why", [
    (f"mysql://root:{SECRET}@db/trainq", "scheme 'mysql'"),
    (f"postgres+foo://tq:{SECRET}@db/trainq", "scheme 'postgres+foo'"),
    ("sqlite://host/trainq.db", "three slashes"),
    (f"postgresql://tq:{SECRET}@db:5432/", "names no database"),
    (f"postgresql://tq:{SECRET}@db:port/trainq", "port is not a number"),
    ("  ", "empty"),
])
def test_other_forms_are_refused_naming_the_supported_ones(given, why) -> None:
    with pytest.raises(UnsupportedRegistry) as caught:
        parse_db_url(given)
    message = str(caught.value)
    assert why in message and "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in message and "sqlite:///" in message
    assert SECRET not in message and SECRET not in repr(caught.value.to_dict())


def test_an_unsupported_url_is_refused_by_the_settings_and_makes_no_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedRegistry):
        Settings().with_overrides(db_path=f"mysql://root:{SECRET}@db/trainq")
    with pytest.raises(UnsupportedRegistry):
        open_store(f"mysql://root:{SECRET}@db/trainq")
    assert os.listdir(tmp_path) == []  # before: a folder named 'mysql:' and an empty SQLite registry


def test_the_settings_keep_a_url_as_given_and_never_show_its_password() -> None:
    url = f"postgresql://tq:{SECRET}@db.internal:6543/trainq"
    settings = Settings().with_overrides(db_path=url)
    assert settings.db_path == url and SECRET not in repr(settings)
    assert Settings().with_overrides(db_path=":memory:").db_path == ":memory:"


@pytest.mark.parametrize("given, shown", [
    (f"postgresql://tq:{SECRET}@db:5432/trainq", f"postgresql://tq:{MASK}@db:5432/trainq"),
    (f"postgresql://tq@db/trainq?password={SECRET}&sslmode=require",
     f"postgresql://tq@db/trainq?password={MASK}&sslmode=require"),
    ("postgresql://tq@db/trainq", "postgresql://tq@db/trainq"),
    ("/var/trainq/trainq.db", "/var/trainq/trainq.db"),
    (f"postgresql://tq:{SECRET}@db:notaport/trainq", f"postgresql://tq:{MASK}@db:notaport/trainq"),
    (f"postgresql://tq:{SECRET}@[::1/trainq", f"postgresql://{MASK}@[::1/trainq"),  # unparseable: masked anyway
])
def test_redacted(given, shown) -> None:
    assert redacted(given) == shown


def test_an_unreachable_server_is_a_typed_error_naming_host_and_port() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnavailable) as caught:
        open_store(f"postgresql://tq:{SECRET}@127.0.0.1:{port}/trainq")
    error = caught.value
    assert f"127.0.0.1:{port}" in error.message and error.fields == {"where": f"127.0.0.1:{port}"}
    assert SECRET not in error.message and error.code == "unavailable"
    assert error.__cause__ is None and error.__suppress_context__  # no driver traceback chained to it
