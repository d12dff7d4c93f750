"""The partitioned event log (issue 17, docs/partitions.md): each event the engine decides
gets a partition and an offset within it, dense and in commit order (store/partition_log.py).

- `partition_heads`: the last offset given in each partition (rows 0..63, DEFAULT_PARTITIONS).
- `events.partition`, `events.part_offset`, unique together. The events the engine has not
  decided yet (seq after the engine cursor "events") get theirs here, in seq order, except
  the engine's own Segment Entered / Exited, which are never decided again. Older rows keep
  NULL: no partition cursor starts before the migration's heads.
- `timers.partition`, the partition of the person a timer belongs to (NOT NULL; existing rows
  are computed here), and the index a partition's worker claims its due timers by.
- `profile_merges.from_partition` / `from_offset`: where the merged-away profile's events
  ended when the merge was made (NULL for merges made before), and an index on
  `from_profile_id`: the engine looks up each batch's profiles there (were they merged away?).

The backfills go in chunks, so that a large log is not read into memory at once.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from collections import Counter

import sqlalchemy as sa
from alembic import op

from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.events import OWN_SEGMENT_PREFIX
from nudgeflow.model.partitions import DEFAULT_PARTITIONS, partition_of

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

CHUNK = 5000


def upgrade() -> None:
    op.create_table(
        "partition_heads",
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("head", sa.BigInteger, nullable=False),
    )
    op.add_column("events", sa.Column("partition", sa.SmallInteger))
    op.add_column("events", sa.Column("part_offset", sa.BigInteger))
    op.add_column("timers", sa.Column("partition", sa.SmallInteger))
    op.add_column("profile_merges", sa.Column("from_partition", sa.Integer))
    op.add_column("profile_merges", sa.Column("from_offset", sa.BigInteger))
    op.create_index("ix_profile_merges_from", "profile_merges", ["from_profile_id"])
    conn = op.get_bind()
    heads = _backfill_events(conn)
    op.bulk_insert(
        sa.table("partition_heads", sa.column("partition", sa.Integer), sa.column("head", sa.BigInteger)),
        [{"partition": p, "head": heads[p]} for p in range(DEFAULT_PARTITIONS)],
    )
    op.create_index("uq_events_partition_offset", "events", ["partition", "part_offset"], unique=True)
    _backfill_timers(conn)
    with op.batch_alter_table("timers") as batch:
        batch.alter_column("partition", existing_type=sa.SmallInteger, nullable=False)
        batch.create_index("ix_timers_partition_due", ["partition", "due_at_ms"])


def _backfill_events(conn: sa.Connection) -> Counter[int]:
    """Partition and offset for the undecided tail of the log, in seq order; the heads after."""
    cursor = conn.execute(sa.text("SELECT position FROM engine_cursors WHERE name = 'events'")).scalar()
    after = int(cursor or 0)
    heads: Counter[int] = Counter()
    select = sa.text(
        "SELECT seq, workspace_id, profile_id, event, message_id FROM events WHERE seq > :after ORDER BY seq LIMIT :n"
    )
    update = sa.text("UPDATE events SET partition = :p, part_offset = :o WHERE seq = :seq")
    while True:
        rows = conn.execute(select, {"after": after, "n": CHUNK}).all()
        if not rows:
            return heads
        updates = []
        for seq, workspace_id, profile_id, event, message_id in rows:
            if event in (SEGMENT_ENTERED, SEGMENT_EXITED) and message_id.startswith(OWN_SEGMENT_PREFIX):
                continue  # the engine's own: never decided again, never in a partition
            p = partition_of(workspace_id, profile_id)
            heads[p] += 1
            updates.append({"p": p, "o": heads[p], "seq": seq})
        if updates:
            conn.execute(update, updates)
        after = rows[-1][0]


def _backfill_timers(conn: sa.Connection) -> None:
    """Each timer's partition, one person at a time, a chunk of people per round."""
    select = sa.text(
        "SELECT DISTINCT workspace_id, profile_id FROM timers WHERE partition IS NULL ORDER BY profile_id LIMIT :n"
    )
    update = sa.text("UPDATE timers SET partition = :p WHERE workspace_id = :w AND profile_id = :pid")
    while True:
        people = conn.execute(select, {"n": CHUNK}).all()
        if not people:
            return
        conn.execute(update, [{"p": partition_of(w, pid), "w": w, "pid": pid} for w, pid in people])


def downgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.drop_index("ix_timers_partition_due")
        batch.drop_column("partition")
    with op.batch_alter_table("profile_merges") as batch:
        batch.drop_index("ix_profile_merges_from")
        batch.drop_column("from_offset")
        batch.drop_column("from_partition")
    op.drop_index("uq_events_partition_offset", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("part_offset")
        batch.drop_column("partition")
    op.drop_table("partition_heads")
