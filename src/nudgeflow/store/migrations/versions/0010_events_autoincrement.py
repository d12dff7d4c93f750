"""SQLite: the event log's seq is never reused, even after the newest events are erased.

Without AUTOINCREMENT, SQLite gives a new row the highest rowid + 1: erasing the person
whose events were the newest let the next events take seqs the engine's cursor had
already passed, and they were never decided. AUTOINCREMENT keeps the highest seq ever
given in sqlite_sequence. PostgreSQL's sequence never reuses a value: nothing to do there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Rebuilds the table (rows, indexes and the unique key come along); the copy's explicit
    # seqs set sqlite_sequence to the highest one.
    with op.batch_alter_table("events", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    # Nothing: AUTOINCREMENT is harmless to the earlier revisions, and taking it away
    # would bring back the reuse this revision stops.
    pass
