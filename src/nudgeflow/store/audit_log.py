"""The audit log: who changed what, when, and for documents the JSON before and after.

Written by the admin API for every successful change (web/audit.py), read newest first by
the console's /audit page, a page at a time.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, and_, insert, or_, select

from nudgeflow.store.schema import audit_log

MAX_DOCUMENT = 256_000  # bytes of one before/after kept; a larger one is cut and says so


def _document(value: Any) -> str | None:
    if value is None:
        return None
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    if len(text) > MAX_DOCUMENT:
        return orjson.dumps({"truncated": True, "bytes": len(text), "start": text[:MAX_DOCUMENT]}).decode()
    return text


def record(
    conn: Connection,
    workspace_id: str,
    actor: str,
    action: str,
    target: str,
    before: Any,
    after: Any,
    at_ms: int,
) -> None:
    conn.execute(
        insert(audit_log).values(
            workspace_id=workspace_id,
            actor=actor[:400],
            action=action[:100],
            target=target,
            before=_document(before),
            after=_document(after),
            at_ms=at_ms,
        )
    )


def entries(
    conn: Connection, workspace_id: str, *, limit: int = 50, before: tuple[int, int] | None = None
) -> tuple[list[dict[str, Any]], tuple[int, int] | None]:
    """A page of entries, newest first, and the cursor (at_ms, id) of the next page (None: last)."""
    t = audit_log.c
    query = select(audit_log).where(t.workspace_id == workspace_id)
    if before is not None:
        at, row_id = before
        query = query.where(or_(t.at_ms < at, and_(t.at_ms == at, t.id < row_id)))
    rows = conn.execute(query.order_by(t.at_ms.desc(), t.id.desc()).limit(limit + 1)).all()
    page = [
        {
            "id": r.id,
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "before": None if r.before is None else orjson.loads(r.before),
            "after": None if r.after is None else orjson.loads(r.after),
            "at_ms": r.at_ms,
        }
        for r in rows[:limit]
    ]
    cursor = (rows[limit - 1].at_ms, rows[limit - 1].id) if len(rows) > limit else None
    return page, cursor
