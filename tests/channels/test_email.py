"""The email channel against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import logging
from email import message_from_bytes, policy
from typing import Any

import dkim
import pytest

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.email.channel import EmailChannel, StaticConfig
from nudgeflow.channels.email.mime import compose, message_id_for
from nudgeflow.channels.email.pool import BounceError
from nudgeflow.content.email_text import html_to_text
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.bounce_address import bounce_key, names_message, parse_signed, verifies
from nudgeflow.model.smtp_config import SmtpConfigError, parse_smtp_url
from tests.channels.email_support import HTML, UNSUB, FixedRenderer, outbound, queue_email
from tests.channels.smtp_support import Sink, Users, dkim_key, server_contexts, start_sink
from tests.support import free_port, make_workspace


def channel_for(url: str, **kw: Any) -> EmailChannel:
    return EmailChannel(parse_smtp_url(url), renderer=kw.pop("renderer", FixedRenderer()), **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- content ------------------------------------------------------------------------------


def test_html_to_text() -> None:
    text = html_to_text(HTML)
    assert text == (
        "Hello Ada\n\nYou left 2 items in your cart.\n\n- Red shoes\n- Blue hat\n\n"
        "Back to your cart (https://shop.example.com/cart?u=1)\n"
    )
    assert html_to_text('<a href="https://x.example">https://x.example</a>') == "https://x.example\n"
    assert html_to_text('<a href="mailto:a@b.c">write</a><br>x<img src=i alt="Logo">') == "write (a@b.c)\nx Logo\n"
    assert html_to_text("") == ""


def test_compose_multipart_alternative_with_stable_message_id() -> None:
    rendered = RenderedEmail(subject="Your\ncart", html=HTML, preheader="Still thinking?", headers=UNSUB)
    one = compose(rendered, "ada@example.org", "Shop <news@shop.example.com>", message_key="k1")
    two = compose(rendered, "ada@example.org", "Shop <news@shop.example.com>", message_key="k1")
    other = compose(rendered, "ada@example.org", "Shop <news@shop.example.com>", message_key="k2")
    assert one["Message-ID"] == two["Message-ID"] == message_id_for("k1", "shop.example.com")
    assert one["Message-ID"].endswith("@shop.example.com>") and one["Message-ID"] != other["Message-ID"]
    parsed = message_from_bytes(one.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Subject"] == "Your cart" and parsed["Date"] and parsed["MIME-Version"] == "1.0"
    plain, rich = parsed.get_payload()  # type: ignore[misc]
    assert (
        plain.get_content_type() == "text/plain"
        and "Back to your cart (https://shop.example.com/cart?u=1)" in plain.get_content()
    )
    assert "Still thinking?" not in plain.get_content()
    body = rich.get_content()
    assert body.index("Still thinking?") < body.index("Hello") and "display:none" in body
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Nudgeflow-Message-Key"] == "k1"


# -- delivery -----------------------------------------------------------------------------


def test_the_bounce_address_is_the_envelope_sender(sink: Sink) -> None:
    """With bounce_domain, MAIL FROM is the signed bounces+<workspace>.<ref>.<mac>@domain
    (where `serve --bounce-smtp` takes the DSNs back), signed for this message and this
    recipient; the From header stays the brand's address."""
    url = (
        f"smtp://127.0.0.1:{sink.port}?tls=none&from=news@shop.example.com"  # type: ignore[attr-defined]
        "&bounce_domain=bounce.shop.example"
    )
    ch = EmailChannel(StaticConfig(parse_smtp_url(url), tracking_secret="s3cret"), renderer=FixedRenderer())
    run(ch.send(outbound(key="k-bounce")))
    got = sink.received[0]
    tag = parse_signed(got.mail_from)
    assert tag is not None and tag.workspace_id == "ws_1" and got.mail_from.startswith("bounces+ws_1.")
    assert got.mail_from.endswith("@bounce.shop.example") and len(got.mail_from.partition("@")[0]) <= 64
    key = bounce_key("s3cret")
    assert verifies(key, tag, "ada@example.org") and verifies(key, tag, "ADA@example.org")
    assert not verifies(key, tag, "bob@example.org") and not verifies(bounce_key("other"), tag, "ada@example.org")
    assert names_message(tag, "k-bounce") and not names_message(tag, "k-other")
    assert got.message["From"] == "news@shop.example.com"
    with pytest.raises(SmtpConfigError):
        parse_smtp_url("smtp://127.0.0.1:25?bounce_domain=a@b")
    # No secret to sign with: the message fails, it does not go out with a forgeable address.
    with pytest.raises(PermanentError, match="sign bounce addresses"):
        run(channel_for(url).send(outbound(key="k-unsigned")))


def test_delivers_over_plain_smtp_and_reuses_one_connection(sink: Sink) -> None:
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=news@shop.example.com&from_name=Shop")  # type: ignore[attr-defined]

    async def go() -> None:
        for i in range(5):
            await ch.send(outbound(key=f"k{i}"))

    run(go())
    assert len(sink.received) == 5
    assert len({r.peer for r in sink.received}) == 1  # one connection for all five
    (pool,) = ch.pools.values()
    assert pool.connections_opened == 1 and pool.sent == 5
    got = sink.received[0]
    assert got.mail_from == "news@shop.example.com" and got.rcpt_tos == ["ada@example.org"]
    msg = got.message
    assert msg["From"] == "Shop <news@shop.example.com>" and msg["To"] == "ada@example.org"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == message_id_for("ws_1:k0", "shop.example.com")


def test_concurrent_sends_bounded_by_the_pool(sink: Sink) -> None:
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com&pool=2")  # type: ignore[attr-defined]

    async def go() -> None:
        await asyncio.gather(*(ch.send(outbound(key=f"k{i}")) for i in range(10)))

    run(go())
    assert len(sink.received) == 10
    (pool,) = ch.pools.values()
    assert pool.connections_opened <= 2 and len(sink.sessions) <= 2


def test_starttls_with_auth_and_verified_certificate(tmp_path: Any) -> None:
    server_ctx, ca_file = server_contexts(tmp_path)
    sink, users = Sink(), Users({"mailer": "s3cr3t:/@"})
    controller = start_sink(
        sink, tls_context=server_ctx, require_starttls=True, authenticator=users, auth_required=True
    )
    try:
        url = f"smtp+starttls://mailer:s3cr3t%3A%2F%40@127.0.0.1:{controller.port}?from=n@shop.example.com&ca={ca_file}"
        run(channel_for(url).send(outbound()))
        # "STARTTLS when offered" finds it too
        url_auto = url.replace("smtp+starttls://", "smtp://")
        run(channel_for(url_auto).send(outbound(key="k2")))
        # a wrong password: worth retrying once the operator fixes it, never a bounce
        with pytest.raises(TransientError, match="authentication"):
            run(channel_for(url.replace("s3cr3t", "wrong")).send(outbound(key="k3")))
    finally:
        controller.stop()
    assert len(sink.received) == 2 and {r.login for r in sink.received} == {"mailer"}
    assert all(r.tls for r in sink.received)
    assert set(users.mechanisms) <= {"PLAIN", "LOGIN"} and users.mechanisms


def test_auth_login_mechanism(tmp_path: Any) -> None:
    server_ctx, ca_file = server_contexts(tmp_path)
    sink, users = Sink(), Users({"mailer": "pw"})
    controller = start_sink(
        sink, tls_context=server_ctx, authenticator=users, auth_required=True, auth_exclude_mechanism=["PLAIN"]
    )
    try:
        run(
            channel_for(f"smtp://mailer:pw@127.0.0.1:{controller.port}?from=n@shop.example.com&ca={ca_file}").send(
                outbound()
            )
        )
    finally:
        controller.stop()
    assert users.mechanisms == ["LOGIN"] and len(sink.received) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_the_password_never_goes_over_a_connection_without_tls() -> None:
    """`smtp://` takes STARTTLS when offered; a server that offers none (or a man in the
    middle who strips the offer) must not be sent the user and password in clear text."""
    sink, users = Sink(), Users({"mailer": "pa55-word-xyz"})
    controller = start_sink(sink, authenticator=users, auth_required=True, auth_require_tls=False)
    try:
        url = f"smtp://mailer:pa55-word-xyz@127.0.0.1:{controller.port}?from=n@shop.example.com"
        with pytest.raises(TransientError, match="STARTTLS") as info:
            run(channel_for(url).send(outbound()))
        # tls=none says plain on purpose: then the password goes as asked
        run(channel_for(url + "&tls=none").send(outbound(key="k2")))
    finally:
        controller.stop()
    assert "pa55-word-xyz" not in info.value.reason
    assert len(users.mechanisms) == 1 and [r.rcpt_tos for r in sink.received] == [["ada@example.org"]]


def test_implicit_tls(tmp_path: Any) -> None:
    server_ctx, ca_file = server_contexts(tmp_path)
    sink = Sink()
    controller = start_sink(sink, ssl_context=server_ctx)
    try:
        run(channel_for(f"smtps://127.0.0.1:{controller.port}?from=n@shop.example.com&ca={ca_file}").send(outbound()))
        # an untrusted certificate is refused (and retried later, not bounced)
        with pytest.raises(TransientError):
            run(channel_for(f"smtps://127.0.0.1:{controller.port}?from=n@shop.example.com").send(outbound(key="k2")))
    finally:
        controller.stop()
    assert len(sink.received) == 1


def test_4xx_is_transient(sink: Sink) -> None:
    sink.rcpt_reply = "451 4.7.1 Greylisted, try again later"
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com")  # type: ignore[attr-defined]
    with pytest.raises(TransientError, match="451"):
        run(ch.send(outbound()))
    sink.rcpt_reply, sink.data_reply = None, "452 4.3.1 Insufficient storage"
    with pytest.raises(TransientError, match="452"):
        run(ch.send(outbound()))


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_5xx_is_a_bounce_with_its_code(sink: Sink, where: str) -> None:
    setattr(sink, f"{where}_reply", "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown")
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com")  # type: ignore[attr-defined]

    async def go() -> BounceError:
        with pytest.raises(BounceError) as info:
            await ch.send(outbound())
        # the connection survives a refusal (RSET) and takes the next message
        setattr(sink, f"{where}_reply", None)
        await ch.send(outbound(key="k2"))
        return info.value

    exc = run(go())
    assert isinstance(exc, PermanentError)
    assert exc.code == 550 and exc.bounce["status"] == "5.1.1" and exc.bounce["phase"] == where.upper()
    assert "550" in exc.reason and "User unknown" in exc.reason
    assert len(sink.received) == 1 and ch.pools[next(iter(ch.pools))].connections_opened == 1


@pytest.mark.parametrize("email", ["jö@example.org", "ada@exämple.org"])
def test_an_address_smtp_cannot_carry_fails_for_good(sink: Sink, email: str) -> None:
    """A non-ASCII address cannot be written on an ASCII RCPT line: the message fails with
    a reason (no retry can change the address), the connection is reset and reused."""
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com")  # type: ignore[attr-defined]

    async def go() -> PermanentError:
        with pytest.raises(PermanentError) as info:
            await ch.send(outbound(email=email))
        await ch.send(outbound(key="k2"))
        return info.value

    exc = run(go())
    assert not isinstance(exc, BounceError)
    assert "SMTPUTF8" in exc.reason and "RCPT" in exc.reason
    assert [r.rcpt_tos for r in sink.received] == [["ada@example.org"]]
    assert ch.pools[next(iter(ch.pools))].connections_opened == 1


def test_connection_refused_is_transient() -> None:
    ch = channel_for(f"smtp://127.0.0.1:{free_port()}?tls=none&from=n@shop.example.com&timeout=2")
    with pytest.raises(TransientError, match="cannot connect"):
        run(ch.send(outbound()))


def test_server_restart_reconnects(sink: Sink) -> None:
    ch = channel_for(f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com")  # type: ignore[attr-defined]
    clock = VirtualClock()
    ch.clock = clock
    ch.pools.clear()

    async def go() -> None:
        await ch.send(outbound(key="a"))
        (pool,) = ch.pools.values()
        client, _ = pool._idle[0]
        client.close()  # the server (or a NAT) dropped it while idle
        await ch.send(outbound(key="b"))
        assert pool.connections_opened == 2

    run(go())
    assert len(sink.received) == 2


def test_check_and_missing_pieces() -> None:
    ch = channel_for("smtp://127.0.0.1:1?tls=none")
    with pytest.raises(PermanentError, match="profile has no email"):
        ch.check(outbound(email=None))
    with pytest.raises(PermanentError, match="From"):
        run(ch.send(outbound()))
    with pytest.raises(PermanentError, match="no SMTP server"):
        run(EmailChannel(None, renderer=FixedRenderer()).send(outbound()))
    with pytest.raises(PermanentError, match="no database to render templates from"):
        run(EmailChannel(parse_smtp_url("smtp://h?from=a@b.example")).send(outbound()))


def test_rate_limit_on_the_injected_clock(sink: Sink) -> None:
    clock = VirtualClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    ch = channel_for(
        f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com&rate=2",  # type: ignore[attr-defined]
        clock=clock,
        sleep=sleep,
    )
    stamps: list[float] = []

    async def go() -> None:
        for i in range(6):
            await ch.send(outbound(key=f"k{i}"))
            stamps.append(clock.monotonic())

    run(go())
    assert len(sink.received) == 6
    # a burst of 2, then one every half second
    assert stamps == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert sum(slept) == pytest.approx(2.0)


# -- DKIM -----------------------------------------------------------------------------------


def test_dkim_signature_verifies_and_covers_list_unsubscribe_post(sink: Sink, tmp_path: Any) -> None:
    path, record = dkim_key(tmp_path)
    asked: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return record if name == b"s2026._domainkey.shop.example.com." else None

    url = (
        f"smtp://127.0.0.1:{sink.port}?tls=none&from=news@shop.example.com"  # type: ignore[attr-defined]
        f"&dkim_selector=s2026&dkim_domain=shop.example.com&dkim_key={path}"
    )
    run(channel_for(url).send(outbound()))
    raw = sink.received[0].raw
    assert dkim.verify(raw, dnsfunc=dnsfunc)
    assert asked == [b"s2026._domainkey.shop.example.com."]
    msg = message_from_bytes(raw, policy=policy.default)
    tags = dict(t.strip().split("=", 1) for t in str(msg["DKIM-Signature"]).replace("\r\n", "").split(";") if "=" in t)
    signed = [h.strip().lower() for h in tags["h"].replace(" ", "").split(":")]
    for header in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert header in signed
    assert tags["d"] == "shop.example.com" and tags["s"] == "s2026"
    # a changed List-Unsubscribe-Post breaks the signature
    tampered = raw.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=One-Clack")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


# -- secrets ------------------------------------------------------------------------------


def test_no_password_in_logs(tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    server_ctx, ca_file = server_contexts(tmp_path)
    sink, users = Sink(), Users({"mailer": "pa55-word-xyz"})
    controller = start_sink(sink, tls_context=server_ctx, authenticator=users, auth_required=True)
    caplog.set_level(logging.DEBUG)
    try:
        good = f"smtp://mailer:pa55-word-xyz@127.0.0.1:{controller.port}?from=n@shop.example.com&ca={ca_file}"
        run(channel_for(good).send(outbound()))
        with pytest.raises(TransientError) as info:
            run(channel_for(good.replace("pa55-word-xyz", "wr0ng-pa55")).send(outbound(key="k2")))
    finally:
        controller.stop()
    assert "pa55-word-xyz" not in caplog.text and "wr0ng-pa55" not in caplog.text
    assert "wr0ng-pa55" not in info.value.reason


# -- through the runtime ----------------------------------------------------------------------


def test_runtime_sends_retries_and_records_bounces(own_engine: Any, sink: Sink) -> None:
    """Through EmbeddedRuntime: a sent message, a 4xx retried with backoff then sent, a 5xx
    failed with its code and an "Email Bounced" event on the profile."""
    from sqlalchemy import text

    from nudgeflow.channels.base import ChannelRegistry
    from nudgeflow.core.clock import to_ms
    from nudgeflow.runtime.embedded import EmbeddedRuntime
    from nudgeflow.settings import Settings

    clock = VirtualClock()
    ws = make_workspace(own_engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    queue_email(own_engine, ws, "ok", "ada@example.org", now)
    queue_email(own_engine, ws, "grey", "grey@example.org", now)
    queue_email(own_engine, ws, "gone", "gone@example.org", now)

    class Picky(Sink):
        greylisted = True

        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
            if address == "gone@example.org":
                return "550 5.1.1 No such user"
            if address == "grey@example.org" and self.greylisted:
                self.greylisted = False
                return "451 4.7.1 Greylisted"
            envelope.rcpt_tos.append(address)
            return "250 OK"

    picky = Picky()
    sink.handle_RCPT = picky.handle_RCPT  # type: ignore[method-assign]
    registry = ChannelRegistry.development(())
    url = f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com"  # type: ignore[attr-defined]
    registry.register("email", EmailChannel(parse_smtp_url(url), renderer=FixedRenderer(), clock=clock))
    runtime = EmbeddedRuntime(own_engine, None, clock, Settings(database_url=str(own_engine.url)), channels=registry)
    runtime.run_until_idle()

    def status() -> dict[str, tuple[str, str | None]]:
        with own_engine.connect() as conn:
            rows = conn.execute(
                text("SELECT idempotency_key, status, error FROM outbox WHERE workspace_id = :ws"), {"ws": ws}
            )
            return {k: (s, e) for k, s, e in rows}

    st = status()
    assert st["ok"][0] == "sent" and st["gone"][0] == "failed" and st["grey"][0] == "pending"
    assert "550" in (st["gone"][1] or "") and "451" in (st["grey"][1] or "")
    clock.advance(3600)
    runtime.run_until_idle()
    assert status()["grey"][0] == "sent"
    assert sorted(r.rcpt_tos[0] for r in sink.received) == ["ada@example.org", "grey@example.org"]
    with own_engine.connect() as conn:
        events = conn.execute(
            text("SELECT profile_id, event, payload FROM events WHERE event = 'Email Bounced' AND workspace_id = :ws"),
            {"ws": ws},
        ).all()
    assert [(e[0], e[1]) for e in events] == [("p_gone", "Email Bounced")]
    assert '"code":550' in events[0][2] and '"status":"5.1.1"' in events[0][2]


@pytest.mark.parametrize("trait", ["Ada Lovelace <ada@example.org>", "ada@example.org, ops@example.org"])
def test_a_suppressed_address_is_not_mailed_through_a_trait_that_is_not_a_bare_address(
    own_engine: Any, sink: Sink, trait: str
) -> None:
    """Suppression is looked up by the email trait as it is; the envelope recipient is the
    address parsed out of it. A trait that is more than an address must not carry a
    suppressed address past the list."""
    from sqlalchemy import text

    from nudgeflow.channels.base import ChannelRegistry
    from nudgeflow.core.clock import to_ms
    from nudgeflow.runtime.embedded import EmbeddedRuntime
    from nudgeflow.settings import Settings
    from nudgeflow.store.consent import suppress

    clock = VirtualClock()
    ws = make_workspace(own_engine, clock=clock).workspace_id
    now = to_ms(clock.now())
    with own_engine.begin() as conn:  # the address complained: never mail it again
        suppress(conn, ws, "email", "ada@example.org", "complaint", now)
    queue_email(own_engine, ws, f"m_{ws}", trait, now)
    registry = ChannelRegistry.development(())
    url = f"smtp://127.0.0.1:{sink.port}?tls=none&from=n@shop.example.com"  # type: ignore[attr-defined]
    registry.register("email", EmailChannel(parse_smtp_url(url), renderer=FixedRenderer(), clock=clock))
    EmbeddedRuntime(
        own_engine, None, clock, Settings(database_url=str(own_engine.url)), channels=registry
    ).run_until_idle()

    assert sink.received == []
    with own_engine.connect() as conn:
        status, error = conn.execute(
            text("SELECT status, error FROM outbox WHERE workspace_id = :ws"), {"ws": ws}
        ).one()
    assert status == "failed" and "not a bare address" in error


def test_the_declared_size_is_the_size_on_the_wire() -> None:
    from aiosmtplib.protocol import normalize_message_line_endings

    from nudgeflow.channels.email.pool import wire_size

    for raw in (b"a\r\nb\r\n", b"a\nb", b"a\rb\r\n", b"a\r\n\r\r\n\nb", b"", b"x\r", b"x\n", b"\r\r"):
        assert wire_size(raw) == len(normalize_message_line_endings(raw)), raw
