"""Workspaces, keys, profiles, identities and the event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("hint", sa.String(12), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_api_keys_workspace", "api_keys", ["workspace_id"])
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(512)),
        sa.Column("traits", sa.Text, nullable=False),
        sa.Column("trait_errors", sa.Text),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_profiles_workspace_user", "profiles", ["workspace_id", "user_id"])
    op.create_table(
        "identities",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("key", sa.String(520), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "key", name="pk_identities"),
    )
    op.create_index("ix_identities_profile", "identities", ["profile_id"])
    op.create_table(
        "profile_merges",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("from_profile_id", sa.String(40), nullable=False),
        sa.Column("into_profile_id", sa.String(40), nullable=False),
        sa.Column("merged_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "from_profile_id", name="pk_profile_merges"),
    )
    op.create_index("ix_profile_merges_into", "profile_merges", ["into_profile_id"])
    op.create_table(
        "events",
        sa.Column("seq", SeqType, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("message_id", sa.String(512), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("event", sa.String(512)),
        sa.Column("user_id", sa.String(512)),
        sa.Column("anonymous_id", sa.String(512)),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("received_at_ms", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.UniqueConstraint("workspace_id", "message_id", name="uq_events_message"),
    )
    op.create_index("ix_events_profile_time", "events", ["profile_id", "timestamp_ms"])


def downgrade() -> None:
    for table in ("events", "profile_merges", "identities", "profiles", "api_keys", "workspaces"):
        op.drop_table(table)
