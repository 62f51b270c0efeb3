"""The worker count of a job's current attempt (elastic jobs change size between attempts).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("workers", sa.Integer))


def downgrade() -> None:
    op.drop_column("jobs", "workers")
