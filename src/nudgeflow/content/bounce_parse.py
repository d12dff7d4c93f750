"""Parsing what mailbox providers send back: delivery status notifications and complaints.

Pure functions over the raw bytes of a message (no I/O):
- RFC 3464 delivery status notifications (`multipart/report; report-type=delivery-status`):
  one `Bounce` per failed or delayed recipient. The status code decides the kind: 5.x.x is
  hard (the address will not work), 4.x.x soft (try again later). An `Action: delayed`
  is soft whatever its code says.
- RFC 5965 ARF feedback reports (`multipart/report; report-type=feedback-report`): one
  `Complaint` with the Feedback-Type (abuse, fraud, ...).

Either kind carries the message key of our original message when the report returns its
headers (`message/rfc822` or `text/rfc822-headers`): from `X-Nudgeflow-Message-Key`, which
every message we send carries, else the `Message-ID` is returned for the caller to map.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from nudgeflow.errors import ContentError

MESSAGE_KEY_HEADER = "X-Nudgeflow-Message-Key"

BounceKind = Literal["hard", "soft"]


@dataclass(frozen=True)
class Bounce:
    kind: BounceKind
    address: str
    status: str  # the enhanced status code, e.g. "5.1.1"
    diagnostic: str  # the remote server's words, e.g. "smtp; 550 5.1.1 user unknown"
    message_key: str | None  # our outbox idempotency key, when the original headers came back
    message_id: str | None = None  # the original Message-ID, when it came back
    action: str = "failed"
    # Original-Recipient, when it differs from Final-Recipient (a forward): the address the
    # message was sent to, which is the one its bounce address was signed for.
    original_recipient: str | None = None


@dataclass(frozen=True)
class Complaint:
    address: str
    feedback_type: str  # abuse, fraud, virus, other, not-spam, ...
    message_key: str | None
    message_id: str | None = None
    # The original message's envelope sender: the report's Original-Mail-From, else the
    # returned message's Return-Path. For our mail, its signed bounce address.
    original_mail_from: str | None = None


class ReportError(ContentError, ValueError):
    """The message is not a report we understand; the text says what is wrong."""


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def _parse(raw: bytes | str) -> Message:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _address(value: str | None) -> str:
    """`rfc822; alice@example.com` -> `alice@example.com` (lower-cased domain kept as sent)."""
    if not value:
        return ""
    value = str(value).strip()
    if ";" in value:
        addr_type, _, value = value.partition(";")
        if addr_type.strip().lower() not in ("rfc822", "rfc-822", "smtp", ""):
            return ""
    value = value.strip().strip("<>").strip()
    return value


def _header_blocks(payload: str) -> list[Message]:
    """The blocks of a message/delivery-status body: per-message fields, then per recipient.

    The email package parses such a part into sub-messages itself when it is well formed;
    this handles the body text for when it is not (it is often sent as text/plain)."""
    blocks = re.split(r"\r?\n\s*\r?\n", payload.strip())
    return [email.message_from_string(block + "\n", policy=email.policy.compat32) for block in blocks if block.strip()]


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and all(isinstance(p, Message) for p in payload):
        return list(payload)
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
    return _header_blocks(text)


def _original_headers(report: Message) -> Message | None:
    """The returned original message (or just its headers), if the report has one."""
    for part in report.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
            if isinstance(inner, str):
                return _parse(inner)
        if ctype in ("text/rfc822-headers", "text/global-headers"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            return email.message_from_string(text.lstrip() + "\n\n", policy=email.policy.compat32)
    return None


def _keys(original: Message | None) -> tuple[str | None, str | None]:
    if original is None:
        return None, None
    key = original.get(MESSAGE_KEY_HEADER)
    message_id = original.get("Message-ID")
    return (str(key).strip() or None) if key else None, (str(message_id).strip() or None) if message_id else None


def _report_type(msg: Message) -> str:
    if msg.get_content_type() != "multipart/report":
        raise ReportError(f"not a report: the message is {msg.get_content_type()}, not multipart/report")
    value = msg.get_param("report-type")
    # The type allows an RFC 2231 (charset, language, text) tuple. compat32 never decodes a
    # hyphenated name that way (its pattern is \w+), but the type is honoured, not ignored.
    if isinstance(value, tuple):
        value = email.utils.collapse_rfc2231_value(value)
    return (value or "").lower()


def _unfold(value: object) -> str:
    return re.sub(r"\s*\r?\n\s+", " ", str(value)).strip()


def parse_dsn(raw: bytes | str) -> list[Bounce]:
    """The failed and delayed recipients of an RFC 3464 report (delivered/relayed ones are skipped)."""
    msg = _parse(raw)
    report_type = _report_type(msg)
    if report_type != "delivery-status":
        raise ReportError(f"report-type is {report_type or 'missing'}, not delivery-status")
    status_part = next(
        (
            p
            for p in msg.walk()
            if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
        ),
        None,
    )
    if status_part is None:
        raise ReportError("the report has no message/delivery-status part")
    blocks = _status_blocks(status_part)
    key, message_id = _keys(_original_headers(msg))
    bounces: list[Bounce] = []
    for block in blocks:
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        if not recipient:
            continue  # the per-message block, or a recipient we cannot name
        action = str(block.get("Action", "")).strip().lower()
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: nothing went wrong for this one
        diagnostic = _unfold(block.get("Diagnostic-Code", ""))
        match = _STATUS.search(str(block.get("Status", ""))) or _STATUS.search(diagnostic)
        status = ".".join(match.groups()) if match else ("4.0.0" if action == "delayed" else "5.0.0")
        kind: BounceKind = "hard" if status.startswith("5") and action == "failed" else "soft"
        original = _address(block.get("Original-Recipient")) or None
        original = original if original and original.lower() != recipient.lower() else None
        bounces.append(Bounce(kind, recipient, status, diagnostic, key, message_id, action, original))
    if not bounces and not any(_address(b.get("Final-Recipient")) for b in blocks):
        raise ReportError("the delivery status names no recipient (no Final-Recipient field)")
    return bounces


def parse_arf(raw: bytes | str) -> Complaint:
    """The complaint of an RFC 5965 feedback report."""
    msg = _parse(raw)
    report_type = _report_type(msg)
    if report_type != "feedback-report":
        raise ReportError(f"report-type is {report_type or 'missing'}, not feedback-report")
    part = next((p for p in msg.walk() if p.get_content_type() == "message/feedback-report"), None)
    if part is None:
        raise ReportError("the report has no message/feedback-report part")
    blocks = _status_blocks(part)
    fields: Message = blocks[0] if blocks else Message()
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower()
    if not feedback_type:
        raise ReportError("the feedback report has no Feedback-Type field")
    original = _original_headers(msg)
    key, message_id = _keys(original)
    address = _address(fields.get("Original-Rcpt-To"))
    if not address and original is not None:
        # Redacted reports name the complainer only in the returned message's To.
        address = email.utils.parseaddr(str(original.get("To", "")))[1]
    if not address:
        raise ReportError("the feedback report names no recipient (no Original-Rcpt-To, no original To)")
    mail_from = _address(fields.get("Original-Mail-From"))
    if not mail_from and original is not None:
        mail_from = _address(original.get("Return-Path"))
    return Complaint(address, feedback_type, key, message_id, mail_from or None)


def parse_report(raw: bytes | str) -> list[Bounce | Complaint]:
    """Whatever the report is: its bounces, or its one complaint. ReportError for anything else
    (an auto-reply, a human's answer, a report type we do not handle)."""
    msg = _parse(raw)
    report_type = _report_type(msg)
    if report_type == "delivery-status":
        return list(parse_dsn(raw))
    if report_type == "feedback-report":
        return [parse_arf(raw)]
    raise ReportError(f"report-type {report_type or 'missing'} is neither delivery-status nor feedback-report")


__all__ = ["MESSAGE_KEY_HEADER", "Bounce", "Complaint", "ReportError", "parse_arf", "parse_dsn", "parse_report"]
