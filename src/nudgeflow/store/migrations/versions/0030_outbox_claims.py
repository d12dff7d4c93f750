"""Outbox claims apart from attempts: `claims`, how many times a dispatcher has leased the
row (the lease's token: it changes on every claim), and `lost_claims`, how many of those
leases ran out with no outcome recorded (their dispatcher stopped). `attempts` now counts
tries only, so a crash loop of dispatchers no longer uses up a message's attempts
(store/outbox.py, runtime/dispatcher.py).

Rows stored before start at 0 for both: a row leased at the upgrade (its attempts already
counted at its claim, as before) is then taken over by the lease token of its next claim.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

COLUMNS = ("claims", "lost_claims")


def upgrade() -> None:
    # NOT NULL with a constant default: a plain ALTER TABLE on both databases (no copy of
    # the outbox; PostgreSQL 11+ does not rewrite it either).
    for name in COLUMNS:
        op.add_column("outbox", sa.Column(name, sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
