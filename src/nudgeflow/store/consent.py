"""Consent and suppression: who may be sent what.

Two lists, with different reach:

- the suppression list (`suppressions`: channel + address, with a reason: hard_bounce,
  complaint, manual, ...) stops every message to that address, transactional included;
- consent (`subscriptions`: per profile, channel and topic, topic "*" for all marketing of
  the channel, or one topic such as "offers") gates marketing messages only, on the
  message's channel only: an email unsubscribe stops marketing email, not push. Each row
  is a choice with its time, source and the message whose link recorded it. The email
  "*" row also holds the frequency the person asked for: "normal" or "fewer" (the engine
  learns it from the Subscription Preferences Updated event; the send policies'
  `fewer.caps` say what it means).

What no row means is the workspace's `consent` setting: `opt_out` (the default: the person
gave their address for it; an unsubscribe is what is recorded) or `opt_in` (marketing goes
only to a person with a recorded yes for the channel, to all marketing or to the message's
topic; else the reason is `no_consent`). decide() holds the rules.

The per-workspace tracking secret, public base URL, topics and consent settings live in
`workspace_settings.settings` (JSON), beside other components' settings: this module only
reads and writes its own keys (TRACKING_SECRET, PUBLIC_BASE_URL, TOPICS, TOPIC_BY_TEMPLATE,
TOPIC_BY_JOURNEY, CONSENT_MODE). The secret is created on first use and never logged.
Recording a choice together with its event is store/consent_records.py.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

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
CONSENT_MODE = "consent"  # "opt_out" | "opt_in"
OPT_OUT, OPT_IN = "opt_out", "opt_in"
MODES = (OPT_OUT, OPT_IN)
EMAIL, PUSH = "email", "push"

# The trait that holds a person's address on each channel (push addresses are device
# tokens, suppressed per token by the push channel itself).
ADDRESS_TRAIT = {"email": "email", "sms": "phone", "whatsapp": "phone"}


@dataclass(frozen=True, slots=True)
class ConsentState:
    allowed: bool
    # why not, in model/reasons.py's words: "suppressed:hard_bounce", "unsubscribed:*" (all
    # marketing), "unsubscribed:offers", "no_consent"
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
    """The workspace's link-signing secret, created (in this transaction) on first use.

    Two senders can reach the first use at once (two dispatchers, or a dispatcher and a
    test's run): each would write a secret of its own, the last commit would win, and every
    link the other signed would be refused. So the creating side locks the settings row and
    reads it again (the other's secret, once committed, is what it finds); with no row yet,
    the second insert does nothing and the secret read back is the first one's."""
    secret = tracking_secret_in(get_settings(conn, workspace_id))
    if secret is not None:
        return secret
    exists, current = load_document(conn, workspace_id, for_update=True)
    secret = tracking_secret_in(current)
    if secret is not None:
        return secret
    current[TRACKING_SECRET] = new_secret()
    store_document(conn, workspace_id, current, now_ms, exists=exists)
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


class Choice(NamedTuple):
    """One recorded choice of a person for a channel and topic."""

    subscribed: bool
    frequency: str = NORMAL
    at_ms: int = 0  # when it was made (made again: a repeated unsubscribe, a confirmation)
    source: str | None = None  # None: recorded before choices had sources (migration 0014)

    @property
    def consent(self) -> bool:
        """Whether it counts as consent in an opt_in workspace: a yes with a known source.
        A row from before sources were kept may be a default the old preference center
        stored, not a choice the person made."""
        return self.subscribed and self.source is not None


Choices = dict[str, Choice]  # topic ("*" included) -> choice, for one channel


def _channel_choices(conn: Connection, workspace_id: str, profile_id: str, channel: str) -> Choices:
    s = subscriptions.c
    rows = conn.execute(
        select(s.topic, s.subscribed, s.frequency, s.updated_at_ms, s.source).where(
            s.workspace_id == workspace_id, s.profile_id == profile_id, s.channel == channel
        )
    )
    return {r.topic: Choice(bool(r.subscribed), r.frequency, r.updated_at_ms, r.source) for r in rows}


def _lifted(choices: Choices, topic: str, old: Choice | None, subscribed: bool, now_ms: int) -> bool:
    """Whether making the same choice again, now, changes what is sent: a topic's yes made
    after an all-marketing no is an exception to it (decide), so a yes re-made lifts a no
    that was newer than it, and a no to all re-made covers the yeses made since it."""
    every = choices.get(ALL)
    if old is None:
        return False
    if topic != ALL and subscribed:
        return every is not None and not every.subscribed and old.at_ms <= every.at_ms < now_ms
    if topic == ALL and not subscribed:
        return any(t != ALL and c.subscribed and c.at_ms > old.at_ms for t, c in choices.items())
    return False


def set_subscription(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    topic: str,
    subscribed: bool,
    now_ms: int,
    frequency: str | None = None,
    *,
    channel: str = EMAIL,
    source: str | None = None,
    message_key: str | None = None,
) -> bool:
    """Record a choice for a channel and topic ("*" for all its marketing), made at `now_ms`
    (made again, it is dated again); True if it changes anything: its value, whether it
    counts as consent, or what decide() lets through. `frequency` (the "*" row's) is
    kept when None."""
    if frequency is not None and frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    choices = _channel_choices(conn, workspace_id, profile_id, channel)
    old = choices.get(topic)
    new_frequency = frequency or (old.frequency if old else NORMAL)
    new = Choice(subscribed, new_frequency, now_ms, source)
    values = {
        "subscribed": int(subscribed),
        "frequency": new_frequency,
        "updated_at_ms": now_ms,
        "source": source,
        "message_key": message_key,
    }
    if old is None:
        sql.insert_rows(
            conn,
            "subscriptions",
            ("workspace_id", "profile_id", "channel", "topic", *values),
            [(workspace_id, profile_id, channel, topic, *values.values())],
            conflict="workspace_id, profile_id, channel, topic",
            update=tuple(values),
        )
        return True
    conn.execute(
        update(subscriptions)
        .where(
            subscriptions.c.workspace_id == workspace_id,
            subscriptions.c.profile_id == profile_id,
            subscriptions.c.channel == channel,
            subscriptions.c.topic == topic,
        )
        .values(**values)
    )
    return (
        old.subscribed != subscribed
        or old.frequency != new_frequency
        or old.consent != new.consent
        or _lifted(choices, topic, old, subscribed, now_ms)
    )


def set_frequency(
    conn: Connection, workspace_id: str, profile_id: str, frequency: str, now_ms: int, *, channel: str = EMAIL
) -> bool:
    """The frequency asked for on a channel, on its "*" row; True if it changed. Not a choice
    of consent: an existing row keeps its value and date, a new one is a yes of no source
    (the default, never consent in an opt_in workspace)."""
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    old = _channel_choices(conn, workspace_id, profile_id, channel).get(ALL)
    if old is None:
        sql.insert_rows(
            conn,
            "subscriptions",
            ("workspace_id", "profile_id", "channel", "topic", "subscribed", "frequency", "updated_at_ms"),
            [(workspace_id, profile_id, channel, ALL, 1, frequency, now_ms)],
            conflict="workspace_id, profile_id, channel, topic",
        )
        return frequency != NORMAL
    if old.frequency == frequency:
        return False
    conn.execute(
        update(subscriptions)
        .where(
            subscriptions.c.workspace_id == workspace_id,
            subscriptions.c.profile_id == profile_id,
            subscriptions.c.channel == channel,
            subscriptions.c.topic == ALL,
        )
        .values(frequency=frequency)
    )
    return True


def choices_of(conn: Connection, workspace_id: str, profile_id: str) -> list[dict[str, Any]]:
    """Every recorded choice of the person, by channel then topic."""
    s = subscriptions.c
    rows = conn.execute(
        select(s.channel, s.topic, s.subscribed, s.frequency, s.updated_at_ms, s.source, s.message_key)
        .where(s.workspace_id == workspace_id, s.profile_id == profile_id)
        .order_by(s.channel, s.topic)
    )
    return [
        {
            "channel": r.channel,
            "topic": r.topic,
            "subscribed": bool(r.subscribed),
            "frequency": r.frequency,
            "source": r.source,
            "message_key": r.message_key,
            "updated_at_ms": r.updated_at_ms,
        }
        for r in rows
    ]


def all_choices(conn: Connection, workspace_id: str, profile_id: str) -> dict[str, Choices]:
    """The person's choices by channel, then topic."""
    out: dict[str, Choices] = {}
    for row in choices_of(conn, workspace_id, profile_id):
        out.setdefault(row["channel"], {})[row["topic"]] = Choice(
            row["subscribed"], row["frequency"], row["updated_at_ms"], row["source"]
        )
    return out


def subscriptions_of(
    conn: Connection, workspace_id: str, profile_id: str, topics: Iterable[str] = (), channel: str = EMAIL
) -> dict[str, Any]:
    """One channel's choices as a page shows them: {"subscribed": all marketing, "frequency",
    "topics": {topic: subscribed}, "updated_at_ms"}, the configured `topics` included
    (subscribed unless recorded otherwise: the opt_out reading)."""
    out: dict[str, Any] = {
        "subscribed": True,
        "frequency": NORMAL,
        "topics": {t: True for t in topics},
        "updated_at_ms": None,
    }
    for topic, choice in _channel_choices(conn, workspace_id, profile_id, channel).items():
        if topic == ALL:
            out["subscribed"], out["frequency"] = choice.subscribed, choice.frequency
        else:
            out["topics"][topic] = choice.subscribed
        out["updated_at_ms"] = max(out["updated_at_ms"] or 0, choice.at_ms)
    return out


def merge_subscriptions(conn: Connection, workspace_id: str, source: str, target: str) -> int:
    """The choices a merged-away profile made (an anonymous visitor who unsubscribed, or
    picked topics) follow it into the profile it merged into: per channel and topic ("*"
    included), the newer choice wins where both made one. Called by the ingest writer in
    the transaction of the merge, so no message is decided between the two. Returns how
    many of the source's choices were kept."""
    s = subscriptions.c
    columns = (s.channel, s.topic, s.subscribed, s.frequency, s.updated_at_ms, s.source, s.message_key)
    theirs = conn.execute(select(*columns).where(s.workspace_id == workspace_id, s.profile_id == source)).all()
    if not theirs:
        return 0
    ours = {
        (row.channel, row.topic): row.updated_at_ms
        for row in conn.execute(
            select(s.channel, s.topic, s.updated_at_ms).where(s.workspace_id == workspace_id, s.profile_id == target)
        )
    }
    kept = 0
    for row in theirs:
        values = {
            "subscribed": row.subscribed,
            "frequency": row.frequency,
            "updated_at_ms": row.updated_at_ms,
            "source": row.source,
            "message_key": row.message_key,
        }
        key = (row.channel, row.topic)
        if key not in ours:
            conn.execute(
                insert(subscriptions).values(
                    workspace_id=workspace_id, profile_id=target, channel=row.channel, topic=row.topic, **values
                )
            )
        elif row.updated_at_ms > ours[key]:  # a tie keeps the known person's own choice
            conn.execute(
                update(subscriptions)
                .where(
                    s.workspace_id == workspace_id,
                    s.profile_id == target,
                    s.channel == row.channel,
                    s.topic == row.topic,
                )
                .values(**values)
            )
        else:
            continue
        kept += 1
    conn.execute(delete(subscriptions).where(s.workspace_id == workspace_id, s.profile_id == source))
    return kept


# -- the decision -------------------------------------------------------------------------------


def consent_mode(settings: Mapping[str, Any]) -> str:
    """The workspace's `consent` setting: opt_out (the default) or opt_in."""
    return OPT_IN if settings.get(CONSENT_MODE) == OPT_IN else OPT_OUT


def decide(
    suppression_reason: str | None,
    choices: Mapping[str, Choice],
    marketing: bool,
    topic: str | None,
    mode: str = OPT_OUT,
) -> ConsentState:
    """Pure: may this message go? `choices` are the person's for the message's channel.

    The suppression list stops everything. Marketing is then stopped by a no to its topic;
    by a no to all marketing of the channel ("*"), unless the topic was said yes to after
    it (a person who left everything and later confirmed one newsletter gets that
    newsletter, nothing else); and, in an opt_in workspace, by the want of a yes to all
    marketing of the channel or to the topic (`no_consent`)."""
    every = choices.get(ALL)
    frequency = every.frequency if every is not None else NORMAL
    if topic == ALL:
        topic = None
    if suppression_reason is not None:
        return ConsentState(False, reasons.suppressed(suppression_reason), frequency, topic)
    if not marketing:
        return ConsentState(True, None, frequency, topic)
    own = choices.get(topic) if topic is not None else None
    if (
        every is not None
        and not every.subscribed
        and not (own is not None and own.subscribed and own.at_ms > every.at_ms)
    ):
        return ConsentState(False, reasons.unsubscribed(ALL), frequency, topic)
    if own is not None and not own.subscribed:
        return ConsentState(False, reasons.unsubscribed(topic), frequency, topic)
    if mode == OPT_IN and not ((every is not None and every.consent) or (own is not None and own.consent)):
        return ConsentState(False, reasons.NO_CONSENT, frequency, topic)
    return ConsentState(True, None, frequency, topic)


def consent_state(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    channel: str,
    address: str | None,
    marketing: bool,
    topic: str | None = None,
    mode: str | None = None,
) -> ConsentState:
    """decide() for one message, read from the database (`mode`: the workspace's when None)."""
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
    if mode is None:
        mode = consent_mode(get_settings(conn, workspace_id))
    choices = _channel_choices(conn, workspace_id, profile_id, channel)
    return decide(reason, choices, marketing, topic, mode)


def can_send(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    channel: str,
    address: str | None,
    marketing: bool,
    topic: str | None = None,
    mode: str | None = None,
) -> tuple[bool, str | None]:
    """(True, None), or (False, why): the suppression list stops everything, consent gates marketing."""
    state = consent_state(conn, workspace_id, profile_id, channel, address, marketing, topic, mode)
    return state.allowed, state.reason


class ConsentBatch:
    """What a dispatch round needs, read in a few queries for all its messages."""

    def __init__(self, conn: Connection, messages: Iterable[tuple[str, str, str, str | None]]) -> None:
        """`messages`: (workspace_id, profile_id, channel, address)."""
        items = list(messages)
        self.settings: dict[str, dict[str, Any]] = {ws: get_settings(conn, ws) for ws in {m[0] for m in items}}
        self.modes = {ws: consent_mode(settings) for ws, settings in self.settings.items()}
        self.suppressed: dict[tuple[str, str, str], str] = {}
        # Each address as given and as an erasure hashes it: an erased person's suppression
        # still stops their address when it comes back on a new profile.
        addresses = sorted({m[3] for m in items if m[3]} | {erased_address(m[0], m[2], m[3]) for m in items if m[3]})
        if addresses:
            for ws, channel, address, reason in sql.select_in(
                conn, "SELECT workspace_id, channel, address, reason FROM suppressions WHERE address IN", addresses
            ):
                self.suppressed[(ws, channel, address)] = reason
        self.consent: dict[tuple[str, str, str], Choices] = {}
        profile_ids = sorted({m[1] for m in items})
        if profile_ids:
            for ws, pid, channel, topic, subscribed, frequency, at_ms, source in sql.select_in(
                conn,
                "SELECT workspace_id, profile_id, channel, topic, subscribed, frequency, updated_at_ms, source "
                "FROM subscriptions WHERE profile_id IN",
                profile_ids,
            ):
                self.consent.setdefault((ws, pid, channel), {})[topic] = Choice(
                    bool(subscribed), frequency, at_ms, source
                )

    def state(
        self, workspace_id: str, profile_id: str, channel: str, address: str | None, marketing: bool, topic: str | None
    ) -> ConsentState:
        reason = None
        if address:
            reason = self.suppressed.get((workspace_id, channel, address)) or self.suppressed.get(
                (workspace_id, channel, erased_address(workspace_id, channel, address))
            )
        choices = self.consent.get((workspace_id, profile_id, channel), {})
        return decide(reason, choices, marketing, topic, self.modes.get(workspace_id, OPT_OUT))
