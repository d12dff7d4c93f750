"""Finding a person by what a console user knows: a userId, an anonymousId, an email address
or a profile id, exactly or by its beginning.

Each kind is one bounded query on an index: profile ids on the primary key, userIds and
anonymousIds on identities' primary key (workspace_id, key), email addresses on
ix_profiles_email (migration 0022). A prefix is a range of the index on SQLite (which
compares text byte by byte, as a prefix means) and a LIKE on PostgreSQL (whose collation
may order text otherwise; the email index is built with text_pattern_ops for it).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, select

from nudgeflow.store import sql
from nudgeflow.store.schema import EmailTrait, identities, profiles

LIMIT = 20
MAX_QUERY = 512


def _prefix(conn: Connection, column: Any, prefix: str) -> ColumnElement[bool]:
    """`column` begins with `prefix` (not empty), in a form the column's index serves."""
    if sql.is_postgres(conn):
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%", escape="\\")
    # Every text that begins with prefix sorts at or after it and before the prefix with its
    # last character's successor (SQLite compares UTF-8 bytes, which keeps code point order).
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else None
    low = column >= prefix
    return low if upper is None else low & (column < upper)


def search_people(conn: Connection, workspace_id: str, query: str, limit: int = LIMIT) -> list[dict[str, Any]]:
    """The workspace's people matching `query`: exact matches first (profile id, userId,
    anonymousId, email), then those it begins, each person once, at most `limit`. Each:
    {"profile_id", "user_id", "email", "matched"} where matched says by what."""
    q = query.strip()[:MAX_QUERY]
    if not q:
        return []
    found: dict[str, str] = {}  # profile id -> what matched, first match wins

    def add(pairs: Any, how: str) -> None:
        for pid, value in pairs:
            if len(found) < limit and pid not in found:
                found[pid] = f"{how} {value}"

    p, i = profiles.c, identities.c
    exact_id = conn.execute(select(p.id).where(p.workspace_id == workspace_id, p.id == q)).scalar_one_or_none()
    if exact_id is not None:
        add([(exact_id, q)], "profile id")
    for kind, how in (("u", "userId"), ("a", "anonymousId")):
        rows = conn.execute(
            select(i.profile_id, i.key).where(i.workspace_id == workspace_id, i.key == f"{kind}:{q}")
        ).all()
        add([(pid, key[2:]) for pid, key in rows], how)
    email = q.lower()
    rows = conn.execute(
        select(p.id, EmailTrait()).where(p.workspace_id == workspace_id, EmailTrait() == email).limit(limit)
    ).all()
    add(rows, "email")
    for kind, how in (("u", "userId"), ("a", "anonymousId")):
        if len(found) >= limit:
            break
        rows = conn.execute(
            select(i.profile_id, i.key)
            .where(i.workspace_id == workspace_id, _prefix(conn, i.key, f"{kind}:{q}"))
            .order_by(i.key)
            .limit(limit)
        ).all()
        add([(pid, key[2:]) for pid, key in rows], how)
    if len(found) < limit:
        by_email = select(p.id, EmailTrait()).where(p.workspace_id == workspace_id, _prefix(conn, EmailTrait(), email))
        if not sql.is_postgres(conn):  # the index's order: free on SQLite; PostgreSQL's pattern index has none
            by_email = by_email.order_by(EmailTrait())
        add(sorted(conn.execute(by_email.limit(limit)).tuples().all(), key=lambda r: str(r[1])), "email")
    if not found:
        return []
    shown = {
        row.id: row
        for row in conn.execute(
            select(p.id, p.user_id, p.traits).where(p.workspace_id == workspace_id, p.id.in_(list(found)))
        )
    }
    out = []
    for pid, matched in found.items():
        row = shown.get(pid)
        if row is None:  # an identity whose profile is gone (mid-erasure): no one to show
            continue
        traits = orjson.loads(row.traits)
        mail = traits.get("email") if isinstance(traits, dict) else None
        out.append(
            {
                "profile_id": pid,
                "user_id": row.user_id,
                "email": mail if isinstance(mail, str) else None,
                "matched": matched,
            }
        )
    return out
