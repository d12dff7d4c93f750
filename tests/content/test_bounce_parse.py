"""Parsing real-shaped DSNs (RFC 3464) and ARF complaints (RFC 5965)."""

from __future__ import annotations

import pytest

from nudgeflow.content.bounce_parse import Bounce, Complaint, ReportError, parse_arf, parse_dsn, parse_report

# What Postfix sends back for an unknown user, with the original message's headers.
POSTFIX_HARD = b"""\
Return-Path: <>
Received: by mx.example.net (Postfix) id 4F2A81C0A3; Thu, 12 Jun 2025 10:02:11 +0000 (UTC)
Date: Thu, 12 Jun 2025 10:02:11 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@mail.shop.test
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2A81C0A3.1749722531/mx.example.net"
Message-Id: <20250612100211.4F2A81C0A3@mx.example.net>

This is a MIME-encapsulated message.

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@example.net>: host mail.example.net[203.0.113.5] said: 550 5.1.1
    <nobody@example.net>: Recipient address rejected: User unknown in local
    recipient table (in reply to RCPT TO command)

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4F2A81C0A3
X-Postfix-Sender: rfc822; bounces@mail.shop.test
Arrival-Date: Thu, 12 Jun 2025 10:02:10 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in local recipient table

--4F2A81C0A3.1749722531/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@mail.shop.test>
From: Shop <hello@shop.test>
To: nobody@example.net
Subject: You left something in your cart
Message-ID: <nf.7f3a9c@shop.test>
X-Nudgeflow-Message-Key: run-81:cart-email:1
Date: Thu, 12 Jun 2025 10:02:09 +0000

--4F2A81C0A3.1749722531/mx.example.net--
"""

# Two recipients in one report: one delayed (soft), one delivered (skipped); the whole
# original message comes back as message/rfc822.
SENDMAIL_DELAYED = b"""\
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>
To: <bounces@mail.shop.test>
Subject: Warning: could not send message for past 4 hours
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="xyz.123"

--xyz.123
Content-Type: text/plain

Your message has not been delivered yet. It will be retried.

--xyz.123
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.org

Final-Recipient: RFC822; bob@busy.example.org
Action: delayed
Status: 4.2.2
Diagnostic-Code: SMTP; 452 4.2.2 Mailbox full
Will-Retry-Until: Fri, 13 Jun 2025 10:00:00 +0000

Final-Recipient: RFC822; carol@example.org
Action: delivered
Status: 2.0.0

--xyz.123
Content-Type: message/rfc822

From: Shop <hello@shop.test>
To: bob@busy.example.org, carol@example.org
Subject: Welcome
Message-ID: <nf.abc@shop.test>
X-Nudgeflow-Message-Key: run-9:welcome:1
MIME-Version: 1.0
Content-Type: text/plain

Hello!

--xyz.123--
"""

# A 5.x.x code on a report whose Action says failed but whose Status field is missing:
# the code is read from the Diagnostic-Code. No original headers: no key.
NO_STATUS_FIELD = b"""\
From: postmaster@example.com
To: bounces@mail.shop.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=b1

--b1
Content-Type: text/plain

Delivery failed.
--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; example.com

Final-Recipient: rfc822; <gone@example.com>
Action: failed
Status:
Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled
--b1--
"""

# Yahoo-style ARF complaint (RFC 5965 section 3 example shape).
ARF_ABUSE = b"""\
From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <fbl@mail.shop.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <bounces@mail.shop.test>
Original-Rcpt-To: <dave@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reported-Domain: shop.test
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <hello@shop.test>
Received: from mailserver.example.net (mailserver.example.net [192.0.2.1])
        by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: <nf.8787KJKJ3K4J3K4J3K4J3.mail@shop.test>
X-Nudgeflow-Message-Key: run-3:promo:1
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
--part1_13d.2e68ed54_boundary--
"""

# A redacted ARF (no Original-Rcpt-To): the recipient comes from the returned To.
ARF_REDACTED = b"""\
From: feedbackloop@isp.example
To: fbl@mail.shop.test
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

A complaint.
--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/2.0
Version: 1

--B
Content-Type: text/rfc822-headers

From: Shop <hello@shop.test>
To: Erin <erin@isp.example>
Subject: Sale
Message-ID: <nf.e@shop.test>

--B--
"""


def test_postfix_hard_bounce() -> None:
    [bounce] = parse_dsn(POSTFIX_HARD)
    assert bounce == Bounce(
        kind="hard",
        address="nobody@example.net",
        status="5.1.1",
        diagnostic="smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table",
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
    assert (bounce.kind, bounce.address, bounce.status, bounce.message_key) == ("hard", "gone@example.com", "5.2.1", None)


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
    )


def test_redacted_arf_uses_the_original_to() -> None:
    complaint = parse_arf(ARF_REDACTED)
    assert (complaint.address, complaint.feedback_type, complaint.message_key, complaint.message_id) == (
        "erin@isp.example", "abuse", None, "<nf.e@shop.test>"
    )


def test_parse_report_dispatches_on_report_type() -> None:
    assert isinstance(parse_report(ARF_ABUSE)[0], Complaint)
    assert isinstance(parse_report(POSTFIX_HARD)[0], Bounce)
    assert parse_report(POSTFIX_HARD.decode()) == parse_report(POSTFIX_HARD)  # str input too


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"From: a@b\nSubject: Out of office\n\nI am away.\n", "not multipart/report"),
        (POSTFIX_HARD.replace(b"report-type=delivery-status", b"report-type=disposition-notification"), "disposition-notification"),
        (POSTFIX_HARD.replace(b"Content-Type: message/delivery-status", b"Content-Type: text/plain"), "no message/delivery-status"),
        (ARF_ABUSE.replace(b"Feedback-Type: abuse\n", b""), "no Feedback-Type"),
        (ARF_REDACTED.replace(b"To: Erin <erin@isp.example>\n", b""), "names no recipient"),
    ],
)
def test_what_is_not_a_report_is_named(raw: bytes, words: str) -> None:
    with pytest.raises(ReportError, match=words):
        parse_report(raw)
