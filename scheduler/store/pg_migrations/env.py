"""Alembic's environment for the Postgres registry: runs the migrations on the connection that
``scheduler.store.pg_migrate.upgrade`` hands over (trainq never lets Alembic open its own, so the
URL and its password stay in one place)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from scheduler.store.pg_schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
with context.begin_transaction():
    # Two schedulers starting at once against a new database must not both create the tables:
    # the first takes this lock (held to its commit), the second then finds the schema current.
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(7420291)"))
    context.run_migrations()
