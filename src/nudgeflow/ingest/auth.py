"""Write keys and admin tokens: where they arrive, and a cache of their workspaces."""

from __future__ import annotations

import base64
import binascii

import anyio.to_thread
from sqlalchemy import Engine

from nudgeflow.store.workspaces import key_digest, workspace_for_key


def basic_user(authorization: str | None) -> str | None:
    """The user part of `Authorization: Basic base64(user:)`, which is how Segment sends a write key."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class KeyCache:
    """Maps key digests to workspaces. Keys are only added, never changed, so a hit stays true."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._known: dict[tuple[str, str], str] = {}

    def _lookup(self, kind: str, key: str) -> str | None:
        with self._engine.connect() as conn:
            return workspace_for_key(conn, kind, key)

    async def workspace(self, kind: str, key: str | None) -> str | None:
        if not key or len(key) > 200:
            return None
        cache_key = (kind, key_digest(key))
        workspace_id = self._known.get(cache_key)
        if workspace_id is None:
            workspace_id = await anyio.to_thread.run_sync(self._lookup, kind, key)
            if workspace_id is not None:
                self._known[cache_key] = workspace_id
        return workspace_id

    def workspace_sync(self, kind: str, key: str | None) -> str | None:
        if not key or len(key) > 200:
            return None
        cache_key = (kind, key_digest(key))
        workspace_id = self._known.get(cache_key)
        if workspace_id is None:
            workspace_id = self._lookup(kind, key)
            if workspace_id is not None:
                self._known[cache_key] = workspace_id
        return workspace_id
