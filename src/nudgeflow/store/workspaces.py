"""Workspaces and their keys. Keys are shown once, at creation, and stored only as digests.

A write key is `public` (published in a page or an app: assume anyone holds it) or `server`
(a backend's secret). Identity verification (ingest/verification.py) asks a public key's
requests to prove who they speak for; a server key's are trusted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select

from nudgeflow.errors import StoreError
from nudgeflow.store.schema import api_keys, workspaces
from nudgeflow.store.vapid import ensure_vapid_keys

WRITE = "write"
ADMIN = "admin"
PUBLIC = "public"  # write kinds
SERVER = "server"
WRITE_KINDS = (PUBLIC, SERVER)
_PREFIX = {PUBLIC: "wk_", SERVER: "sk_"}  # tells at a glance which kind was pasted where


class KeyProblem(StoreError, ValueError):
    """A key operation that cannot be done, with the reason."""


@dataclass(frozen=True)
class NewWorkspace:
    workspace_id: str
    name: str
    write_key: str
    admin_token: str


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or not re.match(r"^[\w .\-]+$", name):
        raise ValueError("a workspace name is 1 to 200 letters, digits, spaces, dots, dashes or underscores")
    return name


def create_workspace(conn: Connection, name: str, now_ms: int) -> NewWorkspace:
    name = validate_name(name)
    workspace_id = "ws_" + uuid.uuid4().hex[:16]
    write_key = "wk_" + secrets.token_urlsafe(24)
    admin_token = "nfa_" + secrets.token_urlsafe(32)
    conn.execute(insert(workspaces).values(id=workspace_id, name=name, created_at_ms=now_ms))
    add_key(conn, workspace_id, WRITE, write_key, now_ms, write_kind=PUBLIC)
    add_key(conn, workspace_id, ADMIN, admin_token, now_ms)
    ensure_vapid_keys(conn, workspace_id, now_ms)  # Web Push: browsers subscribe with its public key
    return NewWorkspace(workspace_id, name, write_key, admin_token)


def add_key(
    conn: Connection, workspace_id: str, kind: str, key: str, now_ms: int, *, write_kind: str | None = None
) -> None:
    if kind == WRITE and write_kind not in WRITE_KINDS:
        raise ValueError(f"a write key is {' or '.join(WRITE_KINDS)}, not {write_kind!r}")
    conn.execute(
        insert(api_keys).values(
            key_hash=key_digest(key),
            workspace_id=workspace_id,
            kind=kind,
            hint=key[:8],
            created_at_ms=now_ms,
            write_kind=write_kind if kind == WRITE else None,
        )
    )


def create_write_key(conn: Connection, workspace_id: str, write_kind: str, now_ms: int) -> str:
    """A new write key of this kind; the caller shows it once (only its digest is kept)."""
    if write_kind not in WRITE_KINDS:
        raise KeyProblem(f"--kind: a write key is {' or '.join(WRITE_KINDS)}, not {write_kind!r}")
    key = _PREFIX[write_kind] + secrets.token_urlsafe(24)
    add_key(conn, workspace_id, WRITE, key, now_ms, write_kind=write_kind)
    return key


def list_keys(conn: Connection, workspace_id: str) -> list[dict[str, object]]:
    """The workspace's write keys and admin tokens, by their hints (the keys are not kept)."""
    t = api_keys.c
    rows = conn.execute(
        select(t.hint, t.kind, t.write_kind, t.created_at_ms)
        .where(t.workspace_id == workspace_id)
        .order_by(t.created_at_ms, t.hint)
    )
    return [
        {
            "hint": r.hint,
            "kind": r.kind if r.kind == ADMIN else r.write_kind or PUBLIC,
            "created_at_ms": r.created_at_ms,
        }
        for r in rows
    ]


def revoke_write_key(conn: Connection, workspace_id: str, hint: str) -> str:
    """Delete the write key whose hint (its first 8 characters) this is; returns its kind.
    A running server's key cache forgets it within KEY_CACHE_TTL_S (ingest/auth.py)."""
    t = api_keys.c
    rows = conn.execute(
        select(t.key_hash, t.write_kind).where(t.workspace_id == workspace_id, t.kind == WRITE, t.hint == hint[:8])
    ).all()
    if not rows:
        raise KeyProblem(f"no write key of this workspace starts with {hint[:8]!r} (see `workspace keys list`)")
    if len(rows) > 1:
        raise KeyProblem(f"{len(rows)} write keys start with {hint[:8]!r}; nothing was revoked")
    conn.execute(delete(api_keys).where(t.key_hash == rows[0].key_hash))
    return str(rows[0].write_kind or PUBLIC)


def workspace_for_key(conn: Connection, kind: str, key: str) -> str | None:
    return conn.execute(
        select(api_keys.c.workspace_id).where(api_keys.c.key_hash == key_digest(key), api_keys.c.kind == kind)
    ).scalar_one_or_none()


def write_key_owner(conn: Connection, key: str) -> tuple[str, str] | None:
    """(workspace, write kind) of a write key, or None when no workspace has it."""
    row = conn.execute(
        select(api_keys.c.workspace_id, api_keys.c.write_kind).where(
            api_keys.c.key_hash == key_digest(key), api_keys.c.kind == WRITE
        )
    ).first()
    return None if row is None else (row.workspace_id, row.write_kind or PUBLIC)


def list_workspaces(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(select(workspaces).order_by(workspaces.c.created_at_ms))
    return [dict(r._mapping) for r in rows]


def workspace_exists(conn: Connection, workspace_id: str) -> bool:
    return (
        conn.exec_driver_sql(
            "SELECT 1 FROM workspaces WHERE id = " + ("?" if conn.dialect.paramstyle == "qmark" else "%s"),
            (workspace_id,),
        ).first()
        is not None
    )
