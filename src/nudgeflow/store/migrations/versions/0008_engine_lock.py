"""One engine per database: who holds the engine lock, the event cursor's open gaps, and
which outbox rows are leased.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_lock",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
    )
    # Nullable columns: a plain ALTER TABLE on both databases (no copy of the outbox).
    op.add_column("engine_cursors", sa.Column("gaps", sa.Text))
    op.add_column("outbox", sa.Column("leased_until_ms", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("leased_until_ms")
    with op.batch_alter_table("engine_cursors") as batch:
        batch.drop_column("gaps")
    op.drop_table("engine_lock")
