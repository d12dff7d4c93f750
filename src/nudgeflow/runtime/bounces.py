"""Applying bounces and complaints, whoever reported them (a DSN by SMTP, a provider's webhook).

One shape for all sources (`Feedback`), one transaction per report:
- a hard bounce or a spam complaint puts the address on the workspace's suppression list
  (channel "email", through store/consent.suppress; a later reason replaces an earlier one);
- every bounce and complaint appends an event to the person's event log, "Email Bounced"
  or "Email Marked as Spam" (Segment's email spec names), so journeys can branch on them.
  A soft bounce is only that event: retrying the send is the dispatcher's business.

The person is found through the message when the report names our message key (the
outbox row of that key says whose message it was, merges followed); otherwise by the
`email` trait, with a scan of the workspace's profiles narrowed by a LIKE on the traits
text. That scan is acceptable for feedback volumes today; an index of email addresses is
the way out when it is not.

A notification item already applied is skipped whole (store/feedback_seen.py, by a digest
of the provider's event id): a provider delivering the same webhook twice, an MTA resending a
DSN, or someone replaying a captured webhook within its tolerance changes nothing, where the
suppression used to be written again (undoing an operator's unsuppress in between). Event
message ids are deterministic too (from the message key, else the provider's event id).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import Connection

from nudgeflow.model.event_names import EMAIL_BOUNCED, EMAIL_MARKED_AS_SPAM
from nudgeflow.store import consent, feedback_seen, outbox, profiles, rollups
from nudgeflow.store.event_log import append_events, appending, event_exists, event_row

log = logging.getLogger("nudgeflow.bounces")

EMAIL_CHANNEL = "email"

# Feedback types that mean "the person does not want this": they suppress the address.
SUPPRESSING_FEEDBACK = frozenset({"abuse", "fraud"})

Kind = Literal["hard", "soft", "complaint"]


@dataclass(frozen=True)
class Feedback:
    kind: Kind
    address: str
    provider: str  # smtp | ses | sendgrid | postmark | mailgun
    event_id: str  # the provider's id of this notification (idempotency when no message key)
    status: str | None = None  # enhanced status code, bounces only
    diagnostic: str | None = None
    message_key: str | None = None
    feedback_type: str | None = None  # complaints only
    occurred_at_ms: int | None = None

    @property
    def suppresses(self) -> bool:
        if self.kind == "hard":
            return True
        return self.kind == "complaint" and (self.feedback_type or "abuse") in SUPPRESSING_FEEDBACK


@dataclass
class Applied:
    bounces: int = 0
    complaints: int = 0
    suppressed: int = 0  # addresses newly suppressed
    events: int = 0  # events appended (a repeat appends none)
    unknown_people: int = 0  # feedback about an address no profile has
    repeated: int = 0  # items applied before (a redelivery or a replay): skipped whole
    details: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bounces": self.bounces,
            "complaints": self.complaints,
            "suppressed": self.suppressed,
            "events": self.events,
            "unknown_people": self.unknown_people,
            "repeated": self.repeated,
        }


def normalize_address(address: str) -> str:
    # Every mailbox provider treats addresses case-insensitively in practice, and a
    # suppression that misses "Bob@x" because it saw "bob@x" would be worse than useless.
    return address.strip().strip("<>").strip().lower()


def suppress_address(conn: Connection, workspace_id: str, address: str, reason: str, detail: str, now_ms: int) -> bool:
    """Put the address on the email suppression list (store/consent's one way to do it);
    True when it was not there yet. A later reason replaces an earlier one."""
    return consent.suppress(conn, workspace_id, EMAIL_CHANNEL, address, reason, now_ms, detail[:2000])


def find_profile(
    conn: Connection, workspace_id: str, address: str, message_key: str | None
) -> tuple[str, str | None] | None:
    """(profile id, userId) of the person the feedback is about, or None."""
    if message_key:
        owner = outbox.profile_of(conn, workspace_id, message_key)
        if owner is not None:
            found = profiles.id_and_user(conn, profiles.follow_merge(conn, workspace_id, owner))
            if found is not None:
                return found
    for pid, user_id, traits in profiles.mentioning(conn, workspace_id, address):
        try:
            email = orjson.loads(traits).get("email")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(email, str) and normalize_address(email) == address:
            return pid, user_id
    return None


def _item_digest(fb: Feedback) -> str:
    """What names one item of one notification, without the address in clear."""
    text = f"{fb.provider}\0{fb.event_id}\0{fb.address}\0{fb.kind}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _event_message_id(fb: Feedback) -> str:
    if fb.message_key:
        what = "complained" if fb.kind == "complaint" else f"bounced:{fb.kind}"
        return f"nudgeflow:{fb.message_key}:{what}:{fb.address}"[:512]
    digest = hashlib.sha256(f"{fb.provider}\0{fb.event_id}\0{fb.address}\0{fb.kind}".encode()).hexdigest()[:32]
    return f"nudgeflow:feedback:{fb.provider}:{digest}"


def _event_row(workspace_id: str, fb: Feedback, profile_id: str, user_id: str | None, now_ms: int) -> tuple[Any, ...]:
    message_id = _event_message_id(fb)
    at = fb.occurred_at_ms if fb.occurred_at_ms and fb.occurred_at_ms <= now_ms else now_ms
    if fb.kind == "complaint":
        name = EMAIL_MARKED_AS_SPAM
        properties: dict[str, Any] = {"feedback_type": fb.feedback_type or "abuse"}
    else:
        name = EMAIL_BOUNCED
        properties = {"kind": fb.kind, "status": fb.status, "diagnostic": fb.diagnostic}
    properties.update(
        {"message_key": fb.message_key, "provider": fb.provider, "email": fb.address, "channel": EMAIL_CHANNEL}
    )
    return event_row(workspace_id, profile_id, user_id, name, message_id, properties, now_ms, "nudgeflow-bounces", at)


def apply_feedback(conn: Connection, workspace_id: str, items: Iterable[Feedback], now_ms: int) -> Applied:
    """Suppress and record, in the caller's transaction; its events are logged with one take
    of the partitions' offsets for the whole notification (store/event_log.appending)."""
    with appending(conn):
        return _apply_feedback(conn, workspace_id, items, now_ms)


def _apply_feedback(conn: Connection, workspace_id: str, items: Iterable[Feedback], now_ms: int) -> Applied:
    out = Applied()
    feedback_seen.forget_old(conn, now_ms)
    for raw in items:
        fb = _cleaned(raw)
        if not fb.address:
            continue
        if not feedback_seen.first_time(conn, workspace_id, _item_digest(fb), now_ms):
            out.repeated += 1
            continue
        if fb.kind == "complaint":
            out.complaints += 1
        else:
            out.bounces += 1
        suppressed = False
        if fb.suppresses:
            reason = "complaint" if fb.kind == "complaint" else "hard_bounce"
            detail = (
                f"{fb.provider}: {fb.feedback_type or 'abuse'} complaint"
                if fb.kind == "complaint"
                else f"{fb.provider}: {fb.status or ''} {fb.diagnostic or ''}".strip()
            )
            suppressed = suppress_address(conn, workspace_id, fb.address, reason, detail, now_ms)
            out.suppressed += int(suppressed)
        person = find_profile(conn, workspace_id, fb.address, fb.message_key)
        if person is None:
            out.unknown_people += 1
            log.info("feedback about an address no profile has", extra={"provider": fb.provider, "kind": fb.kind})
        else:
            row = _event_row(workspace_id, fb, person[0], person[1], now_ms)
            if not event_exists(conn, workspace_id, row[1]):
                append_events(conn, [row])
                out.events += 1
        if fb.message_key:  # the report counts it against our message, once (store/rollups.py)
            fact = rollups.COMPLAINED if fb.kind == "complaint" else rollups.BOUNCED
            rollups.count_engagement(conn, workspace_id, fb.message_key, fact, now_ms)
        out.details.append({"kind": fb.kind, "suppressed": suppressed, "profile_id": person[0] if person else None})
    return out


def _cleaned(fb: Feedback) -> Feedback:
    """The address normalized; NUL characters out of every text field (PostgreSQL text
    cannot hold one, and a signed notification may still carry one). An address or message
    key that held one is no address or key of ours: dropped."""
    from dataclasses import fields, replace

    changes: dict[str, Any] = {}
    for f in fields(fb):
        value = getattr(fb, f.name)
        if isinstance(value, str) and "\x00" in value:
            changes[f.name] = (
                None if f.name == "message_key" else "" if f.name == "address" else value.replace("\x00", "")
            )
    address = changes.get("address", fb.address)
    if address and address != normalize_address(address):
        changes["address"] = normalize_address(address)
    return replace(fb, **changes) if changes else fb
