"""Write keys and admin tokens: where they arrive, and a cache of their workspaces."""

from __future__ import annotations

import base64
import binascii

import anyio.to_thread
from sqlalchemy import Engine

from nudgeflow.core.clock import Clock, SystemClock
from nudgeflow.store.workspaces import WRITE, key_digest, workspace_for_key, write_key_owner

# A revoked key (`nudgeflow workspace keys revoke`, possibly from another process) stops
# working within this many seconds; a key in use costs one lookup per interval.
KEY_CACHE_TTL_S = 30.0


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
    """Maps key digests to workspaces (and a write key to its kind: public or server).

    A hit is kept for KEY_CACHE_TTL_S, so that a revocation reaches a running server; a miss
    is never kept (a key created a moment ago works at once).
    """

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()
        self._known: dict[tuple[str, str], tuple[float, tuple[str, str]]] = {}

    def _lookup(self, kind: str, key: str) -> tuple[str, str] | None:
        with self._engine.connect() as conn:
            if kind == WRITE:
                return write_key_owner(conn, key)
            workspace_id = workspace_for_key(conn, kind, key)
            return None if workspace_id is None else (workspace_id, kind)

    def _hit(self, cache_key: tuple[str, str]) -> tuple[str, str] | None:
        hit = self._known.get(cache_key)
        if hit is None or self._clock.monotonic() - hit[0] >= KEY_CACHE_TTL_S:
            return None
        return hit[1]

    def _keep(self, cache_key: tuple[str, str], found: tuple[str, str] | None) -> None:
        if found is None:
            self._known.pop(cache_key, None)
        else:
            self._known[cache_key] = (self._clock.monotonic(), found)

    def cached(self, kind: str, key: str | None) -> tuple[str, str] | None:
        """What `owner` would answer from the cache alone; None when it would look it up."""
        if not key or len(key) > 200:
            return None
        return self._hit((kind, key_digest(key)))

    async def owner(self, kind: str, key: str | None) -> tuple[str, str] | None:
        """(workspace, write kind "public" | "server") for a write key; (workspace, kind) otherwise."""
        if not key or len(key) > 200:
            return None
        cache_key = (kind, key_digest(key))
        found = self._hit(cache_key)
        if found is None:
            found = await anyio.to_thread.run_sync(self._lookup, kind, key)
            self._keep(cache_key, found)
        return found

    async def workspace(self, kind: str, key: str | None) -> str | None:
        found = await self.owner(kind, key)
        return None if found is None else found[0]

    def workspace_sync(self, kind: str, key: str | None) -> str | None:
        if not key or len(key) > 200:
            return None
        cache_key = (kind, key_digest(key))
        found = self._hit(cache_key)
        if found is None:
            found = self._lookup(kind, key)
            self._keep(cache_key, found)
        return None if found is None else found[0]
