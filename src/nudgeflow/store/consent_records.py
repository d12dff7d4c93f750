"""Recording consent: each change is a choice in `subscriptions` and an event in the person's log.

Whatever makes the change (the unsubscribe link, the preference center, a double opt-in
confirmation, the admin API or CLI, an identify trait the workspace maps to a topic), it
goes through `record`, which writes the choice (store/consent.set_subscription) and, when
it changed anything, appends **Consent Updated** to the person's event log in the same
transaction:

    {"channel": "email", "topic": "news", "subscribed": true, "source": "double_opt_in",
     "message_key": "…"}          (message_key: when a message's link recorded it)

so journeys can trigger, branch or exit on it, and segments can read it. The pages'
Segment-spec events ("Unsubscribed", "Subscription Preferences Updated") are the tracking
routes' own, beside it (web/tracking.py).

Also here: the workspace's trait-to-consent map for identify calls (`consent_traits`), the
person's consent as the admin API and CLI show it (`view`), and a double opt-in request
queued as a transactional email (`request_confirmation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select

from nudgeflow.errors import StoreError
from nudgeflow.model.event_names import CONSENT_UPDATED
from nudgeflow.model.iso_time import iso
from nudgeflow.store import consent, outbox
from nudgeflow.store.event_log import append_events, event_row
from nudgeflow.store.schema import device_tokens, push_subscriptions
from nudgeflow.store.templates import get_template

# Where a choice came from (the `source` of a subscriptions row and of its event).
API, CLI, IDENTIFY = "api", "cli", "identify"
PREFERENCES, UNSUBSCRIBE_LINK, DOUBLE_OPT_IN = "preferences", "unsubscribe_link", "double_opt_in"
SOURCES = (API, CLI, IDENTIFY, PREFERENCES, UNSUBSCRIBE_LINK, DOUBLE_OPT_IN)

CONSENT_TRAITS = "consent_traits"  # settings: {"newsletter_opt_in": {"channel": "email", "topic": "news"}}
CONFIRMATION_TEMPLATE = "consent_confirmation_template"  # settings: the template request_confirmation sends
LIBRARY = "nudgeflow-consent"
CONFIRMATION_STEP = "request_confirmation"  # the outbox `step` of a confirmation an admin asked for

# The channels a consent view always shows; others appear once a choice is recorded for them.
SHOWN_CHANNELS = (consent.EMAIL, consent.PUSH)
PUSH_SECTIONS = ("fcm", "apns")  # settings sections that mean the workspace sends push


class ConsentProblem(StoreError, ValueError):
    """A request that cannot be carried out, with the reason (a 422 / a CLI error)."""


@dataclass(frozen=True, slots=True)
class Person:
    """Whose choice it is: the profile (after merges) and its userId, for the event."""

    profile_id: str
    user_id: str | None


def record(
    conn: Connection,
    workspace_id: str,
    person: Person,
    channel: str,
    topic: str,
    subscribed: bool,
    now_ms: int,
    source: str,
    *,
    message_key: str | None = None,
    event_id: str | None = None,
) -> bool:
    """Record one choice and, if it changed anything, its Consent Updated event. `event_id`
    (a deterministic message id) makes a repeat store the event once."""
    changed = consent.set_subscription(
        conn,
        workspace_id,
        person.profile_id,
        topic,
        subscribed,
        now_ms,
        channel=channel,
        source=source,
        message_key=message_key,
    )
    if changed:
        properties: dict[str, Any] = {"channel": channel, "topic": topic, "subscribed": subscribed, "source": source}
        if message_key is not None:
            properties["message_key"] = message_key
        message_id = event_id or f"nudgeflow:consent:{person.profile_id}:{channel}:{topic}:{int(subscribed)}:{now_ms}"
        append_events(
            conn,
            [
                event_row(
                    workspace_id,
                    person.profile_id,
                    person.user_id,
                    CONSENT_UPDATED,
                    message_id,
                    properties,
                    now_ms,
                    LIBRARY,
                )
            ],
        )
    return changed


# -- identify traits ------------------------------------------------------------------------------


def consent_traits_of(settings: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The workspace's map of trait name -> (channel, topic); malformed entries are skipped
    (the settings API refuses them: model/workspace_keys.check_consent_traits)."""
    found = settings.get(CONSENT_TRAITS)
    out: dict[str, tuple[str, str]] = {}
    if not isinstance(found, dict):
        return out
    for trait, target in found.items():
        if isinstance(trait, str) and isinstance(target, dict):
            channel, topic = target.get("channel", consent.EMAIL), target.get("topic", consent.ALL)
            if isinstance(channel, str) and channel and isinstance(topic, str) and topic:
                out[trait] = (channel, topic)
    return out


@dataclass(frozen=True, slots=True)
class TraitChange:
    """A mapped trait an identify set to true or false, where before it held something else."""

    person: Person
    message_id: str  # the identify's
    trait: str
    value: bool


def apply_trait_changes(
    conn: Connection,
    workspace_id: str,
    mapping: Mapping[str, tuple[str, str]],
    changes: Sequence[TraitChange],
    now_ms: int,
) -> int:
    """Record the consent the changed traits map to (source identify); returns how many
    changed anything. Only a change of the trait's value counts: an app that sends every
    trait on every identify does not say yes again each time (which would undo a later
    unsubscribe: see store/consent.decide)."""
    recorded = 0
    for change in changes:
        channel, topic = mapping[change.trait]
        event_id = f"nudgeflow:consent:{change.message_id}:{channel}:{topic}"
        recorded += record(
            conn,
            workspace_id,
            change.person,
            channel,
            topic,
            change.value,
            now_ms,
            IDENTIFY,
            event_id=event_id,
        )
    return recorded


def channels_in_use(conn: Connection, workspace_id: str, profile_id: str, settings: Mapping[str, Any]) -> list[str]:
    """The channels a person's preference center offers: email (it is reached from an
    email), and push when the workspace sends push: it has FCM or APNs settings of its own,
    or someone in it has a push target (every workspace has Web Push keys from its start,
    so those say nothing), or the person made a push choice."""
    channels = [consent.EMAIL]
    if any(isinstance(settings.get(section), dict) for section in PUSH_SECTIONS) or _has_push(
        conn, workspace_id, profile_id
    ):
        channels.append(consent.PUSH)
    return channels


def _has_push(conn: Connection, workspace_id: str, profile_id: str) -> bool:
    for table in (push_subscriptions, device_tokens):
        found = conn.execute(select(table.c.workspace_id).where(table.c.workspace_id == workspace_id).limit(1)).first()
        if found is not None:
            return True
    return any(row["channel"] == consent.PUSH for row in consent.choices_of(conn, workspace_id, profile_id))


# -- what the admin API and CLI show -------------------------------------------------------------


def view(conn: Connection, workspace_id: str, profile_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The person's consent per channel: for all marketing ("*") and each topic, whether a
    marketing message would be let through now (`allowed`, and `reason` if not) and the
    choice recorded, if any (with its source, message and time)."""
    mode = consent.consent_mode(settings)
    topics = [t for t, _ in consent.topics_of(settings)]
    rows = consent.choices_of(conn, workspace_id, profile_id)
    by_channel: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_channel.setdefault(row["channel"], {})[row["topic"]] = row
    channels = [*SHOWN_CHANNELS, *sorted(c for c in by_channel if c not in SHOWN_CHANNELS)]
    out: dict[str, Any] = {"profile_id": profile_id, "mode": mode, "channels": {}}
    for channel in channels:
        recorded = by_channel.get(channel, {})
        choices = {
            t: consent.Choice(r["subscribed"], r["frequency"], r["updated_at_ms"], r["source"])
            for t, r in recorded.items()
        }
        names = [*topics, *sorted(t for t in recorded if t != consent.ALL and t not in topics)]
        every = choices.get(consent.ALL)
        out["channels"][channel] = {
            "frequency": every.frequency if every is not None else consent.NORMAL,
            "all": _entry(recorded.get(consent.ALL), consent.decide(None, choices, True, None, mode)),
            "topics": {t: _entry(recorded.get(t), consent.decide(None, choices, True, t, mode)) for t in names},
        }
    return out


def _entry(row: dict[str, Any] | None, state: consent.ConsentState) -> dict[str, Any]:
    entry: dict[str, Any] = {"allowed": state.allowed}
    if state.reason is not None:
        entry["reason"] = state.reason
    entry["recorded"] = (
        None
        if row is None
        else {
            "subscribed": row["subscribed"],
            "source": row["source"],
            "message_key": row["message_key"],
            "at": iso(row["updated_at_ms"]),
        }
    )
    return entry


# -- double opt-in ------------------------------------------------------------------------------


def request_confirmation(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    topic: str,
    now_ms: int,
    template: str | None = None,
    channel: str = consent.EMAIL,
) -> str:
    """Queue a confirmation email to the person: a transactional message (it asks for
    consent, so consent cannot gate it) of `template` (else the workspace's
    consent_confirmation_template) whose `{{ links.confirm_subscription }}` confirms
    `topic` on email. Returns its message key. Raises ConsentProblem."""
    if channel != consent.EMAIL:
        raise ConsentProblem(f"a confirmation is asked for by email only, not {channel!r}")
    settings = consent.get_settings(conn, workspace_id)
    name = template or settings.get(CONFIRMATION_TEMPLATE)
    if not isinstance(name, str) or not name:
        raise ConsentProblem(
            f"no template: name one, or set the workspace's {CONFIRMATION_TEMPLATE} "
            "(an email template with {{ links.confirm_subscription }})"
        )
    found = get_template(conn, workspace_id, name)
    if found is None:
        raise ConsentProblem(f"no template named {name!r}")
    if found["channel"] != consent.EMAIL:
        raise ConsentProblem(f"template {name!r} is a {found['channel']} template, not an email one")
    key = f"consent:{profile_id}:{channel}:{topic}:{now_ms}"
    context = {"topic": None if topic == consent.ALL else topic, "consent": {"channel": channel, "topic": topic}}
    values: dict[str, Any] = {
        "workspace_id": workspace_id,
        "idempotency_key": key,
        "profile_id": profile_id,
        "run_id": "",
        "journey_id": "",
        "journey_version": 0,
        "step": CONFIRMATION_STEP,
        "channel": consent.EMAIL,
        "template": name,
        "variant": None,
        "marketing": 0,
        "payload": orjson.dumps({k: v for k, v in context.items() if v is not None}).decode(),
        "status": outbox.PENDING,
        "attempts": 0,
        "next_attempt_at_ms": now_ms,
        "created_at_ms": now_ms,
        "updated_at_ms": now_ms,
    }
    # By name: columns the outbox gains later (a reason, …) are left to their defaults.
    outbox.queue(conn, [tuple(values.get(column) for column in outbox.OUTBOX_COLUMNS)])
    return key
