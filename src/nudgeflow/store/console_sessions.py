"""Console sessions: the cookie holds a random token, the table its SHA-256 (the id), with
the CSRF token the session's pages send back, when it was last used and when it was revoked.

A session is live while it is not revoked and was used within the idle limit (a setting:
NUDGEFLOW_CONSOLE_IDLE_MINUTES). Revoked rows are the server-side revocation list; rows
long past their idle limit are deleted by `forget_stale_sessions`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, or_, select, update

from nudgeflow.store.schema import api_keys, console_sessions, console_users

# last_seen_ms is written at most this often per session: a page load that reads the
# session writes nothing, and the idle limit is still honoured to within a minute.
TOUCH_EVERY_MS = 60_000


@dataclass(frozen=True)
class LiveSession:
    session_id: str
    workspace_id: str
    csrf_token: str
    user_id: str | None  # None: opened with an admin token
    email: str | None
    role: str  # a user's current role (a change applies at once); admin for an admin token
    admin_key_hint: str | None
    last_seen_ms: int


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value: shown to the browser once, never stored
    csrf_token: str


def session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    conn: Connection,
    workspace_id: str,
    now_ms: int,
    *,
    user_id: str | None = None,
    admin_key_hash: str | None = None,
    admin_key_hint: str | None = None,
) -> NewSession:
    if (user_id is None) == (admin_key_hash is None):
        raise ValueError("a session belongs to a user or to an admin token")
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        insert(console_sessions).values(
            id=session_id(token),
            workspace_id=workspace_id,
            user_id=user_id,
            admin_key_hash=admin_key_hash,
            admin_key_hint=admin_key_hint,
            csrf_token=csrf,
            created_at_ms=now_ms,
            last_seen_ms=now_ms,
        )
    )
    return NewSession(token, csrf)


def live_session(conn: Connection, token: str, now_ms: int, idle_ms: int) -> LiveSession | None:
    """The session this cookie token opens, or None (unknown, revoked, idle too long, its
    user disabled, or its admin token gone)."""
    s, u = console_sessions.c, console_users.c
    row = conn.execute(
        select(
            s.id,
            s.workspace_id,
            s.csrf_token,
            s.user_id,
            s.admin_key_hash,
            s.admin_key_hint,
            s.last_seen_ms,
            u.email,
            u.role,
            u.disabled_at_ms,
        )
        .select_from(console_sessions.outerjoin(console_users, u.id == s.user_id))
        .where(s.id == session_id(token), s.revoked_at_ms.is_(None), s.last_seen_ms > now_ms - idle_ms)
    ).first()
    if row is None:
        return None
    if row.user_id is not None:
        if row.email is None or row.disabled_at_ms is not None:
            return None
        role = str(row.role)
    else:
        key = conn.execute(
            select(api_keys.c.workspace_id).where(api_keys.c.key_hash == row.admin_key_hash, api_keys.c.kind == "admin")
        ).scalar_one_or_none()
        if key != row.workspace_id:
            return None
        role = "admin"
    return LiveSession(
        row.id, row.workspace_id, row.csrf_token, row.user_id, row.email, role, row.admin_key_hint, row.last_seen_ms
    )


def touch(conn: Connection, sid: str, now_ms: int) -> None:
    conn.execute(
        update(console_sessions)
        .where(console_sessions.c.id == sid, console_sessions.c.revoked_at_ms.is_(None))
        .values(last_seen_ms=now_ms)
    )


def revoke_session(conn: Connection, token: str, now_ms: int) -> bool:
    done = conn.execute(
        update(console_sessions)
        .where(console_sessions.c.id == session_id(token), console_sessions.c.revoked_at_ms.is_(None))
        .values(revoked_at_ms=now_ms)
    )
    return bool(done.rowcount)


def revoke_user_sessions(conn: Connection, user_id: str, now_ms: int) -> int:
    done = conn.execute(
        update(console_sessions)
        .where(console_sessions.c.user_id == user_id, console_sessions.c.revoked_at_ms.is_(None))
        .values(revoked_at_ms=now_ms)
    )
    return int(done.rowcount or 0)


def forget_stale_sessions(conn: Connection, now_ms: int, keep_ms: int) -> int:
    """Delete sessions revoked or idle for longer than keep_ms (they can never open again)."""
    s = console_sessions.c
    done = conn.execute(
        delete(console_sessions).where(or_(s.last_seen_ms < now_ms - keep_ms, s.revoked_at_ms < now_ms - keep_ms))
    )
    return int(done.rowcount or 0)
