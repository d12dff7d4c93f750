"""Bounce and complaint notification items already applied, by a digest of their provider's
event id (store/feedback_seen.py): a replayed webhook or a resent DSN changes nothing, where
it re-suppressed an address an operator had lifted in between.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_seen",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("seen_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "digest", name="pk_feedback_seen"),
    )
    op.create_index("ix_feedback_seen_time", "feedback_seen", ["seen_at_ms"])


def downgrade() -> None:
    op.drop_table("feedback_seen")
