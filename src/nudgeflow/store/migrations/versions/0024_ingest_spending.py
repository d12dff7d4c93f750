"""The ingest rate limit shared between serving processes: each process's running total of
events admitted per workspace (store/ingest_spending.py).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_spending",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("process_id", sa.String(120), nullable=False),
        sa.Column("admitted", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "process_id", name="pk_ingest_spending"),
    )


def downgrade() -> None:
    op.drop_table("ingest_spending")
