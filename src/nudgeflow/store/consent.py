"""Consent and suppression: who may be sent what.

Two lists, with different reach:

- the suppression list (`suppressions`: channel + address, with a reason: hard_bounce,
  complaint, manual, ...) stops every message to that address, transactional included;
- consent (`subscriptions`: per profile, topic "*" for all marketing, or one topic such as
  "offers") gates marketing messages only. No row means subscribed (the person gave their
  address for it; an unsubscribe is what is recorded). The "*" row also holds the
  frequency the person asked for: "normal" or "fewer" (the engine learns it from the
  Subscription Preferences Updated event; the send policies' `fewer.caps` say what it means).

The per-workspace tracking secret, public base URL and topics live in
`workspace_settings.settings` (JSON), beside other components' settings: this module only
reads and writes its own keys (TRACKING_SECRET, PUBLIC_BASE_URL, TOPICS, TOPIC_BY_TEMPLATE,
TOPIC_BY_JOURNEY). The secret is created on first use and never logged.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from nudgeflow.model import reasons
from nudgeflow.store import sql
from nudgeflow.store.schema import subscriptions, suppressions
from nudgeflow.store.workspace_settings import get_all, load_document, store_document

ALL = "*"
NORMAL, FEWER = "normal", "fewer"
FREQUENCIES = (NORMAL, FEWER)
REASONS = ("hard_bounce", "complaint", "manual", "unsubscribed", "spam_trap", "invalid")

TRACKING_SECRET = "tracking_secret"
PUBLIC_BASE_URL = "public_base_url"
TOPICS = "topics"  # ["product_news", "offers"] or [{"id": "offers", "label": "Offers and sales"}]
TOPIC_BY_TEMPLATE = "topic_by_template"  # {"cart-1": "reminders"}
TOPIC_BY_JOURNEY = "topic_by_journey"  # {"winback": "offers"}
DEFAULT_BASE_URL = "http://localhost:8000"

# The trait that holds a person's address on each channel (push addresses are device
# tokens, suppressed per token by the push channel itself).
ADDRESS_TRAIT = {"email": "email", "sms": "phone", "whatsapp": "phone"}


@dataclass(frozen=True, slots=True)
class ConsentState:
    allowed: bool
    # why not, in model/reasons.py's words: "suppressed:hard_bounce", "unsubscribed:*" (all
    # marketing), "unsubscribed:offers"
    reason: str | None = None
    frequency: str = NORMAL  # what the person asked for (the send policies' `fewer.caps` act on it)
    topic: str | None = None


def normalize_address(channel: str, address: str) -> str:
    address = address.strip()
    return address.lower() if channel == "email" or "@" in address else address


def address_of(channel: str, traits: Mapping[str, Any]) -> str | None:
    value = traits.get(ADDRESS_TRAIT.get(channel, channel))
    return normalize_address(channel, value) if isinstance(value, str) and value.strip() else None


ERASED_PREFIX = "erased:"


def erased_address(workspace_id: str, channel: str, address: str) -> str:
    """What a suppression keeps of an address once its person is erased: a one-way hash.
    The list must still stop that address (forgetting a complaint would mail the person
    again), but no longer holds it; the workspace and channel are mixed in so one hash
    cannot be matched across workspaces."""
    digest = hashlib.sha256(f"{workspace_id}\0{channel}\0{normalize_address(channel, address)}".encode()).hexdigest()
    return ERASED_PREFIX + digest


def _spellings(workspace_id: str, channel: str, address: str) -> list[str]:
    """How a suppression of `address` may be stored: as it is, or hashed by an erasure."""
    return [normalize_address(channel, address), erased_address(workspace_id, channel, address)]


# -- workspace settings (our keys only) ----------------------------------------------------------


def get_settings(conn: Connection, workspace_id: str) -> dict[str, Any]:
    return get_all(conn, workspace_id)


def update_settings(conn: Connection, workspace_id: str, changes: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """Merge `changes` into the workspace's settings (a None value removes the key)."""
    exists, current = load_document(conn, workspace_id)
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    store_document(conn, workspace_id, current, now_ms, exists=exists)
    return current


def new_secret() -> str:
    """A fresh per-workspace tracking secret (256 bits, urlsafe text)."""
    return secrets.token_urlsafe(32)


def tracking_secret(conn: Connection, workspace_id: str, now_ms: int) -> str:
    """The workspace's link-signing secret, created (in this transaction) on first use."""
    secret = get_settings(conn, workspace_id).get(TRACKING_SECRET)
    if isinstance(secret, str) and secret:
        return secret
    update_settings(conn, workspace_id, {TRACKING_SECRET: new_secret()}, now_ms)
    return str(get_settings(conn, workspace_id)[TRACKING_SECRET])


def existing_tracking_secret(conn: Connection, workspace_id: str) -> str | None:
    """The secret if there is one (read-only: verifying a link never creates one)."""
    return tracking_secret_in(get_settings(conn, workspace_id))


def tracking_secret_in(settings: Mapping[str, Any]) -> str | None:
    """The secret in settings already read, if there is one."""
    secret = settings.get(TRACKING_SECRET)
    return secret if isinstance(secret, str) and secret else None


def public_base_url(settings: Mapping[str, Any], default: str = DEFAULT_BASE_URL) -> str:
    value = settings.get(PUBLIC_BASE_URL)
    return (value if isinstance(value, str) and value else default).rstrip("/")


def topics_of(settings: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The workspace's topics as (id, label), in their configured order."""
    out: list[tuple[str, str]] = []
    for item in settings.get(TOPICS) or []:
        if isinstance(item, str) and item and item != ALL:
            out.append((item, item.replace("_", " ").capitalize()))
        elif isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] and item["id"] != ALL:
            label = item.get("label")
            out.append((item["id"], label if isinstance(label, str) and label else item["id"]))
    return out


def topic_for(
    settings: Mapping[str, Any], template: str, journey_id: str, context: Mapping[str, Any] | None = None
) -> str | None:
    """A message's topic: its context's `topic`, else the workspace's map by template, then by journey."""
    if context and isinstance(context.get("topic"), str) and context["topic"]:
        return str(context["topic"])
    for key, name in ((TOPIC_BY_TEMPLATE, template), (TOPIC_BY_JOURNEY, journey_id)):
        mapping = settings.get(key)
        if isinstance(mapping, dict) and isinstance(mapping.get(name), str) and mapping[name]:
            return str(mapping[name])
    return None


# -- suppressions -------------------------------------------------------------------------------


def suppress(
    conn: Connection, workspace_id: str, channel: str, address: str, reason: str, now_ms: int, detail: str | None = None
) -> bool:
    """Add the address to the suppression list; True if it was not there. A later reason
    replaces an earlier one (a complaint after a manual suppression says more)."""
    address = normalize_address(channel, address)
    where = (
        suppressions.c.workspace_id == workspace_id,
        suppressions.c.channel == channel,
        suppressions.c.address == address,
    )
    if conn.execute(select(suppressions.c.reason).where(*where)).first() is not None:
        conn.execute(update(suppressions).where(*where).values(reason=reason, detail=detail))
        return False
    sql.insert_rows(
        conn,
        "suppressions",
        ("workspace_id", "channel", "address", "reason", "detail", "created_at_ms"),
        [(workspace_id, channel, address, reason, detail, now_ms)],
        conflict="workspace_id, channel, address",
    )
    return True


def unsuppress(conn: Connection, workspace_id: str, channel: str, address: str) -> bool:
    """Lift the address's suppression, the one an erasure left hashed included."""
    result = conn.execute(
        delete(suppressions).where(
            suppressions.c.workspace_id == workspace_id,
            suppressions.c.channel == channel,
            suppressions.c.address.in_(_spellings(workspace_id, channel, address)),
        )
    )
    return bool(result.rowcount)


def suppression_of(conn: Connection, workspace_id: str, channel: str, address: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(suppressions)
        .where(
            suppressions.c.workspace_id == workspace_id,
            suppressions.c.channel == channel,
            suppressions.c.address.in_(_spellings(workspace_id, channel, address)),
        )
        .order_by(suppressions.c.address)
        .limit(1)  # the plain spelling sorts before "erased:…"
    ).one_or_none()
    return _suppression_view(row) if row is not None else None


def list_suppressions(
    conn: Connection, workspace_id: str, channel: str | None = None, limit: int = 1000, after: str | None = None
) -> list[dict[str, Any]]:
    query = select(suppressions).where(suppressions.c.workspace_id == workspace_id)
    if channel:
        query = query.where(suppressions.c.channel == channel)
    if after:
        query = query.where(suppressions.c.address > after)
    rows = conn.execute(query.order_by(suppressions.c.address, suppressions.c.channel).limit(limit))
    return [_suppression_view(r) for r in rows]


def _suppression_view(row: Any) -> dict[str, Any]:
    return {
        "channel": row.channel,
        "address": row.address,
        "reason": row.reason,
        "detail": row.detail,
        "created_at_ms": row.created_at_ms,
    }


# -- subscriptions ------------------------------------------------------------------------------


def set_subscription(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    topic: str,
    subscribed: bool,
    now_ms: int,
    frequency: str | None = None,
) -> bool:
    """Record consent for a topic ("*" for all marketing); True if anything changed."""
    if frequency is not None and frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    where = (
        subscriptions.c.workspace_id == workspace_id,
        subscriptions.c.profile_id == profile_id,
        subscriptions.c.topic == topic,
    )
    row = conn.execute(select(subscriptions.c.subscribed, subscriptions.c.frequency).where(*where)).first()
    if row is None:
        sql.insert_rows(
            conn,
            "subscriptions",
            ("workspace_id", "profile_id", "topic", "subscribed", "frequency", "updated_at_ms"),
            [(workspace_id, profile_id, topic, int(subscribed), frequency or NORMAL, now_ms)],
            conflict="workspace_id, profile_id, topic",
        )
        return not subscribed or (frequency or NORMAL) != NORMAL
    new_frequency = frequency or row.frequency
    if bool(row.subscribed) == subscribed and row.frequency == new_frequency:
        return False
    conn.execute(
        update(subscriptions)
        .where(*where)
        .values(subscribed=int(subscribed), frequency=new_frequency, updated_at_ms=now_ms)
    )
    return True


def subscriptions_of(
    conn: Connection, workspace_id: str, profile_id: str, topics: Iterable[str] = ()
) -> dict[str, Any]:
    """{"subscribed": all marketing, "frequency", "topics": {topic: subscribed}}, the
    configured `topics` included (subscribed unless recorded otherwise)."""
    rows = conn.execute(
        select(
            subscriptions.c.topic, subscriptions.c.subscribed, subscriptions.c.frequency, subscriptions.c.updated_at_ms
        ).where(subscriptions.c.workspace_id == workspace_id, subscriptions.c.profile_id == profile_id)
    ).all()
    out: dict[str, Any] = {
        "subscribed": True,
        "frequency": NORMAL,
        "topics": {t: True for t in topics},
        "updated_at_ms": None,
    }
    for topic, subscribed, frequency, updated in rows:
        if topic == ALL:
            out["subscribed"], out["frequency"] = bool(subscribed), frequency
        else:
            out["topics"][topic] = bool(subscribed)
        out["updated_at_ms"] = max(out["updated_at_ms"] or 0, updated)
    return out


def merge_subscriptions(conn: Connection, workspace_id: str, source: str, target: str) -> int:
    """The choices a merged-away profile made (an anonymous visitor who unsubscribed, or
    picked topics) follow it into the profile it merged into: per topic ("*" included),
    the newer choice wins where both made one. Called by the ingest writer in the
    transaction of the merge, so no message is decided between the two. Returns how many
    of the source's choices were kept."""
    s = subscriptions.c
    columns = (s.topic, s.subscribed, s.frequency, s.updated_at_ms)
    theirs = conn.execute(select(*columns).where(s.workspace_id == workspace_id, s.profile_id == source)).all()
    if not theirs:
        return 0
    ours = {
        row.topic: row.updated_at_ms
        for row in conn.execute(
            select(s.topic, s.updated_at_ms).where(s.workspace_id == workspace_id, s.profile_id == target)
        )
    }
    kept = 0
    for row in theirs:
        values = {"subscribed": row.subscribed, "frequency": row.frequency, "updated_at_ms": row.updated_at_ms}
        if row.topic not in ours:
            conn.execute(
                insert(subscriptions).values(workspace_id=workspace_id, profile_id=target, topic=row.topic, **values)
            )
        elif row.updated_at_ms > ours[row.topic]:  # a tie keeps the known person's own choice
            conn.execute(
                update(subscriptions)
                .where(s.workspace_id == workspace_id, s.profile_id == target, s.topic == row.topic)
                .values(**values)
            )
        else:
            continue
        kept += 1
    conn.execute(delete(subscriptions).where(s.workspace_id == workspace_id, s.profile_id == source))
    return kept


# -- the decision -------------------------------------------------------------------------------


def decide(
    suppression_reason: str | None,
    consent: Mapping[str, tuple[bool, str]],
    marketing: bool,
    topic: str | None,
) -> ConsentState:
    """Pure: `consent` maps topic ("*" included) to (subscribed, frequency) as recorded."""
    frequency = consent.get(ALL, (True, NORMAL))[1]
    if suppression_reason is not None:
        return ConsentState(False, reasons.suppressed(suppression_reason), frequency, topic)
    if marketing:
        if not consent.get(ALL, (True, NORMAL))[0]:
            return ConsentState(False, reasons.unsubscribed(ALL), frequency, topic)
        if topic is not None and not consent.get(topic, (True, NORMAL))[0]:
            return ConsentState(False, reasons.unsubscribed(topic), frequency, topic)
    return ConsentState(True, None, frequency, topic)


def consent_state(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    channel: str,
    address: str | None,
    marketing: bool,
    topic: str | None = None,
) -> ConsentState:
    reason = None
    if address:
        reason = conn.execute(
            select(suppressions.c.reason)
            .where(
                suppressions.c.workspace_id == workspace_id,
                suppressions.c.channel == channel,
                suppressions.c.address.in_(_spellings(workspace_id, channel, address)),
            )
            .order_by(suppressions.c.address)
            .limit(1)
        ).scalar_one_or_none()
    rows = conn.execute(
        select(subscriptions.c.topic, subscriptions.c.subscribed, subscriptions.c.frequency).where(
            subscriptions.c.workspace_id == workspace_id, subscriptions.c.profile_id == profile_id
        )
    ).all()
    return decide(reason, {t: (bool(s), f) for t, s, f in rows}, marketing, topic)


def can_send(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    channel: str,
    address: str | None,
    marketing: bool,
    topic: str | None = None,
) -> tuple[bool, str | None]:
    """(True, None), or (False, why): the suppression list stops everything, consent gates marketing."""
    state = consent_state(conn, workspace_id, profile_id, channel, address, marketing, topic)
    return state.allowed, state.reason


class ConsentBatch:
    """What a dispatch round needs, read in a few queries for all its messages."""

    def __init__(self, conn: Connection, messages: Iterable[tuple[str, str, str, str | None]]) -> None:
        """`messages`: (workspace_id, profile_id, channel, address)."""
        items = list(messages)
        self.settings: dict[str, dict[str, Any]] = {ws: get_settings(conn, ws) for ws in {m[0] for m in items}}
        self.suppressed: dict[tuple[str, str, str], str] = {}
        # Each address as given and as an erasure hashes it: an erased person's suppression
        # still stops their address when it comes back on a new profile.
        addresses = sorted({m[3] for m in items if m[3]} | {erased_address(m[0], m[2], m[3]) for m in items if m[3]})
        if addresses:
            for ws, channel, address, reason in sql.select_in(
                conn, "SELECT workspace_id, channel, address, reason FROM suppressions WHERE address IN", addresses
            ):
                self.suppressed[(ws, channel, address)] = reason
        self.consent: dict[tuple[str, str], dict[str, tuple[bool, str]]] = {}
        profile_ids = sorted({m[1] for m in items})
        if profile_ids:
            for ws, pid, topic, subscribed, frequency in sql.select_in(
                conn,
                "SELECT workspace_id, profile_id, topic, subscribed, frequency FROM subscriptions WHERE profile_id IN",
                profile_ids,
            ):
                self.consent.setdefault((ws, pid), {})[topic] = (bool(subscribed), frequency)

    def state(
        self, workspace_id: str, profile_id: str, channel: str, address: str | None, marketing: bool, topic: str | None
    ) -> ConsentState:
        reason = None
        if address:
            reason = self.suppressed.get((workspace_id, channel, address)) or self.suppressed.get(
                (workspace_id, channel, erased_address(workspace_id, channel, address))
            )
        return decide(reason, self.consent.get((workspace_id, profile_id), {}), marketing, topic)
