"""Fewer B-trees per segment change: segment_members in one (the index by profile goes, and
on SQLite the rows live in the primary key, WITHOUT ROWID), and the events' partition offsets
indexed only where there is one.

Every membership change the engine decides writes this table, in the transaction of its
batch, at a place scattered by segment and person: with the rowid table and two indexes
each change touched three B-trees, and the pages it dirtied were written out at every
commit (benchmarks/RESULTS.md, issue 14's seventh pass). Members are paged by
(workspace, segment, profile id), the primary key; a person's memberships are found by
probing that key for each segment of the workspace (store/segments.py), which only
erasures, merges and the person's page do.

The engine's own Segment Entered / Exited rows of `events` have no partition and no offset
(no partition decides them): the unique index on (partition, part_offset) held an entry of
NULLs for each; now it holds only the rows that have them, which is all its readers ask for
(a partition's events, by offset).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_COLUMNS = "workspace_id, segment_id, profile_id, since_ms"


def _create(name: str, *, with_rowid: bool) -> None:
    op.execute(
        f"CREATE TABLE {name} ("
        " workspace_id VARCHAR(40) NOT NULL,"
        " segment_id VARCHAR(80) NOT NULL,"
        " profile_id VARCHAR(40) NOT NULL,"
        " since_ms BIGINT NOT NULL,"
        " CONSTRAINT pk_segment_members PRIMARY KEY (workspace_id, segment_id, profile_id))"
        + ("" if with_rowid else " WITHOUT ROWID")
    )


def _rebuild(*, with_rowid: bool) -> None:
    """SQLite cannot change a table's rowid-ness in place: copy the rows into a new table."""
    _create("segment_members_new", with_rowid=with_rowid)
    op.execute(f"INSERT INTO segment_members_new ({_COLUMNS}) SELECT {_COLUMNS} FROM segment_members")
    op.execute("DROP TABLE segment_members")  # and its index
    op.execute("ALTER TABLE segment_members_new RENAME TO segment_members")


_LOGGED = sa.text('"partition" IS NOT NULL')


def _offsets_index(*, partial: bool) -> None:
    op.drop_index("uq_events_partition_offset", table_name="events")
    columns = ["partition", "part_offset"]
    if partial:
        op.create_index(
            "uq_events_partition_offset", "events", columns, unique=True, sqlite_where=_LOGGED, postgresql_where=_LOGGED
        )
    else:
        op.create_index("uq_events_partition_offset", "events", columns, unique=True)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=False)
    else:
        op.drop_index("ix_segment_members_profile", table_name="segment_members")
    _offsets_index(partial=True)


def downgrade() -> None:
    _offsets_index(partial=False)
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_rowid=True)
    op.create_index("ix_segment_members_profile", "segment_members", ["profile_id"])
