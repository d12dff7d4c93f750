"""Push targets: Web Push subscriptions and mobile device tokens; the dev inbox keeps pushes too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("endpoint_hash", sa.String(64), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column("user_agent", sa.Text),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "endpoint_hash", name="pk_push_subscriptions"),
    )
    op.create_index("ix_push_subscriptions_profile", "push_subscriptions", ["profile_id"])
    op.create_table(
        "device_tokens",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("token", sa.String(512), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("provider", sa.String(10), nullable=False),
        sa.Column("platform", sa.String(20)),
        sa.Column("app_id", sa.String(200)),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "token", name="pk_device_tokens"),
    )
    op.create_index("ix_device_tokens_profile", "device_tokens", ["profile_id"])
    op.add_column("inbox_messages", sa.Column("channel", sa.String(10), nullable=False, server_default="email"))


def downgrade() -> None:
    with op.batch_alter_table("inbox_messages") as batch:
        batch.drop_column("channel")
    op.drop_index("ix_device_tokens_profile", table_name="device_tokens")
    op.drop_table("device_tokens")
    op.drop_index("ix_push_subscriptions_profile", table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
