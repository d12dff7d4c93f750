"""Segments: definitions and their versions, the computation of an applied version over the
people already stored, who is in each segment now, and how many entered and left per day.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),  # draft | live | archived
        sa.Column("draft", sa.Text, nullable=False),
        sa.Column("live_version", sa.Integer),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_segments"),
    )
    op.create_table(
        "segment_versions",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("segment_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("published_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", "version", name="pk_segment_versions"),
    )
    op.create_table(
        "segment_applies",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("segment_id", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),  # pending | done | cancelled
        sa.Column("position", sa.String(40), nullable=False),
        sa.Column("profiles_done", sa.BigInteger, nullable=False),
        sa.Column("size", sa.BigInteger),
        sa.Column("as_of_seq", sa.BigInteger),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.Column("finished_at_ms", sa.BigInteger),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", "version", name="pk_segment_applies"),
    )
    op.create_index("ix_segment_applies_status", "segment_applies", ["status"])
    op.create_table(
        "segment_members",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("segment_id", sa.String(80), nullable=False),
        sa.Column("profile_id", sa.String(40), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", "profile_id", name="pk_segment_members"),
    )
    op.create_index("ix_segment_members_profile", "segment_members", ["profile_id"])
    op.create_table(
        "segment_daily_sizes",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("segment_id", sa.String(80), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),  # days since 1970-01-01, UTC
        sa.Column("entered", sa.BigInteger, nullable=False),
        sa.Column("exited", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "segment_id", "day", name="pk_segment_daily_sizes"),
    )


def downgrade() -> None:
    op.drop_table("segment_daily_sizes")
    op.drop_index("ix_segment_members_profile", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_index("ix_segment_applies_status", table_name="segment_applies")
    op.drop_table("segment_applies")
    op.drop_table("segment_versions")
    op.drop_table("segments")
