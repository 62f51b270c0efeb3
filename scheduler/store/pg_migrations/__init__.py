"""Alembic's migrations of the Postgres registry (``scheduler.store.pg_migrate`` runs them)."""
