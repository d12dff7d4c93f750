"""A revision number on each journey's and segment's draft, raised by every change to the
draft: what the admin API's ETag and `If-Match` compare, so that two people editing the
same draft at once cannot overwrite each other unknowingly (store/journeys.py, store/segments.py).

Drafts stored before start at revision 1.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

TABLES = ("journeys", "segments")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("draft_revision", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("draft_revision")
