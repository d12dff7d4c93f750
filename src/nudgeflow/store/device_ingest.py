"""Mobile device tokens, registered the Segment way and through the admin API.

Segment's mobile SDKs put the push token on every event once the app has one:

    "context": {"device": {"type": "ios", "token": "a1b2…"}, "app": {"namespace": "com.example.app"}}

Ingest registers it on the event's profile in the very transaction that stores the event
(store/ingest_writer.py calls `register_from_events`). A token that cannot be a push token
is logged and skipped: the event itself is still accepted.

Because the token rides on every event, the work per commit is one lookup of the tokens
its events carry; only a token that is new, or has moved to another person (a shared or
re-installed device), app or platform, is written. Writes are upserts, so two ingest
processes registering the same new token at once cannot fail each other's commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from nudgeflow.model.events import EventRecord
from nudgeflow.store.push_targets import APNS, DEVICES, FCM, MAX_TOKEN, PushTargetError, keep_within_cap
from nudgeflow.store.schema import device_tokens

log = logging.getLogger("nudgeflow.ingest.devices")

APPLE = ("ios", "ipados", "macos", "tvos", "watchos", "apple", "apns")
ANDROID = ("android", "fcm", "firebase")
_TOKEN = re.compile(r"^[A-Za-z0-9_:.+=-]+$")  # FCM tokens are base64url with ':'; APNs tokens hex
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_MARK = b'"token"'  # events without it are not parsed again
CHUNK = 500


@dataclass(frozen=True, slots=True)
class Device:
    token: str
    provider: str  # fcm | apns
    platform: str | None
    app_id: str | None


def normalize_device(token: Any, platform: Any = None, provider: Any = None, app_id: Any = None) -> Device:
    """A device token checked and its provider decided, or PushTargetError naming the field."""
    if not isinstance(token, str) or not token.strip():
        raise PushTargetError("device.token: required")
    token = token.strip()
    if len(token) > MAX_TOKEN:
        raise PushTargetError(f"device.token: longer than {MAX_TOKEN} characters")
    if not _TOKEN.match(token):
        raise PushTargetError("device.token: not a push token (letters, digits and - _ : . only)")
    plat = platform.strip().lower()[:20] if isinstance(platform, str) and platform.strip() else None
    if provider is not None and provider != "":
        prov = str(provider).strip().lower()
        if prov not in (FCM, APNS):
            raise PushTargetError("provider: must be fcm or apns")
    elif plat in APPLE:
        # An iOS app built on Firebase registers an FCM token ("<instance>:APA91…"), not an
        # APNs one: APNs tokens are hexadecimal.
        prov = APNS if _HEX.match(token) else FCM if ":" in token else ""
        if not prov:
            raise PushTargetError("device.token: an APNs device token is hexadecimal")
    elif plat in ANDROID:
        prov = FCM
    else:
        raise PushTargetError(f"device.type: {platform!r} is neither ios nor android (give provider fcm or apns)")
    if prov == APNS:
        if not _HEX.match(token):
            raise PushTargetError("device.token: an APNs device token is hexadecimal")
        # Hex is hex in either case: one device, one row (and one notification), however an SDK spells it.
        token = token.lower()
    app = app_id.strip()[:200] if isinstance(app_id, str) and app_id.strip() else None
    return Device(token, prov, plat, app)


def device_in(message: Any) -> tuple[Any, Any, Any] | None:
    """(token, type, app namespace) from a Segment message's context, when it carries a token."""
    context = message.get("context") if isinstance(message, dict) else None
    device = context.get("device") if isinstance(context, dict) else None
    if not isinstance(device, dict) or device.get("token") in (None, ""):
        return None
    app = context.get("app") if isinstance(context, dict) else None  # a device: context is a dict
    return device.get("token"), device.get("type"), app.get("namespace") if isinstance(app, dict) else None


def _upsert(conn: Connection, workspace_id: str, rows: Sequence[tuple[str, Device]], now_ms: int) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(device_tokens).values(
        [
            {
                "workspace_id": workspace_id,
                "token": d.token,
                "profile_id": pid,
                "provider": d.provider,
                "platform": d.platform,
                "app_id": d.app_id,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            }
            for pid, d in rows
        ]
    )
    t = device_tokens.c
    # An event without the app's namespace keeps the app id registered before (the APNs topic).
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "token"],
        set_={
            "profile_id": stmt.excluded.profile_id,
            "provider": stmt.excluded.provider,
            "platform": func.coalesce(stmt.excluded.platform, t.platform),
            "app_id": func.coalesce(stmt.excluded.app_id, t.app_id),
            "updated_at_ms": stmt.excluded.updated_at_ms,
        },
    )
    conn.execute(stmt)


def register_device(conn: Connection, workspace_id: str, profile_id: str, device: Device, now_ms: int) -> None:
    """Store the token on the profile (moving it there if another person had it)."""
    _upsert(conn, workspace_id, [(profile_id, device)], now_ms)
    keep_within_cap(conn, DEVICES, workspace_id, [profile_id], keep=(device.token,))


def register_from_events(
    conn: Connection, workspace_id: str, records: Sequence[EventRecord], profile_ids: Sequence[str], now_ms: int
) -> int:
    """Register the device tokens these stored events carry; returns how many rows changed."""
    wanted: dict[str, tuple[str, Device]] = {}
    for record, profile_id in zip(records, profile_ids, strict=True):
        if _MARK not in record.payload:
            continue
        try:
            found = device_in(orjson.loads(record.payload))
        except orjson.JSONDecodeError:
            continue
        if found is None:
            continue
        try:
            device = normalize_device(found[0], found[1], app_id=found[2])
        except PushTargetError as exc:
            # The token is left out (never logged: it is a credential of sorts); the event stays.
            log.warning("device token skipped", extra={"workspace": workspace_id, "reason": str(exc)})
            continue
        wanted[device.token] = (profile_id, device)  # the latest event wins
    if not wanted:
        return 0
    t = device_tokens.c
    known: dict[str, Any] = {}
    tokens = list(wanted)
    for start in range(0, len(tokens), CHUNK):
        for row in conn.execute(
            select(t.token, t.profile_id, t.provider, t.platform, t.app_id).where(
                t.workspace_id == workspace_id, t.token.in_(tokens[start : start + CHUNK])
            )
        ):
            known[row.token] = row
    changed = []
    for token, (profile_id, d) in wanted.items():
        stored = known.get(token)
        if (
            stored is None
            or stored.profile_id != profile_id
            or stored.provider != d.provider
            or (d.platform is not None and stored.platform != d.platform)
            or (d.app_id is not None and stored.app_id != d.app_id)
        ):
            changed.append((profile_id, d))
    for start in range(0, len(changed), CHUNK):
        _upsert(conn, workspace_id, changed[start : start + CHUNK], now_ms)
    # The public write key can put any number of tokens on one anonymousId: each person's
    # are capped, the ones these events carry kept first.
    keep_within_cap(conn, DEVICES, workspace_id, (pid for pid, _ in changed), keep={d.token for _, d in changed})
    return len(changed)
