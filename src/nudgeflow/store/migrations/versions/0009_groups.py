"""Groups (Segment `group` calls): each group's traits, merged from every call that named it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("workspace_id", sa.String(40), nullable=False),
        sa.Column("id", sa.String(512), nullable=False),  # the groupId, as Segment's spec allows
        sa.Column("traits", sa.Text, nullable=False),  # JSON object, merged call by call
        sa.Column("traits_at_ms", sa.BigInteger, nullable=False),  # event time of the latest call merged
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_groups"),
    )


def downgrade() -> None:
    op.drop_table("groups")
