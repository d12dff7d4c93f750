"""DSNs and ARF complaints sent over real SMTP to the bounce handler on loopback.

Reports are believed only at a signed bounce address (model/bounce_address.py) and only
for the recipient it was signed for: the workspace id alone is public."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from typing import Any

import pytest

from nudgeflow.channels.email.channel import EmailChannel, WorkspaceConfigs
from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.smtp_config import parse_smtp_url
from nudgeflow.runtime.inbound_smtp import parse_listen
from tests.channels.email_support import FixedRenderer, outbound
from tests.channels.smtp_support import Sink, start_sink
from tests.content.bounce_samples import ARF_ABUSE, POSTFIX_HARD, SENDMAIL_DELAYED
from tests.runtime.bounce_support import (
    add_person,
    add_sent_message,
    feedback_events,
    signed_bounce_address,
    suppressions,
)
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
    bounce_address = signed_bounce_address(engine, ws, "run-81:cart-email:1", "Nobody@example.net")
    code, answer = _send(port, bounce_address, POSTFIX_HARD)
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
    assert _send(port, bounce_address, POSTFIX_HARD)[0] == 250
    assert len(feedback_events(engine, ws)) == 1


def test_soft_bounce_is_an_event_only_found_by_email(engine: Any, bounce_smtp: Any) -> None:
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "bob", "bob@busy.example.org")
    rcpt = signed_bounce_address(engine, ws, "run-9:welcome:1", "bob@busy.example.org")
    assert _send(port, rcpt, SENDMAIL_DELAYED)[0] == 250
    assert suppressions(engine, ws) == {}
    [event] = feedback_events(engine, ws)
    assert (event["profile_id"], event["properties"]["kind"], event["properties"]["status"]) == (pid, "soft", "4.2.2")


def test_abuse_complaint_suppresses(engine: Any, bounce_smtp: Any) -> None:
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "dave", "dave@example.com")
    # The feedback loop's fixed address signs nothing: the report's Original-Mail-From is
    # the signed Return-Path of the message complained about.
    signed = signed_bounce_address(engine, ws, "run-3:promo:1", "dave@example.com")
    report = ARF_ABUSE.replace(b"<bounces@mail.shop.test>", f"<{signed}>".encode())
    assert _send(port, f"fbl+{ws}@bounce.shop.test", report)[0] == 250
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
    rcpt = signed_bounce_address(engine, ws, "k-1", "ada@example.org")
    code, answer = _send(port, rcpt, b"From: a@b\nSubject: Out of office\n\nAway.\n")
    assert code == 250 and b"ignored" in answer
    assert _send(port, "someone@elsewhere.test", POSTFIX_HARD)[0] == 550
    assert _send(port, "fbl@bounce.shop.test", POSTFIX_HARD)[0] == 550  # no workspace tag, no default
    assert suppressions(engine, ws) == {}


def test_forged_reports_are_refused_and_suppress_nothing(
    engine: Any, bounce_smtp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An attacker knows the workspace id (it is in every Return-Path) and the signed
    bounce address of mail sent to themselves; neither lets them suppress anyone else."""
    _, handler, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    victim = add_person(engine, ws, "u-81", "nobody@example.net")
    add_sent_message(engine, ws, victim, "run-81:cart-email:1")
    add_person(engine, ws, "mallory", "mallory@evil.example")
    caplog.set_level(logging.INFO, logger="nudgeflow.bounces.smtp")
    # 1. The old unsigned address (workspace id only): refused at RCPT.
    code, answer = _send(port, f"bounces+{ws}@bounce.shop.test", POSTFIX_HARD)
    assert code == 550 and b"not a signed bounce address" in answer
    # 2. The attacker's own signed address, with a DSN naming the victim: refused at DATA.
    own = signed_bounce_address(engine, ws, "run-82:cart-email:1", "mallory@evil.example")
    code, answer = _send(port, own, POSTFIX_HARD.replace(b"run-81:cart-email:1", b"run-82:cart-email:1"))
    assert code == 550 and b"not signed for the recipient" in answer
    # 3. A signature made up for the victim's message (a guess, or another workspace's key).
    guessed = signed_bounce_address(engine, ws, "run-81:cart-email:1", "nobody@example.net")
    local, _, domain = guessed.rpartition("@")
    altered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    assert _send(port, altered, POSTFIX_HARD)[0] == 550
    # 4. The victim's genuine address, but a DSN returning another message's key.
    code, answer = _send(port, guessed, POSTFIX_HARD.replace(b"run-81:cart-email:1", b"run-99:other:1"))
    assert code == 550 and b"message key" in answer
    # 5. A complaint to the feedback-loop address with no signed Original-Mail-From.
    assert _send(port, f"fbl+{ws}@bounce.shop.test", ARF_ABUSE)[0] == 550
    assert suppressions(engine, ws) == {}
    assert feedback_events(engine, ws) == [] and handler.received == []
    reasons = [getattr(r, "reason", "") for r in caplog.records]
    assert "unsigned bounce address" in reasons
    assert any("not signed for the recipient" in r for r in reasons)
    # The genuine report to the genuine address still suppresses.
    code, answer = _send(port, guessed, POSTFIX_HARD)
    assert code == 250 and b"1 suppressed" in answer
    assert suppressions(engine, ws) == {"nobody@example.net": "hard_bounce"}


def test_a_forwarded_address_is_matched_by_its_original_recipient(engine: Any, bounce_smtp: Any) -> None:
    """Mail to ada@old.example forwarded to ada@new.example and refused there: the DSN's
    Final-Recipient is the new address, its Original-Recipient the one we sent to, signed for,
    and suppress."""
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    report = POSTFIX_HARD.replace(b"Final-Recipient: rfc822; nobody@", b"Final-Recipient: rfc822; ada@new.")
    report = report.replace(b"Original-Recipient: rfc822;nobody@", b"Original-Recipient: rfc822;ada@old.")
    rcpt = signed_bounce_address(engine, ws, "run-81:cart-email:1", "ada@old.example.net")
    assert _send(port, rcpt, report)[0] == 250
    assert suppressions(engine, ws) == {"ada@old.example.net": "hard_bounce"}


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:2525") == ("0.0.0.0", 2525)
    assert parse_listen("[::1]:25") == ("::1", 25)
    for bad in ("2525", "host:", "host:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


def test_the_channels_return_path_takes_its_dsn_back(engine: Any, bounce_smtp: Any) -> None:
    """End to end: the email channel sends through a real SMTP server with the workspace's
    settings from the database; a DSN to the MAIL FROM it used suppresses the recipient,
    and the same address does not vouch for a report about anyone else."""
    _, _, port = bounce_smtp
    ws = make_workspace(engine).workspace_id
    pid = add_person(engine, ws, "u-81", "nobody@example.net")
    add_person(engine, ws, "u-82", "other@example.net")
    add_sent_message(engine, ws, pid, "run-81:cart-email:1")
    sink = Sink()
    controller = start_sink(sink)
    try:
        config = parse_smtp_url(
            f"smtp://127.0.0.1:{controller.port}?tls=none&from=news@shop.test&bounce_domain=bounce.shop.test"
        )
        channel = EmailChannel(WorkspaceConfigs(engine, config, VirtualClock()), FixedRenderer())

        async def send() -> None:
            await channel.send(outbound(key="run-81:cart-email:1", email="nobody@example.net", ws=ws))
            await channel.aclose()

        asyncio.run(send())
    finally:
        controller.stop()
    return_path = sink.received[0].mail_from
    forged = POSTFIX_HARD.replace(b"nobody@example.net", b"other@example.net")
    assert _send(port, return_path, forged)[0] == 550
    assert suppressions(engine, ws) == {}
    assert _send(port, return_path, POSTFIX_HARD)[0] == 250
    assert suppressions(engine, ws) == {"nobody@example.net": "hard_bounce"}
