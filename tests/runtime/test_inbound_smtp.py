"""DSNs and ARF complaints sent over real SMTP to the bounce handler on loopback."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

from nudgeflow.runtime.inbound_smtp import parse_listen
from tests.content.bounce_samples import ARF_ABUSE, POSTFIX_HARD, SENDMAIL_DELAYED
from tests.runtime.bounce_support import add_person, add_sent_message, feedback_events, suppressions
from tests.support import make_workspace


def _send(port: int, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.net")
        client.mail("<>")
        code, msg = client.rcpt(rcpt)
        if code >= 400:
            return code, msg
        # On the wire every line ends in CRLF (smtplib converts only str messages).
        return client.data(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def test_hard_bounce_suppresses_and_lands_on_the_person(engine: Any, bounce_smtp: Any) -> None:
    _, _handler, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "u-81", "Nobody@example.net")
    add_sent_message(engine, ws, pid, "run-81:cart-email:1")
    code, answer = _send(port, f"bounces+{ws}@bounce.shop.test", POSTFIX_HARD)
    assert code == 250 and b"1 suppressed" in answer
    assert suppressions(engine, ws) == {"nobody@example.net": "hard_bounce"}
    [event] = feedback_events(engine, ws)
    assert event["profile_id"] == pid and event["event"] == "Email Bounced" and event["userId"] == "u-81"
    assert event["properties"] | {} == {
        "kind": "hard",
        "status": "5.1.1",
        "message_key": "run-81:cart-email:1",
        "provider": "smtp",
        "email": "nobody@example.net",
        "channel": "email",
        "diagnostic": (
            "smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table"
        ),
    }
    # The MTA sends the same report again: nothing new.
    assert _send(port, f"bounces+{ws}@bounce.shop.test", POSTFIX_HARD)[0] == 250
    assert len(feedback_events(engine, ws)) == 1


def test_soft_bounce_is_an_event_only_found_by_email(engine: Any, bounce_smtp: Any) -> None:
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "bob", "bob@busy.example.org")
    assert _send(port, f"bounces+{ws}@bounce.shop.test", SENDMAIL_DELAYED)[0] == 250
    assert suppressions(engine, ws) == {}
    [event] = feedback_events(engine, ws)
    assert (event["profile_id"], event["properties"]["kind"], event["properties"]["status"]) == (pid, "soft", "4.2.2")


def test_abuse_complaint_suppresses(engine: Any, bounce_smtp: Any) -> None:
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "dave", "dave@example.com")
    assert _send(port, f"fbl+{ws}@bounce.shop.test", ARF_ABUSE)[0] == 250
    assert suppressions(engine, ws) == {"dave@example.com": "complaint"}
    [event] = feedback_events(engine, ws)
    assert (event["profile_id"], event["event"], event["properties"]["feedback_type"]) == (
        pid,
        "Email Marked as Spam",
        "abuse",
    )


def test_other_mail_is_accepted_and_ignored_and_other_domains_refused(engine: Any, bounce_smtp: Any) -> None:
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    code, answer = _send(port, f"bounces+{ws}@bounce.shop.test", b"From: a@b\nSubject: Out of office\n\nAway.\n")
    assert code == 250 and b"ignored" in answer
    assert _send(port, "someone@elsewhere.test", POSTFIX_HARD)[0] == 550
    assert _send(port, "bounces@bounce.shop.test", POSTFIX_HARD)[0] == 550  # no workspace tag, no default
    assert suppressions(engine, ws) == {}


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:2525") == ("0.0.0.0", 2525)
    assert parse_listen("[::1]:25") == ("::1", 25)
    for bad in ("2525", "host:", "host:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)
