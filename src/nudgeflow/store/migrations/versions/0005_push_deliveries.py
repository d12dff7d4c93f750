"""Push deliveries: the targets that took a push message whose other targets are retried.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_deliveries",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("delivered_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "message_key", "target_key", name="pk_push_deliveries"),
    )
    op.create_index("ix_push_deliveries_profile", "push_deliveries", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_push_deliveries_profile", table_name="push_deliveries")
    op.drop_table("push_deliveries")
