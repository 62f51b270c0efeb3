"""Bring a Postgres registry's schema up to date with Alembic (``pg_migrations/``).

Alembic rather than the SQLite store's numbered scripts: on a server the schema is shared by
every scheduler that points at it, and Alembic keeps its revision in the database, runs each
revision in a transaction (Postgres has transactional DDL) and is what operators already know
(``alembic history`` / ``current`` work on the same folder). See docs/design.md, "Registry".
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

SCRIPTS = str(Path(__file__).with_name("pg_migrations"))


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPTS)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this trainq knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Apply every revision the database lacks, in one transaction; refuses a database whose
    revision this trainq does not know (a newer trainq migrated it)."""
    revision = current(engine)
    script = ScriptDirectory.from_config(_config())
    if revision is not None and revision not in {r.revision for r in script.walk_revisions()}:
        raise RuntimeError(f"the registry's schema is at revision {revision}, newer than this trainq"
                           f" ({head()}); upgrade trainq")
    if revision == head():
        return  # the common start: nothing to do, and no Alembic environment to load
    with engine.connect() as conn:
        command.upgrade(_config(conn), "head")
        conn.commit()
