"""Whose a 5xx answer is: the recipient's (a bounce), the message's, or our relay's (a channel
problem, never a bounce), against a real SMTP server on loopback (aiosmtpd) answering each."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from nudgeflow.channels.base import ChannelProblem, PermanentError
from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.channels.email.pool import BounceError
from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.smtp_config import parse_smtp_url
from tests.channels.email_support import FixedRenderer, outbound, queue_email
from tests.channels.smtp_support import Sink
from tests.support import make_workspace

# Our relay (or the receiver) refusing for the sender, the login, a policy or its own system:
# never the recipient's bounce.
OURS = [
    ("rcpt", "550 5.7.1 <ada@example.org>: Relaying denied"),
    ("rcpt", "530 5.7.0 Authentication required"),
    ("rcpt", "535 5.7.8 Authentication credentials invalid"),
    ("rcpt", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"),
    ("rcpt", "550 5.4.1 Recipient address rejected: Access denied"),
    ("rcpt", "553 5.3.0 Mail system full"),
    ("rcpt", "550 5.1.8 Bad sender's system address"),
    ("rcpt", "550 Relaying denied"),  # no enhanced status: the words say it
    ("rcpt", "530 Authentication required"),
    ("data", "554 5.7.1 Message rejected: sender not authorized for this domain"),
]
# The recipient's address or mailbox: a bounce.
PERSONS = [
    ("rcpt", "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown"),
    ("rcpt", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"),
    ("rcpt", "552 5.2.2 Mailbox full"),
    ("rcpt", "550 5.2.1 Mailbox disabled"),
    ("rcpt", "550 No such user here"),  # no enhanced status: the classic "no such mailbox"
    ("data", "550 5.1.1 User unknown"),
]
# The message itself: it fails, with no bounce and no blame on the relay.
MESSAGES = [
    ("data", "552 5.2.3 Message size exceeds fixed maximum message size"),
    ("data", "554 5.6.0 Message content rejected"),
    ("data", "554 Transaction failed"),
]


def _channel(sink: Sink, clock: VirtualClock | None = None) -> EmailChannel:
    url = f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com"  # type: ignore[attr-defined]
    return EmailChannel(parse_smtp_url(url), renderer=FixedRenderer(), clock=clock)


def _refused(sink: Sink, where: str, reply: str) -> PermanentError:
    setattr(sink, f"{where}_reply", reply)
    ch = _channel(sink)

    async def go() -> PermanentError:
        with pytest.raises(PermanentError) as info:
            await ch.send(outbound())
        await ch.aclose()
        return info.value

    return asyncio.run(go())


@pytest.mark.parametrize(("where", "reply"), OURS)
def test_a_refusal_about_the_relay_or_the_sender_is_a_channel_problem(sink: Sink, where: str, reply: str) -> None:
    exc = _refused(sink, where, reply)
    assert isinstance(exc, ChannelProblem) and not isinstance(exc, BounceError)
    assert not hasattr(exc, "bounce")
    assert reply.split()[0] in exc.reason and "not a bounce" in exc.reason and "SMTP settings" in exc.reason


@pytest.mark.parametrize(("where", "reply"), PERSONS)
def test_a_refusal_about_the_mailbox_is_the_persons_bounce(sink: Sink, where: str, reply: str) -> None:
    exc = _refused(sink, where, reply)
    assert isinstance(exc, BounceError)
    assert exc.bounce["kind"] == "hard" and exc.bounce["phase"] == where.upper()


@pytest.mark.parametrize(("where", "reply"), MESSAGES)
def test_a_refusal_of_the_message_fails_it_without_a_bounce(sink: Sink, where: str, reply: str) -> None:
    exc = _refused(sink, where, reply)
    assert type(exc) is PermanentError
    assert "not a bounce" in exc.reason or "not the address" in exc.reason


def test_a_relay_that_denies_relaying_fails_messages_without_bouncing_anyone(
    own_engine: Any, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the runtime: every message fails with the relay's reason, no "Email Bounced"
    event is added to anyone, no bounce is counted, and the dispatcher reports a channel
    problem."""
    from sqlalchemy import text

    from nudgeflow.channels.base import ChannelRegistry
    from nudgeflow.core.clock import to_ms
    from nudgeflow.runtime.embedded import EmbeddedRuntime
    from nudgeflow.settings import Settings
    from nudgeflow.web.metrics import Metrics

    clock = VirtualClock()
    ws = make_workspace(own_engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    for name in ("ada", "bo"):
        queue_email(own_engine, ws, f"{ws}-{name}", f"{name}@example.org", now)
    sink.rcpt_reply = "550 5.7.1 Relaying denied"
    registry = ChannelRegistry.development(())
    registry.register("email", _channel(sink, clock))
    runtime = EmbeddedRuntime(own_engine, None, clock, Settings(database_url=str(own_engine.url)), channels=registry)
    with caplog.at_level(logging.WARNING, logger="nudgeflow.dispatch"):
        runtime.run_until_idle()

    with own_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT idempotency_key, status, error FROM outbox WHERE workspace_id = :ws"), {"ws": ws}
        ).all()
        bounced = conn.execute(
            text("SELECT count(*) FROM events WHERE event = 'Email Bounced' AND workspace_id = :ws"), {"ws": ws}
        ).scalar_one()
        suppressed = conn.execute(
            text("SELECT count(*) FROM suppressions WHERE workspace_id = :ws"), {"ws": ws}
        ).scalar_one()
    assert {k: s for k, s, _ in rows} == {f"{ws}-ada": "failed", f"{ws}-bo": "failed"}
    assert all("Relaying denied" in (e or "") and "not a bounce" in (e or "") for _, _, e in rows)
    assert bounced == 0 and suppressed == 0
    assert runtime.stats.channel_problems["email"] == 2
    metrics = Metrics()
    metrics.watch_runtime(runtime)  # exported with the other dispatch counters, by channel
    assert 'nudgeflow_channel_problems_total{channel="email"} 2.0' in metrics.render().decode()
    assert sum("channel problem" in r.getMessage() for r in caplog.records) == 2
