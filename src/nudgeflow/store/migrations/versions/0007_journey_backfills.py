"""Journey backfills: publishing a journey looks at the people already in the database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journey_backfills",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("journey_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("position", sa.String(40), nullable=False),
        sa.Column("profiles_done", sa.BigInteger, nullable=False),
        sa.Column("entered", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger),
        sa.PrimaryKeyConstraint("workspace_id", "journey_id", "version", name="pk_journey_backfills"),
    )
    op.create_index("ix_journey_backfills_status", "journey_backfills", ["status"])


def downgrade() -> None:
    op.drop_index("ix_journey_backfills_status", table_name="journey_backfills")
    op.drop_table("journey_backfills")
