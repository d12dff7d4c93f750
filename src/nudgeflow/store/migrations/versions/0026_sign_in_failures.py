"""Failed console sign-ins, counted in the database so that the limit (5 per email, 30 per
client address in 15 minutes) holds across every serving process (store/sign_in_failures.py).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("failed_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sign_in_failures_key", "sign_in_failures", ["key_digest", "failed_at_ms"])
    op.create_index("ix_sign_in_failures_time", "sign_in_failures", ["failed_at_ms"])


def downgrade() -> None:
    op.drop_table("sign_in_failures")
