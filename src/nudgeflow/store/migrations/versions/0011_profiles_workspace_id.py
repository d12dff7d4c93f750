"""profiles (workspace_id, id): a backfill walks a workspace's people in id order.

Without it, each backfill batch (`WHERE workspace_id = ? AND id > ? ORDER BY id LIMIT n`)
read every profile of the workspace through the (workspace_id, user_id) index and sorted
them: quadratic in the people, 113 s instead of about 35 s for 100,000 profiles.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_profiles_workspace_id", "profiles", ["workspace_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_profiles_workspace_id", table_name="profiles")
