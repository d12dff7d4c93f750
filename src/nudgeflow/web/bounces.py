"""Bounce and complaint webhooks: Amazon SES (via SNS), SendGrid, Postmark, Mailgun.

Each provider posts to `/webhooks/<provider>/<workspace_id>`: the workspace is named by the
URL, and its secrets for that provider live in its settings, section "bounce_webhooks"
(see docs/bounces.md):

    {"ses": {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ses-feedback"]},
     "sendgrid": {"public_key": "<base64 DER or PEM of the verification key>"},
     "postmark": {"username": "...", "password": "..."},
     "mailgun": {"signing_key": "..."}}

Every request is authenticated the way its provider signs it, before anything is read
from it or recorded:
- SES/SNS: the SNS signature (SignatureVersion 1, SHA1withRSA, or 2, SHA256withRSA) over
  the documented fields, with the certificate fetched from SigningCertURL, which must be
  https on sns.<region>.amazonaws.com (certificates cached by URL); the TopicArn must be on
  the workspace's allow-list. A SubscriptionConfirmation is confirmed by fetching its
  SubscribeURL (held to the same host rule).
- SendGrid: the ECDSA P-256 signature of timestamp + raw body (headers
  X-Twilio-Email-Event-Webhook-Signature and -Timestamp) with the workspace's public key.
- SES/SNS and SendGrid: the signed timestamp (SNS Timestamp, the SendGrid timestamp header)
  must be within SIGNED_MAX_AGE_S (10 minutes) of the server's clock: an older capture
  cannot be replayed.
- Postmark: HTTP Basic credentials set on the webhook URL, compared in constant time.
- Mailgun: HMAC-SHA256(signing key, timestamp + token) = signature; timestamps more than
  5 minutes off are stale and a token is accepted once (kept in this process's memory for
  the window: several API processes behind a balancer each keep their own).
Whatever gets past these, a notification item already applied (by the provider's event id)
is skipped whole (runtime/bounces, store/feedback_seen): a replay within the window, or a
provider's redelivery, changes nothing.

Answers: 401 without credentials, 403 with wrong ones (or an unconfigured provider, an
unknown topic, a stale SNS or SendGrid timestamp, a stale or replayed Mailgun token), 404
for an unknown workspace, 400 for a body that is not what the provider sends (the detail
says what is wrong), 503 when the database cannot record it now (the provider retries),
200 with counts otherwise. Nothing is recorded unless the request is authentic and well
formed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nudgeflow.core.clock import to_ms
from nudgeflow.errors import WebError
from nudgeflow.runtime.bounces import Feedback, apply_feedback
from nudgeflow.store.bounce_webhooks import SECTION, webhook_settings
from nudgeflow.store.workspaces import workspace_exists
from nudgeflow.web.state import AppState, State

log = logging.getLogger("nudgeflow.bounces.webhooks")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAILGUN_MAX_AGE_S = 300
# How far from the server's clock the signed timestamp of an SNS message or a SendGrid
# request may be. The signature covers the timestamp, so a captured request can be replayed
# only this long; within it, a replay is a repeat that changes nothing (store/feedback_seen).
# SNS keeps a message's Timestamp on its retries (its default policy retries for under a
# minute); SendGrid signs each POST when it sends it.
SIGNED_MAX_AGE_S = 600
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

Fetch = Callable[[str], Awaitable[bytes]]


class Reject(WebError):
    """An answer other than 200: status and what is wrong."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


async def _http_get(url: str) -> bytes:
    import httpx

    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


@dataclass
class BounceWebhooks:
    """What the webhook routes keep between requests; tests replace `fetch` and the allow-list."""

    fetch: Fetch = _http_get  # certificates and SubscribeURL confirmations
    # URL prefixes trusted besides https://sns.<region>.amazonaws.com/ — for tests only
    # (a local server with a self-signed certificate); empty in production.
    sns_test_url_prefixes: tuple[str, ...] = ()
    certificates: dict[str, Any] = field(default_factory=dict)  # SigningCertURL -> public key
    mailgun_tokens: dict[str, float] = field(default_factory=dict)  # token -> forget after (epoch s)
    confirmed_subscriptions: list[str] = field(default_factory=list)  # TopicArns confirmed (for the log and tests)

    def trusted_sns_url(self, url: str) -> bool:
        if any(url.startswith(prefix) for prefix in self.sns_test_url_prefixes):
            return True
        parts = urlsplit(url)
        return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and parts.port in (None, 443)

    async def sns_public_key(self, url: str) -> Any:
        key = self.certificates.get(url)
        if key is not None:
            return key
        if not self.trusted_sns_url(url) or not urlsplit(url).path.endswith(".pem"):
            raise Reject(403, "SigningCertURL is not an https .pem URL on sns.<region>.amazonaws.com")
        try:
            pem = await self.fetch(url)
            key = x509.load_pem_x509_certificate(pem).public_key()
        except Exception as exc:
            raise Reject(403, f"the signing certificate could not be fetched or read ({type(exc).__name__})") from exc
        if len(self.certificates) > 100:  # a handful of URLs in practice; never grow without bound
            self.certificates.clear()
        self.certificates[url] = key
        return key

    def mailgun_token_fresh(self, token: str, now_s: float) -> bool:
        """True the first time a token is seen within the window; remembers it."""
        for old in [t for t, until in self.mailgun_tokens.items() if until < now_s]:
            del self.mailgun_tokens[old]
        if token in self.mailgun_tokens:
            return False
        self.mailgun_tokens[token] = now_s + 2 * MAILGUN_MAX_AGE_S
        return True


# -- helpers -----------------------------------------------------------------------------------


def _hooks(state: AppState) -> BounceWebhooks:
    hooks = getattr(state, "bounces", None)
    if hooks is None:
        hooks = BounceWebhooks()
        state.bounces = hooks
    return hooks


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Reject(413, f"body over {MAX_BODY_BYTES} bytes")
    # Read as it comes, and stop past the limit: a body sent without a length (chunked) was
    # read whole into memory before it was measured, and this runs before any credential is.
    pieces: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise Reject(413, f"body over {MAX_BODY_BYTES} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def _json(body: bytes, what: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Reject(400, f"{what} is not JSON: {exc}") from exc


async def _provider_settings(state: AppState, workspace_id: str, provider: str) -> dict[str, Any]:
    if "\x00" in workspace_id:  # no workspace id has one, and PostgreSQL cannot compare it (was a 503)
        raise Reject(404, f"no workspace {workspace_id!r}")

    def read() -> tuple[bool, Any]:
        with state.engine.connect() as conn:
            if not workspace_exists(conn, workspace_id):
                return False, None
            return True, webhook_settings(conn, workspace_id)

    exists, section = await run_in_threadpool(read)
    if not exists:
        raise Reject(404, f"no workspace {workspace_id!r}")
    config = section.get(provider) if isinstance(section, dict) else None
    if not isinstance(config, dict) or not config:
        raise Reject(403, f"{provider} webhooks are not configured for this workspace (settings {SECTION}.{provider})")
    return config


def _status_of(*texts: Any, default: str) -> str:
    for text in texts:
        if text:
            match = _STATUS.search(str(text))
            if match:
                return ".".join(match.groups())
    return default


def _ms(value: Any) -> int | None:
    """An ISO 8601 string or epoch seconds -> ms; None when it is neither."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(float(value) * 1000)
        if isinstance(value, str) and value:
            return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        return None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (absent, null, a list, ...)."""
    return value if isinstance(value, dict) else {}


async def _apply(state: AppState, workspace_id: str, items: list[Feedback], ignored: int = 0) -> Response:
    now_ms = to_ms(state.clock.now())
    if items:
        applied = await state.committer.run_job(lambda conn: apply_feedback(conn, workspace_id, items, now_ms))
        counts = applied.as_dict()
    else:
        counts = {"bounces": 0, "complaints": 0, "suppressed": 0, "events": 0, "unknown_people": 0, "repeated": 0}
    return JSONResponse({**counts, "ignored": ignored})


def _fresh(timestamp_ms: int | None, now_ms: int, what: str) -> None:
    """Refuse a signed timestamp (absent, unreadable, or too far from now): a replay, or a
    clock that is off."""
    if timestamp_ms is None:
        raise Reject(403, f"{what} is not a timestamp")
    age_s = (now_ms - timestamp_ms) / 1000
    if abs(age_s) > SIGNED_MAX_AGE_S:
        when = f"{int(age_s)} s old" if age_s > 0 else f"{int(-age_s)} s in the future"
        raise Reject(403, f"{what} is {when}, more than the {SIGNED_MAX_AGE_S} s allowed (a replay, or a clock off)")


async def _guard(request: Request, handler: Callable[[], Awaitable[Response]], provider: str) -> Response:
    try:
        return await handler()
    except Reject as exc:
        if exc.status in (401, 403):
            log.warning("webhook rejected", extra={"provider": provider, "reason": exc.detail})
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)
    except Exception as exc:  # the database or the writer: the provider retries later
        log.error("webhook not recorded", extra={"provider": provider, "error": type(exc).__name__}, exc_info=True)
        return JSONResponse({"detail": "could not record the notification now; retry later"}, 503)


# -- Amazon SES via SNS ------------------------------------------------------------------------

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical string SNS signs: each present field as name, newline, value, newline."""
    fields = _SNS_FIELDS[message["Type"]]
    out = []
    for name in fields:
        if name == "Subject" and message.get("Subject") is None:
            continue  # the one optional field
        out.append(f"{name}\n{message[name]}\n")
    return "".join(out).encode()


async def _verify_sns(hooks: BounceWebhooks, message: dict[str, Any]) -> None:
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise Reject(403, f"SignatureVersion {version or 'missing'} is not 1 or 2")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Reject(403, "Signature is not base64") from exc
    key = await hooks.sns_public_key(str(message.get("SigningCertURL", "")))
    if not isinstance(key, rsa.RSAPublicKey):
        raise Reject(403, "the signing certificate does not hold an RSA key")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise Reject(403, "the SNS signature does not match the message") from exc


def ses_feedback(notification: dict[str, Any], sns_message_id: str) -> tuple[list[Feedback], int]:
    """Feedback in an SES notification (notificationType) or event (eventType) document."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = _dict(notification.get("mail"))
    key = None
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-nudgeflow-message-key":
            key = _str(header.get("value"))
    if kind == "Bounce":
        bounce = notification.get("bounce")
        if not isinstance(bounce, dict) or not isinstance(bounce.get("bouncedRecipients"), list):
            raise Reject(400, "an SES Bounce needs bounce.bouncedRecipients")
        hard = bounce.get("bounceType") == "Permanent"
        out = []
        for r in bounce["bouncedRecipients"]:
            if not isinstance(r, dict) or not _str(r.get("emailAddress")):
                raise Reject(400, "each bounce.bouncedRecipients entry needs an emailAddress")
            out.append(
                Feedback(
                    "hard" if hard else "soft",
                    r["emailAddress"],
                    "ses",
                    f"{sns_message_id}:{r['emailAddress']}",
                    _status_of(r.get("status"), r.get("diagnosticCode"), default="5.0.0" if hard else "4.0.0"),
                    _str(r.get("diagnosticCode")) or f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}",
                    key,
                    occurred_at_ms=_ms(bounce.get("timestamp")),
                )
            )
        return out, 0
    if kind == "Complaint":
        complaint = notification.get("complaint")
        if not isinstance(complaint, dict) or not isinstance(complaint.get("complainedRecipients"), list):
            raise Reject(400, "an SES Complaint needs complaint.complainedRecipients")
        feedback_type = _str(complaint.get("complaintFeedbackType")) or "abuse"
        out = []
        for r in complaint["complainedRecipients"]:
            if not isinstance(r, dict) or not _str(r.get("emailAddress")):
                raise Reject(400, "each complaint.complainedRecipients entry needs an emailAddress")
            out.append(
                Feedback(
                    "complaint",
                    r["emailAddress"],
                    "ses",
                    f"{sns_message_id}:{r['emailAddress']}",
                    message_key=key,
                    feedback_type=feedback_type.lower(),
                    occurred_at_ms=_ms(complaint.get("timestamp")),
                )
            )
        return out, 0
    if isinstance(kind, str):
        return [], 1  # Delivery, Send, Open...: not ours to act on
    raise Reject(400, "the SES notification has no notificationType or eventType")


async def _ses(state: AppState, request: Request, workspace_id: str) -> Response:
    hooks = _hooks(state)
    config = await _provider_settings(state, workspace_id, "ses")
    message = _json(await _body(request), "the SNS message")
    if not isinstance(message, dict):
        raise Reject(400, "the SNS message is not a JSON object")
    msg_type = message.get("Type")
    if msg_type not in _SNS_FIELDS:
        raise Reject(400, f"Type {msg_type!r} is not Notification, SubscriptionConfirmation or UnsubscribeConfirmation")
    optional = {"Subject"}
    missing = [f for f in _SNS_FIELDS[msg_type] if f not in optional and not isinstance(message.get(f), str)]
    missing += [f for f in ("Signature", "SigningCertURL") if not isinstance(message.get(f), str)]
    if missing:
        raise Reject(400, f"the SNS {msg_type} lacks {', '.join(missing)}")
    topics = config.get("topic_arns") or []
    if message["TopicArn"] not in topics:
        raise Reject(403, "TopicArn is not on this workspace's allow-list (settings bounce_webhooks.ses.topic_arns)")
    await _verify_sns(hooks, message)
    _fresh(_ms(message["Timestamp"]), to_ms(state.clock.now()), "the SNS Timestamp")
    if msg_type == "SubscriptionConfirmation":
        url = message["SubscribeURL"]
        if not hooks.trusted_sns_url(url):
            raise Reject(403, "SubscribeURL is not an https URL on sns.<region>.amazonaws.com")
        try:
            await hooks.fetch(url)
        except Exception as exc:
            raise Reject(502, f"confirming the subscription failed ({type(exc).__name__})") from exc
        hooks.confirmed_subscriptions.append(message["TopicArn"])
        log.info("SNS subscription confirmed", extra={"workspace_id": workspace_id, "topic": message["TopicArn"]})
        return JSONResponse({"confirmed": True})
    if msg_type == "UnsubscribeConfirmation":
        return JSONResponse({"ignored": 1})
    notification = _json(message["Message"].encode(), "the SNS Message (an SES notification)")
    if not isinstance(notification, dict):
        raise Reject(400, "the SNS Message is not a JSON object")
    items, ignored = ses_feedback(notification, message["MessageId"])
    return await _apply(state, workspace_id, items, ignored)


# -- SendGrid ------------------------------------------------------------------------------------


def _sendgrid_key(config: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    text = str(config.get("public_key", "")).strip()
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise Reject(
            403, "the configured SendGrid public key cannot be read (settings bounce_webhooks.sendgrid.public_key)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Reject(403, "the configured SendGrid public key is not an elliptic-curve key")
    return key


def sendgrid_feedback(events: list[Any]) -> tuple[list[Feedback], int]:
    out: list[Feedback] = []
    ignored = 0
    for i, e in enumerate(events):
        if not isinstance(e, dict) or not isinstance(e.get("event"), str):
            raise Reject(400, f"event {i} is not an object with an event name")
        name = e["event"]
        if name not in ("bounce", "dropped", "spamreport"):
            ignored += 1
            continue
        email = _str(e.get("email"))
        if email is None:
            raise Reject(400, f"event {i} ({name}) has no email")
        event_id = (
            _str(e.get("sg_event_id")) or hashlib.sha256(orjson.dumps(e, option=orjson.OPT_SORT_KEYS)).hexdigest()
        )
        key = _str(e.get("nudgeflow_message_key"))  # a custom arg (unique_args) of the message
        at = _ms(e.get("timestamp"))
        reason = _str(e.get("reason")) or ""
        if name == "spamreport":
            out.append(
                Feedback(
                    "complaint", email, "sendgrid", event_id, message_key=key, feedback_type="abuse", occurred_at_ms=at
                )
            )
        elif name == "bounce":
            # type "bounce": the address was refused; "blocked": the message was (reputation,
            # content, a full mailbox), which a later try may pass.
            hard = e.get("type", "bounce") == "bounce"
            status = _status_of(e.get("status"), reason, default="5.0.0" if hard else "4.0.0")
            out.append(
                Feedback(
                    "hard" if hard else "soft", email, "sendgrid", event_id, status, reason, key, occurred_at_ms=at
                )
            )
        else:  # dropped: SendGrid did not even try; only its own bounce and spam lists concern us
            lowered = reason.lower()
            if "bounce" in lowered or "invalid" in lowered:
                out.append(
                    Feedback("hard", email, "sendgrid", event_id, "5.0.0", f"dropped: {reason}", key, occurred_at_ms=at)
                )
            elif "spam" in lowered:
                out.append(
                    Feedback(
                        "complaint",
                        email,
                        "sendgrid",
                        event_id,
                        message_key=key,
                        feedback_type="abuse",
                        occurred_at_ms=at,
                    )
                )
            else:
                ignored += 1
    return out, ignored


async def _sendgrid(state: AppState, request: Request, workspace_id: str) -> Response:
    signature = request.headers.get("x-twilio-email-event-webhook-signature")
    timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp")
    if not signature or not timestamp:
        raise Reject(401, "X-Twilio-Email-Event-Webhook-Signature and -Timestamp are required")
    config = await _provider_settings(state, workspace_id, "sendgrid")
    key = _sendgrid_key(config)
    body = await _body(request)
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise Reject(403, "the SendGrid signature does not match timestamp + body") from exc
    seconds = timestamp.strip()
    _fresh(
        int(seconds) * 1000 if seconds.isdigit() and len(seconds) <= 12 else None,
        to_ms(state.clock.now()),
        "X-Twilio-Email-Event-Webhook-Timestamp",
    )
    events = _json(body, "the SendGrid body")
    if not isinstance(events, list):
        raise Reject(400, "the SendGrid body is not a JSON array of events")
    items, ignored = sendgrid_feedback(events)
    return await _apply(state, workspace_id, items, ignored)


# -- Postmark ------------------------------------------------------------------------------------

POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress"})
POSTMARK_SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Blocked", "Undeliverable"})


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def postmark_feedback(record: dict[str, Any]) -> tuple[list[Feedback], int]:
    record_type = record.get("RecordType")
    email = _str(record.get("Email"))
    if record_type not in ("Bounce", "SpamComplaint"):
        if isinstance(record_type, str):
            return [], 1  # Delivery, Open, Click, SubscriptionChange
        raise Reject(400, "the Postmark record has no RecordType")
    if email is None:
        raise Reject(400, f"the Postmark {record_type} record has no Email")
    metadata = _dict(record.get("Metadata"))
    key = _str(metadata.get("nudgeflow_message_key"))
    event_id = str(record.get("ID") or hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest())
    at = _ms(record.get("BouncedAt"))
    bounce_type = record.get("Type")
    if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
        return [
            Feedback(
                "complaint", email, "postmark", event_id, message_key=key, feedback_type="abuse", occurred_at_ms=at
            )
        ], 0
    if bounce_type in POSTMARK_HARD or bounce_type in POSTMARK_SOFT:
        hard = bounce_type in POSTMARK_HARD
        details = _str(record.get("Details")) or _str(record.get("Description")) or str(bounce_type)
        status = _status_of(record.get("Details"), record.get("Description"), default="5.0.0" if hard else "4.0.0")
        return [
            Feedback("hard" if hard else "soft", email, "postmark", event_id, status, details, key, occurred_at_ms=at)
        ], 0
    if isinstance(bounce_type, str):
        return [], 1  # AutoResponder, Subscribe, AddressChange, ...: not a failure to deliver
    raise Reject(400, "the Postmark Bounce record has no Type")


async def _postmark(state: AppState, request: Request, workspace_id: str) -> Response:
    challenge = {"WWW-Authenticate": 'Basic realm="nudgeflow webhooks"'}
    given = _basic(request.headers.get("authorization"))
    if given is None:
        raise Reject(401, "HTTP Basic credentials are required (set them in the Postmark webhook URL)", challenge)
    config = await _provider_settings(state, workspace_id, "postmark")
    want_user, want_pass = str(config.get("username", "")), str(config.get("password", ""))
    ok_user = hmac.compare_digest(given[0].encode(), want_user.encode())
    ok_pass = hmac.compare_digest(given[1].encode(), want_pass.encode())
    if not (ok_user and ok_pass and want_user and want_pass):
        raise Reject(401, "wrong credentials", challenge)
    record = _json(await _body(request), "the Postmark body")
    if not isinstance(record, dict):
        raise Reject(400, "the Postmark body is not a JSON object")
    items, ignored = postmark_feedback(record)
    return await _apply(state, workspace_id, items, ignored)


# -- Mailgun -------------------------------------------------------------------------------------


def mailgun_feedback(data: dict[str, Any]) -> tuple[list[Feedback], int]:
    name = data.get("event")
    if not isinstance(name, str):
        raise Reject(400, "event-data has no event")
    if name not in ("failed", "complained"):
        return [], 1
    recipient = _str(data.get("recipient"))
    if recipient is None:
        raise Reject(400, f"event-data of a {name} event has no recipient")
    variables = _dict(data.get("user-variables"))
    key = _str(variables.get("nudgeflow_message_key"))
    event_id = _str(data.get("id")) or hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    at = _ms(data.get("timestamp"))
    if name == "complained":
        return [
            Feedback(
                "complaint", recipient, "mailgun", event_id, message_key=key, feedback_type="abuse", occurred_at_ms=at
            )
        ], 0
    severity = data.get("severity")
    if severity not in ("permanent", "temporary"):
        raise Reject(400, f"a failed event's severity is {severity!r}, not permanent or temporary")
    hard = severity == "permanent"
    status_doc = _dict(data.get("delivery-status"))
    diagnostic = (
        _str(status_doc.get("description")) or _str(status_doc.get("message")) or _str(data.get("reason")) or severity
    )
    code = status_doc.get("code")
    status = _status_of(
        status_doc.get("enhanced-code"),
        status_doc.get("message"),
        status_doc.get("description"),
        default=f"{str(code)[0]}.0.0"
        if isinstance(code, int) and 400 <= code < 600
        else ("5.0.0" if hard else "4.0.0"),
    )
    return [
        Feedback("hard" if hard else "soft", recipient, "mailgun", event_id, status, diagnostic, key, occurred_at_ms=at)
    ], 0


async def _mailgun(state: AppState, request: Request, workspace_id: str) -> Response:
    hooks = _hooks(state)
    body = _json(await _body(request), "the Mailgun body")
    if not isinstance(body, dict):
        raise Reject(400, "the Mailgun body is not a JSON object")
    sig = body.get("signature")
    if not isinstance(sig, dict) or not all(
        isinstance(sig.get(f), (str, int)) for f in ("timestamp", "token", "signature")
    ):
        raise Reject(401, "the Mailgun body needs signature.timestamp, .token and .signature")
    config = await _provider_settings(state, workspace_id, "mailgun")
    signing_key = str(config.get("signing_key", ""))
    if not signing_key:
        raise Reject(403, "no Mailgun signing key is configured (settings bounce_webhooks.mailgun.signing_key)")
    timestamp, token = str(sig["timestamp"]), str(sig["token"])
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(sig["signature"])):
        raise Reject(403, "the Mailgun signature does not match timestamp + token")
    now_s = state.clock.now().timestamp()
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > MAILGUN_MAX_AGE_S:
        raise Reject(403, f"the Mailgun timestamp is more than {MAILGUN_MAX_AGE_S} s from now")
    data = body.get("event-data")
    if not isinstance(data, dict):
        raise Reject(400, "the Mailgun body has no event-data object")
    items, ignored = mailgun_feedback(data)  # a malformed body is refused before its token is spent
    if not hooks.mailgun_token_fresh(token, now_s):
        raise Reject(403, "this Mailgun token was already used (a replay)")
    return await _apply(state, workspace_id, items, ignored)


# -- routes --------------------------------------------------------------------------------------


def bounces_router() -> APIRouter:
    router = APIRouter(prefix="/webhooks", tags=["bounces"])

    @router.post("/ses/{workspace_id}", summary="Amazon SES bounce and complaint notifications, via SNS")
    async def ses(request: Request, state: State, workspace_id: str) -> Response:
        return await _guard(request, lambda: _ses(state, request, workspace_id), "ses")

    @router.post("/sendgrid/{workspace_id}", summary="SendGrid Event Webhook (signed)")
    async def sendgrid(request: Request, state: State, workspace_id: str) -> Response:
        return await _guard(request, lambda: _sendgrid(state, request, workspace_id), "sendgrid")

    @router.post("/postmark/{workspace_id}", summary="Postmark bounce and spam complaint webhooks (HTTP Basic)")
    async def postmark(request: Request, state: State, workspace_id: str) -> Response:
        return await _guard(request, lambda: _postmark(state, request, workspace_id), "postmark")

    @router.post("/mailgun/{workspace_id}", summary="Mailgun failed and complained webhooks (signed)")
    async def mailgun(request: Request, state: State, workspace_id: str) -> Response:
        return await _guard(request, lambda: _mailgun(state, request, workspace_id), "mailgun")

    return router
