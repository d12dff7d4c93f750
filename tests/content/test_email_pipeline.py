"""A journey's email end to end: event over HTTP -> engine -> outbox -> template rendered
with the person's context -> signed links and one-click unsubscribe headers -> a real SMTP
server on loopback; then the unsubscribe flow over HTTP stops the next marketing email."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from nudgeflow.content.compiled_templates import save_template
from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.journeys import Journey
from nudgeflow.settings import Settings
from nudgeflow.store.journeys import apply_draft, publish
from tests.channels.smtp_support import Sink
from tests.content.template_samples import SLOW_SUBJECT
from tests.support import LiveServer, start_server

TEMPLATE = {
    "channel": "email",
    "subject": "{{ profile.first_name | default: 'Hi' }}, you left something behind",
    "preheader": "Your cart is saved",
    "body": """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hello {{ profile.first_name | default: "there" }}, \
your {{ event.properties.product_name | default: "item" }} is waiting.</mj-text>
<mj-button href="https://shop.example.com/cart">Back to your cart</mj-button>
<mj-text><a href="{{ links.unsubscribe }}">Unsubscribe</a></mj-text>
</mj-column></mj-section></mj-body></mjml>""",
}

JOURNEY = {
    "id": "cart-mail",
    "name": "Cart mail",
    "trigger": {"type": "event", "event": "Product Added"},
    "entry": {"reentry": "always"},
    "steps": {"mail": {"type": "send", "channel": "email", "template": "cart-reminder"}},
}


def _local(live: LiveServer, url: str) -> str:
    """A link as the message carries it (public base URL), aimed at the test server."""
    parts = urlsplit(url)
    return f"{live.url}{parts.path}{'?' + parts.query if parts.query else ''}"


def test_journey_email_is_rendered_tracked_and_one_click_unsubscribe_stops_the_next(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    live, clock = mail_server
    ws = live.workspace()
    engine = live.state.engine
    now = to_ms(clock.now())
    with engine.begin() as conn:
        save_template(conn, ws.workspace_id, "cart-reminder", TEMPLATE, now)
        apply_draft(conn, ws.workspace_id, Journey.model_validate(JOURNEY), now)
        publish(conn, ws.workspace_id, "cart-mail", now)
    with live.client(auth=(ws.write_key, "")) as http:
        assert (
            http.post(
                "/v1/identify", json={"userId": "ada", "traits": {"email": "ada@example.org", "first_name": "Ada"}}
            ).status_code
            == 200
        )
        assert (
            http.post(
                "/v1/track",
                json={"userId": "ada", "event": "Product Added", "properties": {"product_name": "Red shoes"}},
            ).status_code
            == 200
        )
    live.state.runtime.run_until_idle()

    assert len(sink.received) == 1
    mail = sink.received[0].message
    assert mail["Subject"] == "Ada, you left something behind"
    assert mail["To"] == "ada@example.org" and "shop@shop.example.com" in mail["From"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = mail["List-Unsubscribe"].strip("<>")
    assert "/u/" in unsubscribe
    plain, rich = mail.get_payload()  # type: ignore[misc]
    html = rich.get_content()
    assert "Hello Ada, your Red shoes is waiting." in html and "Your cart is saved" in html
    assert "https://shop.example.com/cart" not in html  # every link goes through a signed click URL
    assert "/t/c/" in html and "/t/o/" in html
    assert "Hello Ada" in plain.get_content()

    click = next(part.split('"')[0] for part in html.split('href="')[1:] if "/t/c/" in part)
    with live.client() as http:
        r = http.get(_local(live, click), follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"] == "https://shop.example.com/cart"
        tampered = _local(live, click)[:-3] + ("AAA" if not click.endswith("AAA") else "BBB")
        r = http.get(tampered, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers
        # RFC 8058: a POST without cookies or credentials unsubscribes, and does not redirect.
        r = http.post(_local(live, unsubscribe), data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
        assert r.status_code == 200

    with live.client(auth=(ws.write_key, "")) as http:
        assert (
            http.post("/v1/track", json={"userId": "ada", "event": "Product Added", "properties": {}}).status_code
            == 200
        )
    live.state.runtime.run_until_idle()
    assert len(sink.received) == 1  # the next marketing email is not sent…
    with engine.connect() as conn:
        where = {"ws": ws.workspace_id}
        statuses = [
            r[0] for r in conn.execute(text("SELECT status FROM outbox WHERE workspace_id = :ws ORDER BY id"), where)
        ]
        names = {r[0] for r in conn.execute(text("SELECT event FROM events WHERE workspace_id = :ws"), where)}
    assert statuses == ["sent", "suppressed"]  # …and says why
    assert {"Email Link Clicked", "Unsubscribed", "Message Suppressed"} <= names


def test_missing_template_fails_the_message_with_its_reason(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    live, clock = mail_server
    ws = live.workspace()
    engine = live.state.engine
    now = to_ms(clock.now())
    with engine.begin() as conn:
        apply_draft(conn, ws.workspace_id, Journey.model_validate(JOURNEY), now)
        publish(conn, ws.workspace_id, "cart-mail", now)
    with live.client(auth=(ws.write_key, "")) as http:
        http.post("/v1/identify", json={"userId": "bo", "traits": {"email": "bo@example.org"}})
        http.post("/v1/track", json={"userId": "bo", "event": "Product Added"})
    live.state.runtime.run_until_idle()
    assert sink.received == []
    with engine.connect() as conn:
        row: Any = conn.execute(
            text("SELECT status, error FROM outbox WHERE workspace_id = :ws"), {"ws": ws.workspace_id}
        ).one()
    assert row[0] == "failed" and "template 'cart-reminder' not found" in row[1]


def test_a_journey_email_built_in_a_worker_process_arrives_the_same(own_settings: Settings, sink: Sink) -> None:
    """`serve` with NUDGEFLOW_EMAIL_BUILD_PROCESSES=1: render, MIME and signing in a worker."""
    clock = VirtualClock()
    url = f"smtp://127.0.0.1:{sink.port}?tls=none&from=shop@shop.example.com&from_name=Shop"  # type: ignore[attr-defined]
    live = start_server(dataclasses.replace(own_settings, smtp_url=url, email_build_processes=1), clock)
    try:
        ws = live.workspace()
        now = to_ms(clock.now())
        with live.state.engine.begin() as conn:
            save_template(conn, ws.workspace_id, "cart-reminder", TEMPLATE, now)
            apply_draft(conn, ws.workspace_id, Journey.model_validate(JOURNEY), now)
            publish(conn, ws.workspace_id, "cart-mail", now)
        with live.client(auth=(ws.write_key, "")) as http:
            http.post("/v1/identify", json={"userId": "cy", "traits": {"email": "cy@example.org", "first_name": "Cy"}})
            http.post(
                "/v1/track", json={"userId": "cy", "event": "Product Added", "properties": {"product_name": "Hat"}}
            )
        live.state.runtime.run_until_idle()
        assert live.state.runtime.channels.get("email").workers is not None
    finally:
        live.stop()
    assert len(sink.received) == 1
    mail = sink.received[0].message
    assert mail["Subject"] == "Cy, you left something behind"
    html = mail.get_payload()[1].get_content()  # type: ignore[index]
    assert "Hello Cy, your Hat is waiting." in html and "/t/c/" in html


CART_JOURNEY = {
    "id": "cart-1h",
    "name": "Cart",
    "trigger": {"type": "event", "event": "Product Added"},
    "entry": {"reentry": "always"},
    "steps": {"mail": {"type": "send", "channel": "email", "template": "cart-1h-your-items"}},
}


def test_an_events_url_cannot_make_a_click_link_redirect_off_the_workspaces_hosts(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    """The open redirect: with the public write key alone, a product absent from the catalog
    brought `url: https://evil.example/phish` into the shipped cart email, whose click link
    then answered 302 to it. Only trusted destinations get a click link now: the template's
    literal links, catalog URLs and the workspace's allowed_domains; the rest go untracked."""
    import re
    from html import unescape
    from pathlib import Path

    import yaml

    from nudgeflow.store import catalog
    from nudgeflow.store.workspace_settings import set_section

    live, clock = mail_server
    ws = live.workspace()
    now = to_ms(clock.now())
    source = yaml.safe_load((Path(__file__).parents[2] / "examples/templates/cart-1h-your-items.yaml").read_text())
    with live.state.engine.begin() as conn:
        save_template(conn, ws.workspace_id, "cart-1h-your-items", source, now)
        apply_draft(conn, ws.workspace_id, Journey.model_validate(CART_JOURNEY), now)
        publish(conn, ws.workspace_id, "cart-1h", now)
        catalog.import_text(
            conn, ws.workspace_id, "products", "id,name,price,url\nshoe,Shoe,10,https://shop.example.com/p/shoe\n", now
        )
        set_section(conn, ws.workspace_id, "links", {"allowed_domains": ["*.partner.example"]}, now)
    evil = "https://evil.example/phish"
    tricks = [
        evil,
        "https://evil.example\\@shop.example.com/",
        "https://shop.example.com@evil.example/x",
        "https://partner.example.evil.example/",
    ]
    with live.client(auth=(ws.write_key, "")) as http:  # the public write key, nothing else
        assert (
            http.post("/v1/identify", json={"userId": "vi", "traits": {"email": "vi@example.org"}}).status_code == 200
        )
        for i, url in enumerate(tricks):
            http.post(
                "/v1/track",
                json={
                    "userId": "vi",
                    "event": "Product Added",
                    "messageId": f"t{i}",
                    "properties": {"product_id": f"x{i}", "name": f"Trick {i}", "price": 1, "url": url},
                },
            )
        http.post(
            "/v1/track",
            json={
                "userId": "vi",
                "event": "Product Added",
                "messageId": "partner",
                "properties": {
                    "product_id": "pp",
                    "name": "Partner",
                    "price": 2,
                    "url": "https://www.partner.example/pp",
                },
            },
        )
        # In the catalog: its own URL wins over the event's.
        assert (
            http.post(
                "/v1/track",
                json={
                    "userId": "vi",
                    "event": "Product Added",
                    "messageId": "shoe",
                    "properties": {"product_id": "shoe", "name": "Shoe", "price": 10, "url": evil + "?2"},
                },
            ).status_code
            == 200
        )
    live.state.runtime.run_until_idle()

    assert sink.received
    # Every message sent, not the last to arrive: each event started a send, and sends under
    # way at once can reach the sink in any order (an earlier cart may arrive last).
    hrefs = [
        unescape(h)
        for received in sink.received
        for h in re.findall(r'href="([^"]*)"', received.message.get_payload()[1].get_content())  # type: ignore[index]
    ]
    clicks = [h for h in hrefs if "/t/c/" in h]
    assert evil in hrefs  # left in the message as it came, untracked
    with live.client() as http:
        places = {http.get(_local(live, c), follow_redirects=False).headers.get("location") for c in clicks}
    assert "https://shop.example.com/p/shoe" in places  # a catalog URL
    assert "https://www.partner.example/pp" in places  # an allowed domain
    assert "https://shop.example.com/cart" in places  # the template's own literal link
    assert places <= {
        "https://shop.example.com/p/shoe",
        "https://www.partner.example/pp",
        "https://shop.example.com/cart",
        "https://shop.example.com",
    }, places
    assert not any("evil" in (p or "") for p in places)


def test_a_send_whose_render_runs_past_its_budget_is_failed_with_that_reason(
    mail_server: tuple[LiveServer, VirtualClock], sink: Sink
) -> None:
    live, clock = mail_server
    ws = live.workspace()
    engine = live.state.engine
    now = to_ms(clock.now())
    with engine.begin() as conn:
        save_template(conn, ws.workspace_id, "cart-reminder", {**TEMPLATE, "subject": SLOW_SUBJECT}, now)
        apply_draft(conn, ws.workspace_id, Journey.model_validate(JOURNEY), now)
        publish(conn, ws.workspace_id, "cart-mail", now)
    with live.client(auth=(ws.write_key, "")) as http:
        http.post("/v1/identify", json={"userId": "sl", "traits": {"email": "sl@example.org"}})
        http.post("/v1/track", json={"userId": "sl", "event": "Product Added"})
    live.state.runtime.run_until_idle()
    assert sink.received == []
    with engine.connect() as conn:
        row: Any = conn.execute(
            text("SELECT status, error FROM outbox WHERE workspace_id = :ws"), {"ws": ws.workspace_id}
        ).one()
    assert row[0] == "failed", row
    assert "template 'cart-reminder': subject:1:" in row[1] and "longer than its budget of 2000 ms" in row[1]
