"""What journeys and segments share as drafts kept in one row each (store/journeys.py,
store/segments.py): the change mark the engine watches, and the compare-and-set that
replaces a draft only at the revision its editor read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, case, literal, select, update


def touch(table: Table, now_ms: int) -> ColumnElement[int]:
    """The row's next updated_at_ms: strictly increasing even when the clock stands still (a
    virtual clock, two changes in one millisecond), since the engine's catalog fingerprint
    sums these to notice every change. Computed by the UPDATE from the row as it is then
    (after any lock wait), not from a read made earlier, so two changes committed one after
    the other never write the same value."""
    return case((table.c.updated_at_ms >= now_ms, table.c.updated_at_ms + 1), else_=literal(now_ms))


def replace_draft(
    conn: Connection,
    table: Table,
    workspace_id: str,
    item_id: str,
    changes: dict[str, Any],
    *,
    archived: str,
    expected_revision: int | None,
    now_ms: int,
) -> Any:
    """Write `changes` (the draft and its name) and raise the draft's revision, in one UPDATE
    guarded by the revision when one is expected. None when it went in; otherwise the row's
    (status, draft_revision) now: it changed between the caller's read and the UPDATE (which,
    on PostgreSQL, waited for that change to commit and then found it): archived, or another
    draft saved. The caller says which, in its own error."""
    this = (table.c.workspace_id == workspace_id, table.c.id == item_id)
    guard = [table.c.status != archived]
    if expected_revision is not None:
        guard.append(table.c.draft_revision == expected_revision)
    done = conn.execute(
        update(table)
        .where(*this, *guard)
        .values(**changes, draft_revision=table.c.draft_revision + 1, updated_at_ms=touch(table, now_ms))
    )
    if done.rowcount:
        return None
    return conn.execute(select(table.c.status, table.c.draft_revision).where(*this)).one()
