"""Partitions of the distributed runtime (issue 17): the engine workers, a lease with a
fencing epoch per partition, and each partition's position in the event stream
(store/partition_leases.py).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "engine_workers",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at_ms", sa.BigInteger, nullable=False),
        sa.Column("stopped_at_ms", sa.BigInteger),
    )
    op.create_table(
        "partition_leases",
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner", sa.String(80)),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=False),
        sa.Column("moved_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "partition_positions",
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stream_seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("partition_positions")
    op.drop_table("partition_leases")
    op.drop_table("engine_workers")
