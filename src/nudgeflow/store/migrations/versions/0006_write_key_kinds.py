"""Write keys come in two kinds: public (browsers, apps) and server (a backend's secret).

Every write key that exists is a public one: it may have been published in a page.
Admin tokens have no write kind (NULL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("write_kind", sa.String(10), nullable=True))
    op.execute("UPDATE api_keys SET write_kind = 'public' WHERE kind = 'write'")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("write_kind")
