"""The console's People search: an index on the lower-cased `email` trait of each profile,
per workspace (an expression of the traits document; on PostgreSQL with text_pattern_ops,
so that a prefix search uses it whatever the database's collation).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_profiles_email ON profiles"
            " (workspace_id, lower(traits::json ->> 'email') text_pattern_ops)"
        )
    else:
        op.execute("CREATE INDEX ix_profiles_email ON profiles (workspace_id, lower(json_extract(traits, '$.email')))")


def downgrade() -> None:
    op.execute("DROP INDEX ix_profiles_email")
