"""A workspace's identity verification settings: section "identity" of its settings document.

    {"verification": true | false, "secrets": ["<current>", "<previous>"?]}

With verification on, a public write key's request that attaches an address, a push target
or an anonymous visitor to a userId must carry context.userHash = hex HMAC-SHA256(secret,
userId) (ingest/verification.py). The secrets are the workspace's to give to its backend:
each is shown once, when it is made, and is kept sealed with the rest of the document.

A rotation makes a new current secret and keeps the previous one valid, so that hashes
computed by a backend (or cached in open browser sessions) before the switch keep working
until the operator finishes the rotation.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from nudgeflow.errors import StoreError
from nudgeflow.store.workspace_settings import get_section, set_section

IDENTITY = "identity"
SECRET_PREFIX = "nfid_"


class IdentityProblem(StoreError, ValueError):
    """An identity settings change that cannot be made, with the reason."""


@dataclass(frozen=True)
class IdentitySettings:
    verification: bool = False
    secrets: tuple[str, ...] = ()  # current first; a second one while a rotation runs

    @property
    def rotating(self) -> bool:
        return len(self.secrets) > 1

    def view(self) -> dict[str, Any]:
        """What the CLI and admin API show: never a secret, only how many there are."""
        return {"verification": self.verification, "secrets": len(self.secrets), "rotating": self.rotating}

    def document(self) -> dict[str, Any]:
        return {"verification": self.verification, "secrets": list(self.secrets)}


def parse(section: Any) -> IdentitySettings:
    """The section as stored; anything malformed reads as "off, no secret" rather than failing ingest."""
    if not isinstance(section, dict):
        return IdentitySettings()
    found = section.get("secrets")
    kept = tuple(s for s in found if isinstance(s, str) and s)[:2] if isinstance(found, list) else ()
    return IdentitySettings(verification=section.get("verification") is True, secrets=kept)


def read(conn: Connection, workspace_id: str) -> IdentitySettings:
    return parse(get_section(conn, workspace_id, IDENTITY))


def _write(conn: Connection, workspace_id: str, settings: IdentitySettings, now_ms: int) -> IdentitySettings:
    set_section(conn, workspace_id, IDENTITY, settings.document(), now_ms)
    return settings


def new_secret() -> str:
    return SECRET_PREFIX + _random.token_urlsafe(32)


def enable(conn: Connection, workspace_id: str, now_ms: int) -> tuple[IdentitySettings, str | None]:
    """Turn verification on; returns the new secret when the workspace had none (to show once)."""
    current = read(conn, workspace_id)
    made = None
    if not current.secrets:
        made = new_secret()
        current = IdentitySettings(current.verification, (made,))
    return _write(conn, workspace_id, IdentitySettings(True, current.secrets), now_ms), made


def disable(conn: Connection, workspace_id: str, now_ms: int) -> IdentitySettings:
    """Turn verification off; the secrets are kept, so turning it on again needs no new hashes."""
    current = read(conn, workspace_id)
    return _write(conn, workspace_id, IdentitySettings(False, current.secrets), now_ms)


def rotate(conn: Connection, workspace_id: str, now_ms: int) -> tuple[IdentitySettings, str]:
    """A new current secret; the current one stays valid as the previous until `finish_rotation`.
    With no secret yet, this makes the first one (verification stays as it is)."""
    current = read(conn, workspace_id)
    if current.rotating:
        raise IdentityProblem(
            "a rotation is already under way (two secrets are valid): finish it first with "
            "`nudgeflow workspace identity finish-rotation`, or the previous secret would stop working unannounced"
        )
    made = new_secret()
    return _write(conn, workspace_id, IdentitySettings(current.verification, (made, *current.secrets)), now_ms), made


def finish_rotation(conn: Connection, workspace_id: str, now_ms: int) -> IdentitySettings:
    """Drop the previous secret: from now on only the current one is valid."""
    current = read(conn, workspace_id)
    if not current.rotating:
        raise IdentityProblem("no rotation is under way: the workspace has a single identity secret (or none)")
    return _write(conn, workspace_id, IdentitySettings(current.verification, current.secrets[:1]), now_ms)
