"""Signed bounce addresses (VERP with an HMAC): the envelope sender of each message we send.

    bounces+<workspace_id>.<ref>.<mac>@<bounce domain>

- `ref` names the message: 8 base32 characters of SHA-256(message key). It cannot be turned
  back into the key, but a report that returns the key can be checked against it.
- `mac` binds the workspace, the ref and the recipient the message went to: 16 base32
  characters (80 bits) of HMAC-SHA256(bounce key, workspace \\0 ref \\0 recipient).

The workspace id is public (it is in every Return-Path), so an address carrying only that
let anyone send a forged DSN naming any address of the workspace and have it suppressed.
With the MAC, a DSN is believed only for the recipient its address was signed for: the
owner of a mailbox can learn the signed address of their own mail, never of anyone else's.

The bounce key is derived from the workspace's tracking secret (the one that already signs
its links and unsubscribe tokens, store/consent.tracking_secret) with a label of its own, so
neither signature can stand for the other and no second secret has to be created, kept and
never rotated. The local part stays under RFC 5321's 64 characters for `ws_` ids.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

BOUNCE_PREFIX = "bounces"
_LABEL = b"nudgeflow/bounce-address/v1"
_REF_BYTES = 5  # -> 8 base32 characters
_MAC_BYTES = 10  # -> 16 base32 characters: 80 bits, far beyond guessing over SMTP
_B32 = re.compile(r"^[a-z2-7]+$")


@dataclass(frozen=True)
class SignedTag:
    """What a signed address carries (not yet checked: that needs the recipient)."""

    workspace_id: str
    ref: str
    mac: str


def bounce_key(tracking_secret: str) -> bytes:
    """The workspace's bounce-address key, derived from its tracking secret."""
    return hmac.digest(tracking_secret.encode(), _LABEL, hashlib.sha256)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def normalize_recipient(address: str) -> str:
    # As runtime/bounces.normalize_address: a DSN may spell the address in another case.
    return address.strip().strip("<>").strip().lower()


def message_ref(message_key: str) -> str:
    return _b32(hashlib.sha256(message_key.encode()).digest()[:_REF_BYTES])


def _mac(key: bytes, workspace_id: str, ref: str, recipient: str) -> str:
    signed = f"{workspace_id}\0{ref}\0{normalize_recipient(recipient)}".encode()
    return _b32(hmac.digest(key, signed, hashlib.sha256)[:_MAC_BYTES])


def signed_address(key: bytes, workspace_id: str, message_key: str, recipient: str, domain: str) -> str:
    """The envelope sender of the message `message_key` to `recipient`."""
    ref = message_ref(message_key)
    return f"{BOUNCE_PREFIX}+{workspace_id}.{ref}.{_mac(key, workspace_id, ref, recipient)}@{domain}"


def parse_signed(address: str) -> SignedTag | None:
    """The tag of `prefix+<workspace>.<ref>.<mac>@domain`, or None when the address has no
    signed tag (an old `bounces+<workspace>@` one, a feedback-loop address, anything else)."""
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, tag = local.partition("+")
    parts = tag.rsplit(".", 2)
    if not plus or len(parts) != 3 or not parts[0]:
        return None
    workspace_id, ref, mac = parts[0], parts[1].lower(), parts[2].lower()
    if len(ref) != 8 or len(mac) != 16 or not _B32.match(ref) or not _B32.match(mac):
        return None
    return SignedTag(workspace_id, ref, mac)


def verifies(key: bytes, tag: SignedTag, recipient: str) -> bool:
    """True when the address was signed with `key` for `recipient` (constant-time compare)."""
    return hmac.compare_digest(_mac(key, tag.workspace_id, tag.ref, recipient), tag.mac)


def names_message(tag: SignedTag, message_key: str) -> bool:
    """True when the address was made for the message `message_key`."""
    return hmac.compare_digest(message_ref(message_key), tag.ref)
