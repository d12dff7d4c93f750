"""Parsing real-shaped DSNs (RFC 3464) and ARF complaints (RFC 5965)."""

from __future__ import annotations

import pytest

from nudgeflow.content.bounce_parse import Bounce, Complaint, ReportError, parse_arf, parse_dsn, parse_report
from tests.content.bounce_samples import ARF_ABUSE, ARF_REDACTED, NO_STATUS_FIELD, POSTFIX_HARD, SENDMAIL_DELAYED


def test_postfix_hard_bounce() -> None:
    [bounce] = parse_dsn(POSTFIX_HARD)
    assert bounce == Bounce(
        kind="hard",
        address="nobody@example.net",
        status="5.1.1",
        diagnostic=(
            "smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table"
        ),
        message_key="run-81:cart-email:1",
        message_id="<nf.7f3a9c@shop.test>",
        action="failed",
    )


def test_delayed_is_soft_and_delivered_recipients_are_skipped() -> None:
    bounces = parse_dsn(SENDMAIL_DELAYED)
    assert [(b.kind, b.address, b.status, b.action) for b in bounces] == [
        ("soft", "bob@busy.example.org", "4.2.2", "delayed")
    ]
    assert bounces[0].message_key == "run-9:welcome:1"
    assert bounces[0].diagnostic == "SMTP; 452 4.2.2 Mailbox full"


def test_status_read_from_diagnostic_when_missing() -> None:
    [bounce] = parse_dsn(NO_STATUS_FIELD)
    assert (bounce.kind, bounce.address, bounce.status, bounce.message_key) == (
        "hard",
        "gone@example.com",
        "5.2.1",
        None,
    )


def test_failed_with_4xx_status_is_soft() -> None:
    raw = NO_STATUS_FIELD.replace(b"550 5.2.1", b"451 4.4.1")
    [bounce] = parse_dsn(raw)
    assert (bounce.kind, bounce.status) == ("soft", "4.4.1")


def test_arf_abuse_complaint() -> None:
    assert parse_arf(ARF_ABUSE) == Complaint(
        address="dave@example.com",
        feedback_type="abuse",
        message_key="run-3:promo:1",
        message_id="<nf.8787KJKJ3K4J3K4J3K4J3.mail@shop.test>",
        original_mail_from="bounces@mail.shop.test",  # Original-Mail-From: the signed address is checked there
    )


def test_redacted_arf_uses_the_original_to() -> None:
    complaint = parse_arf(ARF_REDACTED)
    assert (complaint.address, complaint.feedback_type, complaint.message_key, complaint.message_id) == (
        "erin@isp.example",
        "abuse",
        None,
        "<nf.e@shop.test>",
    )
    assert complaint.original_mail_from is None
    # Without Original-Mail-From, the returned message's Return-Path is the envelope sender.
    shop = b"From: Shop <hello@shop.test>"
    with_path = ARF_REDACTED.replace(shop, b"Return-Path: <b+x@b.test>\n" + shop)
    assert parse_arf(with_path).original_mail_from == "b+x@b.test"


def test_parse_report_dispatches_on_report_type() -> None:
    assert isinstance(parse_report(ARF_ABUSE)[0], Complaint)
    assert isinstance(parse_report(POSTFIX_HARD)[0], Bounce)
    assert parse_report(POSTFIX_HARD.decode()) == parse_report(POSTFIX_HARD)  # str input too


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"From: a@b\nSubject: Out of office\n\nI am away.\n", "not multipart/report"),
        (
            POSTFIX_HARD.replace(b"report-type=delivery-status", b"report-type=disposition-notification"),
            "disposition-notification",
        ),
        (
            POSTFIX_HARD.replace(b"Content-Type: message/delivery-status", b"Content-Type: text/plain"),
            "no message/delivery-status",
        ),
        (ARF_ABUSE.replace(b"Feedback-Type: abuse\n", b""), "no Feedback-Type"),
        (ARF_REDACTED.replace(b"To: Erin <erin@isp.example>\n", b""), "names no recipient"),
    ],
)
def test_what_is_not_a_report_is_named(raw: bytes, words: str) -> None:
    with pytest.raises(ReportError, match=words):
        parse_report(raw)
