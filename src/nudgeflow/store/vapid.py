"""VAPID keys per workspace (RFC 8292): who signs the workspace's Web Push requests.

Stored in the workspace's settings, section "webpush":

    {"public_key": base64url of the uncompressed P-256 point (what browsers subscribe with),
     "private_key": base64url of the 32-byte private scalar (a PEM private key is accepted too),
     "subject": "mailto:…" or "https://…" (the contact push services may write to),
     "rotated_at_ms": when this pair was made}

A browser subscribes with the workspace's public key (`applicationServerKey`), and push
services accept a message for that subscription only when it is signed with the matching
private key. Rotating the pair therefore orphans every existing subscription: the browsers
must subscribe again with the new public key. The browser SDK does so by itself when the
public key it fetches from /v1/push/vapid-public-key differs from the one it subscribed with;
until it has, messages to the old subscriptions fail (push services answer 401/403).

The private key never leaves through this module's public readers (`public_view`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, select

from nudgeflow.errors import StoreError
from nudgeflow.store import workspace_settings
from nudgeflow.store.schema import workspaces

SECTION = "webpush"
# A placeholder contact. Chrome and Firefox accept it; Apple's push service refuses
# subjects it cannot reach (localhost, .invalid): set a real one (`--subject`, the admin API).
DEFAULT_SUBJECT = "mailto:webpush@nudgeflow.invalid"
MAX_SUBJECT = 300


class VapidError(StoreError, ValueError):
    """Bad VAPID settings (a subject that is not mailto:/https:, a key that does not load)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class VapidKeys:
    public_key: str
    private_key: str
    subject: str
    rotated_at_ms: int

    def __repr__(self) -> str:  # never the private key, in logs or tracebacks
        return (
            f"VapidKeys(public_key={self.public_key[:12]}…, subject={self.subject!r}, "
            f"rotated_at_ms={self.rotated_at_ms})"
        )

    __str__ = __repr__

    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        return load_private_key(self.private_key)

    def public_view(self) -> dict[str, Any]:
        """What the admin API and the CLI show."""
        return {
            "public_key": self.public_key,
            "subject": self.subject,
            "rotated_at_ms": self.rotated_at_ms,
            "subject_is_placeholder": self.subject == DEFAULT_SUBJECT,
        }


def generate_keypair() -> tuple[str, str]:
    """(public key, private key), both base64url: the uncompressed point and the raw scalar."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url(public), b64url(private)


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from base64url (raw 32-byte scalar or DER) or PEM."""
    try:
        if "-----BEGIN" in text:
            key: Any = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise VapidError("the VAPID private key does not load (base64url P-256 scalar or PEM expected)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidError("the VAPID private key is not a P-256 (prime256v1) key")
    return key


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(
        key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def check_subject(subject: str) -> str:
    """RFC 8292 §2.1: a mailto: or https: URI push services can reach the sender at."""
    value = (subject or "").strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise VapidError("subject: must not contain control characters")
    if len(value) > MAX_SUBJECT:
        raise VapidError(f"subject: longer than {MAX_SUBJECT} characters")
    if value.lower().startswith("mailto:") and "@" in value[7:] and " " not in value:
        return value
    if value.lower().startswith("https://") and len(value) > 8 and " " not in value:
        return value
    raise VapidError("subject: must be a mailto: address or an https:// URL (e.g. mailto:push@example.com)")


def _from_section(data: Any) -> VapidKeys | None:
    if not isinstance(data, dict) or not data.get("public_key") or not data.get("private_key"):
        return None
    return VapidKeys(
        str(data["public_key"]),
        str(data["private_key"]),
        str(data.get("subject") or DEFAULT_SUBJECT),
        int(data.get("rotated_at_ms") or 0),
    )


def _store(conn: Connection, workspace_id: str, keys: VapidKeys, now_ms: int) -> None:
    workspace_settings.set_section(
        conn,
        workspace_id,
        SECTION,
        {
            "public_key": keys.public_key,
            "private_key": keys.private_key,
            "subject": keys.subject,
            "rotated_at_ms": keys.rotated_at_ms,
        },
        now_ms,
    )


def _lock_workspace(conn: Connection, workspace_id: str) -> None:
    """Serialize key creation per workspace on PostgreSQL (two first requests at once must not
    hand out two different public keys); SQLite has one writer anyway."""
    conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update())


def get_vapid_keys(conn: Connection, workspace_id: str) -> VapidKeys | None:
    return _from_section(workspace_settings.get_section(conn, workspace_id, SECTION))


def ensure_vapid_keys(conn: Connection, workspace_id: str, now_ms: int, subject: str | None = None) -> VapidKeys:
    """The workspace's keys, generated now if it has none (call in a write transaction)."""
    _lock_workspace(conn, workspace_id)
    found = get_vapid_keys(conn, workspace_id)
    if found is not None:
        return found
    public, private = generate_keypair()
    keys = VapidKeys(public, private, check_subject(subject) if subject else DEFAULT_SUBJECT, now_ms)
    _store(conn, workspace_id, keys, now_ms)
    return keys


def rotate_vapid_keys(conn: Connection, workspace_id: str, now_ms: int) -> VapidKeys:
    """A new key pair, keeping the subject.

    Every existing browser subscription was made with the old public key and will be refused
    by its push service from now on: browsers must subscribe again with the new key (the
    SDK does when the public key it fetches changes). Rotate when the private key may have
    leaked, not as routine.
    """
    _lock_workspace(conn, workspace_id)
    old = get_vapid_keys(conn, workspace_id)
    public, private = generate_keypair()
    keys = VapidKeys(public, private, old.subject if old else DEFAULT_SUBJECT, now_ms)
    _store(conn, workspace_id, keys, now_ms)
    return keys


def vapid_public_key(conn: Connection, workspace_id: str) -> str | None:
    keys = get_vapid_keys(conn, workspace_id)
    return keys.public_key if keys else None


def set_vapid_subject(conn: Connection, workspace_id: str, subject: str, now_ms: int) -> VapidKeys:
    """Set the contact push services see in the JWT's `sub` (keys are generated if missing)."""
    value = check_subject(subject)
    keys = ensure_vapid_keys(conn, workspace_id, now_ms)
    if keys.subject == value:
        return keys
    updated = VapidKeys(keys.public_key, keys.private_key, value, keys.rotated_at_ms)
    _store(conn, workspace_id, updated, now_ms)
    return updated
