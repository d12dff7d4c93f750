"""Where a person's push messages go: Web Push subscriptions and mobile device tokens.

A push message of a journey goes to every target the person has (channels/push.py); a
target the service reports as gone (Web Push 404/410, FCM UNREGISTERED, APNs 410) is
deleted here. A subscription or token belongs to one profile at a time:
registering it again for another person moves it (a shared browser, a re-installed app).

A person holds at most MAX_SUBSCRIPTIONS_PER_PROFILE Web Push subscriptions: the public
write key lets anyone register subscriptions for an anonymousId, and every push to that
person fans out to each one. A new one beyond the cap replaces the least recently seen
(registered or refreshed), since a real person with many browsers keeps the ones in use.
Mobile device tokens are capped the same way (MAX_DEVICES_PER_PROFILE): a Segment event's
`context.device.token` comes with the same public write key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Table, delete, insert, select, update

from nudgeflow.errors import StoreError
from nudgeflow.store.schema import device_tokens, profiles, push_deliveries, push_subscriptions

WEBPUSH, FCM, APNS = "webpush", "fcm", "apns"
Provider = Literal["webpush", "fcm", "apns"]
MAX_ENDPOINT = 2048
MAX_TOKEN = 512
MAX_SUBSCRIPTIONS_PER_PROFILE = 20  # docs/push.md: "Limits"
MAX_DEVICES_PER_PROFILE = 20  # docs/push.md: "Mobile device tokens"


class PushTargetError(StoreError, ValueError):
    """A subscription or token that cannot be stored: the message names the field."""


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One place a push message can go. `address` is the endpoint URL or device token."""

    provider: str  # webpush | fcm | apns
    address: str
    p256dh: str | None = None  # Web Push only: the browser's public key (base64url)
    auth: str | None = None  # Web Push only: the shared auth secret (base64url)
    platform: str | None = None
    app_id: str | None = None

    def redacted(self) -> str:
        """For logs and errors: a token or endpoint is a credential of sorts."""
        return f"{self.provider}:…{self.address[-8:]}"

    @property
    def key(self) -> str:
        """Names the target in `push_deliveries` without storing its token a second time."""
        return hashlib.sha256(f"{self.provider}:{self.address}".encode()).hexdigest()


def any_target_stored(engine: Any) -> bool:
    """Whether any workspace has a Web Push subscription or a device token stored: how a
    server decides whether push is in use. False before the schema exists (a server
    starting on a new database)."""
    if engine is None:
        return False
    try:
        with engine.connect() as conn:
            for table in (push_subscriptions, device_tokens):
                if conn.execute(select(table.c.profile_id).limit(1)).first() is not None:
                    return True
    except Exception:  # not migrated yet
        return False
    return False


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


def _b64url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PushTargetError(f"{field}: required (base64url)")
    text = value.strip()
    if len(text) > 200 or any(
        c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/" for c in text
    ):
        raise PushTargetError(f"{field}: not base64url")
    return text


def parse_subscription(data: Any) -> tuple[str, str, str]:
    """(endpoint, p256dh, auth) from a browser's PushSubscription JSON, or PushTargetError."""
    if not isinstance(data, dict):
        raise PushTargetError("subscription: expected an object with endpoint and keys")
    endpoint = data.get("endpoint")
    if (not isinstance(endpoint, str) or not endpoint.startswith("https://")) and not (
        isinstance(endpoint, str) and endpoint.startswith("http://127.0.0.1")
    ):
        raise PushTargetError("subscription.endpoint: must be an https:// URL")
    if len(endpoint) > MAX_ENDPOINT:
        raise PushTargetError(f"subscription.endpoint: longer than {MAX_ENDPOINT} characters")
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise PushTargetError("subscription.keys: expected an object with p256dh and auth")
    return (
        endpoint,
        _b64url(keys.get("p256dh"), "subscription.keys.p256dh"),
        _b64url(keys.get("auth"), "subscription.keys.auth"),
    )


def save_subscription(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    subscription: Any,
    now_ms: int,
    user_agent: str | None = None,
    replaced: list[tuple[str, str]] | None = None,
) -> str:
    """Store (or move to this profile) a browser's subscription; returns its endpoint hash.
    The (hash, endpoint) of each subscription the cap replaced is added to `replaced`."""
    endpoint, p256dh, auth = parse_subscription(subscription)
    digest = endpoint_hash(endpoint)
    t = push_subscriptions.c
    found = conn.execute(select(t.profile_id).where(t.workspace_id == workspace_id, t.endpoint_hash == digest)).first()
    values = dict(
        profile_id=profile_id,
        endpoint=endpoint,
        p256dh=p256dh,
        auth=auth,
        user_agent=(user_agent or None) and user_agent[:500],
        updated_at_ms=now_ms,
    )
    if found is None:
        conn.execute(
            insert(push_subscriptions).values(
                workspace_id=workspace_id, endpoint_hash=digest, created_at_ms=now_ms, **values
            )
        )
    else:
        conn.execute(
            update(push_subscriptions).where(t.workspace_id == workspace_id, t.endpoint_hash == digest).values(**values)
        )
    dropped = keep_within_cap(conn, SUBSCRIPTIONS, workspace_id, [profile_id], keep=(digest,))
    if replaced is not None:
        replaced.extend((key, address) for _, key, address in dropped)
    return digest


@dataclass(frozen=True, slots=True)
class CappedTargets:
    """One kind of push target a person holds a capped number of: its table, the column
    naming a row, the one with its address, and the cap."""

    table: Table
    key: str
    address: str
    cap: int


SUBSCRIPTIONS = CappedTargets(push_subscriptions, "endpoint_hash", "endpoint", MAX_SUBSCRIPTIONS_PER_PROFILE)
DEVICES = CappedTargets(device_tokens, "token", "token", MAX_DEVICES_PER_PROFILE)


def keep_within_cap(
    conn: Connection, kind: CappedTargets, workspace_id: str, profile_ids: Iterable[str], keep: Collection[str] = ()
) -> list[tuple[str, str, str]]:
    """Delete each person's least recently seen targets of this kind beyond its cap: after a
    registration (never one of `keep`, those just registered) and after a merge (the
    anonymous profile's targets come along, and several merged profiles could add up past
    it). "Least recently seen" is by the row's last write: a subscription is rewritten on
    every registration, a device token when it is new or moves (store/device_ingest.py).
    Returns the (profile id, key, address) of those deleted.

    The people's profile rows are locked first (PostgreSQL; SQLite has one writer anyway):
    two registrations for one person at once would otherwise each count the cap without the
    other's new row and both keep theirs, one over the cap."""
    people = sorted(set(profile_ids))
    if not people:
        return []
    # In id order, so two transactions locking the same people cannot deadlock on them.
    conn.execute(select(profiles.c.id).where(profiles.c.id.in_(people)).order_by(profiles.c.id).with_for_update())
    c = kind.table.c
    key, address = c[kind.key], c[kind.address]
    dropped: list[tuple[str, str, str]] = []
    for profile_id in people:
        rows = conn.execute(
            select(key.label("key"), address.label("address"))
            .where(c.workspace_id == workspace_id, c.profile_id == profile_id)
            .order_by(c.updated_at_ms.desc(), c.created_at_ms.desc(), key)
        ).all()
        if len(rows) <= kind.cap:
            continue
        kept = [row for row in rows if row.key in keep][: kind.cap]
        kept += [row for row in rows if row.key not in keep][: kind.cap - len(kept)]
        chosen = {row.key for row in kept}
        extra = [row for row in rows if row.key not in chosen]
        conn.execute(delete(kind.table).where(c.workspace_id == workspace_id, key.in_([row.key for row in extra])))
        dropped += [(profile_id, row.key, row.address) for row in extra]
    return dropped


def delete_subscription(conn: Connection, workspace_id: str, endpoint: str) -> bool:
    t = push_subscriptions.c
    res = conn.execute(
        delete(push_subscriptions).where(t.workspace_id == workspace_id, t.endpoint_hash == endpoint_hash(endpoint))
    )
    return bool(res.rowcount)


def _provider_for(platform: str | None, provider: str | None) -> str:
    if provider:
        p = provider.strip().lower()
        if p not in (FCM, APNS):
            raise PushTargetError("provider: must be fcm or apns")
        return p
    plat = (platform or "").strip().lower()
    if plat in ("ios", "ipados", "macos", "tvos", "watchos", "apple", "apns"):
        return APNS
    if plat in ("android", "fcm", "firebase"):
        return FCM
    raise PushTargetError(f"device.type: {platform!r} is neither ios nor android (give provider fcm or apns)")


def save_device(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    token: Any,
    now_ms: int,
    *,
    platform: str | None = None,
    provider: str | None = None,
    app_id: str | None = None,
) -> str:
    """Store (or move to this profile) a mobile device token; returns the provider."""
    if not isinstance(token, str) or not token.strip():
        raise PushTargetError("device.token: required")
    token = token.strip()
    if len(token) > MAX_TOKEN:
        raise PushTargetError(f"device.token: longer than {MAX_TOKEN} characters")
    prov = _provider_for(platform, provider)
    t = device_tokens.c
    found = conn.execute(select(t.profile_id).where(t.workspace_id == workspace_id, t.token == token)).first()
    values = dict(
        profile_id=profile_id,
        provider=prov,
        platform=(platform or None) and str(platform)[:20],
        app_id=(app_id or None) and str(app_id)[:200],
        updated_at_ms=now_ms,
    )
    if found is None:
        conn.execute(
            insert(device_tokens).values(workspace_id=workspace_id, token=token, created_at_ms=now_ms, **values)
        )
    else:
        conn.execute(update(device_tokens).where(t.workspace_id == workspace_id, t.token == token).values(**values))
    keep_within_cap(conn, DEVICES, workspace_id, [profile_id], keep=(token,))
    return prov


def delete_device(conn: Connection, workspace_id: str, token: str) -> bool:
    t = device_tokens.c
    res = conn.execute(delete(device_tokens).where(t.workspace_id == workspace_id, t.token == token))
    return bool(res.rowcount)


def delete_target(conn: Connection, workspace_id: str, target: PushTarget) -> bool:
    """Drop a target its service reported gone."""
    if target.provider == WEBPUSH:
        return delete_subscription(conn, workspace_id, target.address)
    return delete_device(conn, workspace_id, target.address)


def targets_of(conn: Connection, workspace_id: str, profile_id: str) -> list[PushTarget]:
    """Every push target of a person: subscriptions first, then devices, oldest first."""
    s = push_subscriptions.c
    d = device_tokens.c
    out = [
        PushTarget(WEBPUSH, row.endpoint, row.p256dh, row.auth)
        for row in conn.execute(
            select(s.endpoint, s.p256dh, s.auth)
            .where(s.workspace_id == workspace_id, s.profile_id == profile_id)
            .order_by(s.created_at_ms, s.endpoint_hash)
        )
    ]
    out += [
        PushTarget(row.provider, row.token, platform=row.platform, app_id=row.app_id)
        for row in conn.execute(
            select(d.token, d.provider, d.platform, d.app_id)
            .where(d.workspace_id == workspace_id, d.profile_id == profile_id)
            .order_by(d.created_at_ms, d.token)
        )
    ]
    return out


def delivered_targets(conn: Connection, workspace_id: str, message_key: str) -> set[str]:
    """The keys of the targets that took this message on an earlier, partial try."""
    p = push_deliveries.c
    return set(
        conn.execute(select(p.target_key).where(p.workspace_id == workspace_id, p.message_key == message_key)).scalars()
    )


def record_deliveries(
    conn: Connection, workspace_id: str, message_key: str, profile_id: str, target_keys: list[str], now_ms: int
) -> None:
    """Remember the targets that took a message whose other targets will be retried."""
    known = delivered_targets(conn, workspace_id, message_key)
    rows = [
        {
            "workspace_id": workspace_id,
            "message_key": message_key,
            "target_key": key,
            "profile_id": profile_id,
            "delivered_at_ms": now_ms,
        }
        for key in dict.fromkeys(target_keys)
        if key not in known
    ]
    if rows:
        conn.execute(insert(push_deliveries), rows)


def forget_deliveries(conn: Connection, workspace_id: str, message_key: str) -> None:
    """The message's last try is over: its delivery rows have served their purpose."""
    p = push_deliveries.c
    conn.execute(delete(push_deliveries).where(p.workspace_id == workspace_id, p.message_key == message_key))


def list_targets(conn: Connection, workspace_id: str, profile_id: str) -> list[dict[str, Any]]:
    """For the admin API: what a person's targets are, without the Web Push secrets."""
    return [
        {"provider": t.provider, "address": t.address, "platform": t.platform, "app_id": t.app_id}
        for t in targets_of(conn, workspace_id, profile_id)
    ]


def subscription_owner(conn: Connection, workspace_id: str, digest: str) -> str | None:
    """The profile a Web Push subscription (by its endpoint's hash) belongs to, or None."""
    owner: str | None = conn.execute(
        select(push_subscriptions.c.profile_id).where(
            push_subscriptions.c.workspace_id == workspace_id, push_subscriptions.c.endpoint_hash == digest
        )
    ).scalar_one_or_none()
    return owner


def remove_device_token(conn: Connection, workspace_id: str, profile_id: str, spellings: list[str]) -> bool:
    """Delete the person's device token, given in any of `spellings`; False if none was found."""
    t = device_tokens.c
    res = conn.execute(
        delete(device_tokens).where(t.workspace_id == workspace_id, t.token.in_(spellings), t.profile_id == profile_id)
    )
    return bool(res.rowcount)
