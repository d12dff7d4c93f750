"""Finding a person by what a console user knows: a userId, an anonymousId, an email address
or a profile id, exactly or by its beginning.

Each kind is one bounded query on an index: profile ids on the primary key, userIds and
anonymousIds on identities' primary key (workspace_id, key), email addresses on
ix_profiles_email (migration 0022). A prefix is a range of an index where the index orders
text by code point (SQLite always; PostgreSQL with the C or C.UTF-8 collation), as a prefix
means; otherwise a LIKE, which the email index serves (text_pattern_ops), while an id prefix
then reads the workspace's identities in the primary key's order until it has enough (a
database with a language's collation: documented in docs/console.md).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, select, text

from nudgeflow.store import sql
from nudgeflow.store.schema import EmailTrait, identities, profiles

LIMIT = 20
MAX_QUERY = 512


# Collations that order text by code point, as a byte-wise prefix range needs.
CODE_POINT_COLLATIONS = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})


def orders_by_code_point(conn: Connection) -> bool:
    """Whether the database's own collation orders text by code point (its indexes on text
    columns then serve a prefix as a range)."""
    if not sql.is_postgres(conn):
        return True
    # As JSON: the provider column is PostgreSQL 15's; an older server has only libc's.
    doc = conn.execute(text("SELECT to_jsonb(d) FROM pg_database d WHERE d.datname = current_database()")).scalar_one()
    provider = doc.get("datlocprovider", "c")
    if provider == "b":  # PostgreSQL 17's builtin provider: C and C.UTF-8, both by code point
        return True
    return provider == "c" and doc.get("datcollate") in CODE_POINT_COLLATIONS


def _prefix(conn: Connection, column: Any, prefix: str, *, by_range: bool) -> ColumnElement[bool]:
    """`column` begins with `prefix` (not empty): a range of its index when `by_range` (the
    index orders by code point), else a LIKE."""
    if not by_range:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%", escape="\\")
    # Every text that begins with prefix sorts at or after it and before the prefix with its
    # last character's successor, in code point order (UTF-8 bytes compare the same).
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else None
    low = column >= prefix
    return low if upper is None else low & (column < upper)


def profile_by_email(conn: Connection, workspace_id: str, address: str) -> str | None:
    """The workspace's profile whose `email` trait is `address` (without case), on
    ix_profiles_email; of several, the most recently updated. None when there is none."""
    found = conn.execute(
        select(profiles.c.id)
        .where(profiles.c.workspace_id == workspace_id, EmailTrait() == address.strip().lower())
        .order_by(profiles.c.updated_at_ms.desc())
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else str(found)


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
    by_range = orders_by_code_point(conn)
    for kind, how in (("u", "userId"), ("a", "anonymousId")):
        if len(found) >= limit:
            break
        rows = conn.execute(
            select(i.profile_id, i.key)
            .where(i.workspace_id == workspace_id, _prefix(conn, i.key, f"{kind}:{q}", by_range=by_range))
            .order_by(i.key)
            .limit(limit)
        ).all()
        add([(pid, key[2:]) for pid, key in rows], how)
    if len(found) < limit:
        by_email = select(p.id, EmailTrait()).where(
            p.workspace_id == workspace_id, _prefix(conn, EmailTrait(), email, by_range=not sql.is_postgres(conn))
        )
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
