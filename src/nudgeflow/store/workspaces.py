"""Workspaces and their keys. Keys are shown once, at creation, and stored only as digests."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from nudgeflow.store.schema import api_keys, workspaces
from nudgeflow.store.vapid import ensure_vapid_keys

WRITE = "write"
ADMIN = "admin"


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
    add_key(conn, workspace_id, WRITE, write_key, now_ms)
    add_key(conn, workspace_id, ADMIN, admin_token, now_ms)
    ensure_vapid_keys(conn, workspace_id, now_ms)  # Web Push: browsers subscribe with its public key
    return NewWorkspace(workspace_id, name, write_key, admin_token)


def add_key(conn: Connection, workspace_id: str, kind: str, key: str, now_ms: int) -> None:
    conn.execute(
        insert(api_keys).values(
            key_hash=key_digest(key), workspace_id=workspace_id, kind=kind, hint=key[:8], created_at_ms=now_ms
        )
    )


def workspace_for_key(conn: Connection, kind: str, key: str) -> str | None:
    return conn.execute(
        select(api_keys.c.workspace_id).where(api_keys.c.key_hash == key_digest(key), api_keys.c.kind == kind)
    ).scalar_one_or_none()


def list_workspaces(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(select(workspaces).order_by(workspaces.c.created_at_ms))
    return [dict(r._mapping) for r in rows]
