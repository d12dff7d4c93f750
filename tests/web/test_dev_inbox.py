"""serve --dev: the SMTP sink stores what it receives, /dev/inbox shows it; the SMTP settings API."""

from __future__ import annotations

import asyncio
from typing import Any

from nudgeflow.channels.email.channel import EmailChannel
from nudgeflow.content.rendered import RenderedEmail
from nudgeflow.model.outbound import OutboundMessage
from nudgeflow.model.smtp_config import MASK, parse_smtp_url
from nudgeflow.runtime.dev_smtp import start_dev_smtp
from nudgeflow.settings import Settings
from tests.support import free_port, make_workspace, start_server


class Renderer:
    async def render_email(self, message: OutboundMessage) -> RenderedEmail:
        return RenderedEmail(
            subject="Welcome, Ada ✨",
            html='<body><p>Hi <a href="https://x.example/">there</a></p><script>alert(1)</script></body>',
            preheader="A hello",
        )


def _message(key: str) -> OutboundMessage:
    return OutboundMessage(
        key=key,
        workspace_id="ws",
        profile_id="p",
        run_id="r",
        journey_id="j",
        step="s",
        channel="email",
        template="welcome",
        variant=None,
        marketing=False,
        traits={"email": "ada@example.org"},
    )


def test_dev_inbox_receives_and_shows(own_settings: Settings) -> None:
    # A database of its own: the server's engine would send other tests' leftover due
    # messages into the dev inbox too, and the newest message must be this test's.
    smtp_port = free_port()
    server = start_server(own_settings.with_(dev_mode=True, dev_smtp_port=smtp_port, engine_enabled=True))
    try:
        url = server.state.settings.smtp_url
        assert url and f":{smtp_port}" in url  # the default SMTP server is the sink
        channel = server.state.runtime.channels.get("email")
        assert isinstance(channel, EmailChannel)
        sender = EmailChannel(parse_smtp_url(url), renderer=Renderer())
        asyncio.run(sender.send(_message("k1")))
        from sqlalchemy import text

        with server.state.engine.connect() as conn:
            last = conn.execute(text("SELECT MAX(id) FROM inbox_messages")).scalar()
        with server.client() as http:
            page = http.get("/dev/inbox")
            assert page.status_code == 200 and "Welcome, Ada ✨" in page.text and "ada@example.org" in page.text
            assert "nudgeflow@dev.localhost" in page.text
            one = http.get(f"/dev/inbox/{last}")
            assert one.status_code == 200
            assert 'sandbox=""' in one.text and "srcdoc=" in one.text
            assert "<script>" not in one.text  # the HTML is escaped into srcdoc
            assert "Hi there (https://x.example/)" in one.text  # the text part
            assert "Message-ID" in one.text and "X-Nudgeflow-Message-Key" in one.text
            raw = http.get(f"/dev/inbox/{last}.eml")
            assert raw.headers["content-type"].startswith("message/rfc822") and b"multipart/alternative" in raw.content
            assert http.get(f"/dev/inbox/{last + 1000}").status_code == 404
    finally:
        server.stop()


def test_no_dev_inbox_in_production(settings: Settings) -> None:
    server = start_server(settings)
    try:
        with server.client() as http:
            assert http.get("/dev/inbox").status_code == 404
    finally:
        server.stop()


def test_start_dev_smtp_handle(engine: Any) -> None:
    from sqlalchemy import text

    with engine.connect() as conn:  # PostgreSQL's database is shared by the session's tests
        before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM inbox_messages")).scalar()
    port = free_port()
    handle = start_dev_smtp(engine, "127.0.0.1", port)
    try:
        asyncio.run(EmailChannel(parse_smtp_url(handle.url), renderer=Renderer()).send(_message("k")))
    finally:
        handle.stop()
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT mail_from, rcpt_to, subject FROM inbox_messages WHERE id > :b"), {"b": before}
        ).all()
    assert [tuple(r) for r in rows] == [("nudgeflow@dev.localhost", "ada@example.org", "Welcome, Ada ✨")]


def test_smtp_settings_api_masks_secrets(live: Any, ws: Any) -> None:
    auth = {"Authorization": f"Bearer {ws.admin_token}"}
    with live.client(headers=auth) as http:
        assert http.get("/api/settings/smtp").json() == {"source": None, "config": None}
        put = http.put(
            "/api/settings/smtp",
            json={"url": "smtps://mailer:hunter2@mx.example.com?pool=2", "from_address": "news@example.com"},
        )
        assert put.status_code == 200, put.text
        assert "hunter2" not in put.text and put.json()["config"]["password"] == MASK
        got = http.get("/api/settings/smtp").json()
        assert got["source"] == "workspace" and got["config"]["url"] == f"smtps://mailer:{MASK}@mx.example.com:465"
        # the mask sent back keeps the stored password
        again = http.put("/api/settings/smtp", json={"url": got["config"]["url"], "from_address": "n2@example.com"})
        assert again.status_code == 200
        with live.state.engine.connect() as conn:
            from nudgeflow.store.workspace_settings import get_smtp

            stored = get_smtp(conn, ws.workspace_id)
        assert stored is not None and stored.password == "hunter2" and stored.from_address == "n2@example.com"
        assert http.put("/api/settings/smtp", json={"url": "ftp://x"}).status_code == 422
        assert (
            http.put(
                "/api/settings/smtp", json={"url": "smtp://h?dkim_key=/etc/passwd&dkim_selector=s&dkim_domain=d"}
            ).status_code
            == 422
        )
        assert http.delete("/api/settings/smtp").json()["source"] is None
    with live.client() as anon:
        assert anon.get("/api/settings/smtp").status_code == 401


def test_dev_inbox_shows_pushes_from_simulated_browsers(own_settings: Settings) -> None:
    """serve --dev runs a local Web Push service: a simulated browser subscribes there and
    registers with the SDK endpoint; a journey's push message goes out the real Web Push way
    (rendered, encrypted, VAPID-signed), is decrypted there and listed beside the emails."""
    import time

    import orjson
    from sqlalchemy import insert, text

    from nudgeflow.channels.push import PushChannel
    from nudgeflow.content.compiled_templates import save_template
    from nudgeflow.core.clock import to_ms
    from nudgeflow.store.schema import outbox

    # A database of its own, as above: the newest push in the dev inbox must be this test's.
    server = start_server(own_settings.with_(dev_mode=True, dev_smtp_port=free_port(), engine_enabled=True))
    try:
        state = server.state
        assert state.dev_push is not None and state.dev_push.url.startswith("http://127.0.0.1:")
        assert isinstance(state.runtime.channels.get("push"), PushChannel)
        ws = make_workspace(state.engine)
        now = to_ms(state.clock.now())
        with state.engine.begin() as conn:
            save_template(
                conn,
                ws.workspace_id,
                "hello-push",
                {
                    "channel": "push",
                    "title": "Hi {{ profile.first_name | default: 'you' }}",
                    "body": "Welcome back",
                    "url": "https://app.example.com/",
                    "urgency": "low",
                },
                now,
            )
        import httpx

        with httpx.Client(timeout=10) as plain:
            browser = plain.post(f"{state.dev_push.url}/subscriptions").json()
        with server.client() as http:
            page = http.get("/dev/inbox")
            assert state.dev_push.url in page.text
            identify = http.post(
                "/v1/identify", auth=(ws.write_key, ""), json={"userId": "ada", "traits": {"first_name": "Ada"}}
            )
            assert identify.status_code == 200
            reg = http.post(
                "/v1/push/subscriptions",
                auth=(ws.write_key, ""),
                json={"userId": "ada", "subscription": {"endpoint": browser["endpoint"], "keys": browser["keys"]}},
            )
            assert reg.status_code == 200, reg.text
            with state.engine.connect() as conn:
                pid = conn.execute(
                    text("SELECT profile_id FROM push_subscriptions WHERE workspace_id = :ws"), {"ws": ws.workspace_id}
                ).scalar_one()
            with state.engine.begin() as conn:
                conn.execute(
                    insert(outbox).values(
                        workspace_id=ws.workspace_id,
                        idempotency_key="dev-push-1",
                        profile_id=pid,
                        run_id="r",
                        journey_id="j",
                        journey_version=1,
                        step="s",
                        channel="push",
                        template="hello-push",
                        variant=None,
                        marketing=1,
                        payload=orjson.dumps({}).decode(),
                        status="pending",
                        attempts=0,
                        next_attempt_at_ms=now,
                        created_at_ms=now,
                        updated_at_ms=now,
                    )
                )
            state.runtime.push_targets_changed()  # also wakes the dispatcher
            deadline = time.monotonic() + 20
            row = None
            while time.monotonic() < deadline:
                with state.engine.connect() as conn:
                    row = conn.execute(
                        text("SELECT id, subject, channel FROM inbox_messages WHERE channel = 'push' ORDER BY id DESC")
                    ).first()
                if row is not None:
                    break
                time.sleep(0.05)  # a real server's background dispatch loop
            assert row is not None and row.subject == "Hi Ada"
            listing = http.get("/dev/inbox").text
            assert "push" in listing and "Hi Ada" in listing
            shown = http.get(f"/dev/inbox/{row.id}").text
            assert "Welcome back" in shown and "https://app.example.com/" in shown and "low" in shown
    finally:
        server.stop()
