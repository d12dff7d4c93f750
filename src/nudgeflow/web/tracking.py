"""Public routes behind the links in messages: the open pixel, tracked clicks, one-click
unsubscribe (RFC 8058) and the preference center.

No authentication: the signed token in the path is the authority (content/links.py), and
it names one workspace, message and person. Nothing here redirects anywhere but to the
destination a valid click token signs; a tampered or unknown token gets a 404.

- GET  /t/o/{token}.gif  a 1x1 GIF; records "Email Opened" (once per message and day)
- GET  /t/c/{token}      302 to the signed destination, records "Email Link Clicked"
- POST /u/{token}        unsubscribes at once (all marketing, or the token's topic), 200, no redirect
- GET  /u/{token}        a confirmation page whose button POSTs; a GET alone changes nothing
- GET  /p/{token}        the preference center: topics, frequency, unsubscribe from all
- POST /p/{token}        saves them, at once

Each action becomes an event on the person's profile (a deterministic message id keeps a
repeated open or a provider's repeated one-click POST from counting twice), so journeys can
branch or exit on them.
"""

from __future__ import annotations

import hashlib
import html
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from nudgeflow.content import links
from nudgeflow.content.links import CLICK, OPEN, PREFERENCES, UNSUBSCRIBE, InvalidToken, LinkToken
from nudgeflow.core.clock import to_ms
from nudgeflow.model.event_names import EMAIL_LINK_CLICKED, EMAIL_OPENED, SUBSCRIPTION_PREFERENCES_UPDATED, UNSUBSCRIBED
from nudgeflow.store import consent
from nudgeflow.store.event_log import append_events, event_row, profile_identity
from nudgeflow.store.outbox import message_origin
from nudgeflow.web.state import AppState, State

log = logging.getLogger("nudgeflow.tracking")

LIBRARY = "nudgeflow-tracking"
DAY_MS = 86_400_000
MAX_FORM_BYTES = 64 * 1024

# A transparent 1x1 GIF.
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


async def verify_token(state: AppState, token: str, kind: str) -> LinkToken | None:
    """The token's content if it is valid and of `kind`; the secret is read once per workspace."""
    try:
        workspace_id = links.peek_workspace(token)
    except InvalidToken:
        return None
    cache = state.tracking_secrets
    secret = cache.get(workspace_id)
    if secret is None:
        engine = state.engine

        def read() -> str | None:
            with engine.connect() as conn:
                return consent.existing_tracking_secret(conn, workspace_id)

        secret = await run_in_threadpool(read)
        if secret is None:
            return None  # no link was ever signed for this workspace
        cache[workspace_id] = secret
    try:
        return links.verify(secret, token, kind)
    except InvalidToken:
        return None


def _now_ms(state: AppState) -> int:
    return to_ms(state.clock.now())


async def _job(state: AppState, fn: Callable[[Connection], Any]) -> Any:
    return await state.committer.run_job(fn)


def _message_facts(conn: Connection, workspace_id: str, key: str) -> dict[str, Any]:
    row = message_origin(conn, workspace_id, key)
    if row is None:
        return {"message_key": key, "channel": "email"}
    facts = {
        "message_key": key,
        "journey_id": row.journey_id,
        "run_id": row.run_id,
        "step": row.step,
        "channel": row.channel,
        "template": row.template,
    }
    if row.variant is not None:
        facts["variant"] = row.variant
    return facts


def _record(conn: Connection, token: LinkToken, name: str, message_id: str, extra: dict[str, Any], now_ms: int) -> bool:
    who = profile_identity(conn, token.profile_id)
    if who is None:
        return False
    properties = {**_message_facts(conn, token.workspace_id, token.message_key), **extra}
    append_events(conn, [event_row(token.workspace_id, who[0], who[1], name, message_id, properties, now_ms, LIBRARY)])
    return True


# -- pages ------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    # A backslash at a line's end joins it to the next: the same page, in lines of at most 120.
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{html.escape(title)}</title>
<style>
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f6f4;margin:0}}
main{{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}}
h1{{font-size:1.5rem;margin-top:0}} \
fieldset{{border:1px solid #ccc;border-radius:6px;margin:0 0 1.25rem;padding:.75rem 1rem}}
legend{{font-weight:600;padding:0 .25rem}} label{{display:block;padding:.25rem 0;cursor:pointer}}
button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1f4fd1;color:#fff;cursor:pointer}}
button:focus,input:focus,a:focus{{outline:3px solid #f2a900;outline-offset:2px}} .note{{color:#4a4a4a}}
p[role=status]{{background:#e8f4ea;border-left:4px solid #2e7d32;padding:.5rem .75rem}}
</style></head>
<body><main>
<h1>{html.escape(title)}</h1>
{body}
</main></body></html>
"""
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


def _invalid() -> HTMLResponse:
    return _page(
        "Link not valid", '<p class="note">This link is not valid (it may have been changed or cut short).</p>', 404
    )


def _preferences_link(state: AppState, token: LinkToken) -> str:
    """A signed preference-center link for the same person and message (same host as this page)."""
    secret = state.tracking_secrets[token.workspace_id]  # verify_token put it there
    url = links.preferences_url("", secret, token.workspace_id, token.message_key, token.profile_id)
    return f'<p><a href="{html.escape(url, quote=True)}">Manage your email preferences</a></p>'


async def _form(request: Request) -> dict[str, list[str]]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    return parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)


def _topic_label(settings: dict[str, Any], topic: str | None) -> str:
    if topic is None:
        return "all marketing email"
    labels = dict(consent.topics_of(settings))
    return f"“{labels.get(topic, topic)}” email"


def tracking_router() -> APIRouter:
    router = APIRouter(tags=["tracking"], include_in_schema=False)

    @router.get("/t/o/{token}.gif")
    async def open_pixel(state: State, token: str) -> Response:
        verified = await verify_token(state, token, OPEN)
        if verified is not None:
            now = _now_ms(state)
            day = now // DAY_MS
            message_id = f"nudgeflow:{verified.message_key}:opened:{day}"
            try:
                await _job(state, lambda conn: _record(conn, verified, EMAIL_OPENED, message_id, {}, now))
            except Exception:
                log.exception("could not record an open")
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, max-age=0"})

    @router.get("/t/c/{token}")
    async def click(state: State, token: str) -> Response:
        verified = await verify_token(state, token, CLICK)
        if verified is None or not verified.destination:
            return PlainTextResponse("not found", status_code=404, headers={"Cache-Control": "no-store"})
        destination = verified.destination
        now = _now_ms(state)
        url_hash = hashlib.sha256(destination.encode()).hexdigest()[:16]
        message_id = f"nudgeflow:{verified.message_key}:clicked:{url_hash}:{now // DAY_MS}"
        try:
            await _job(
                state, lambda conn: _record(conn, verified, EMAIL_LINK_CLICKED, message_id, {"url": destination}, now)
            )
        except Exception:  # the person still gets where they were going
            log.exception("could not record a click")
        return RedirectResponse(
            destination, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    @router.get("/u/{token}")
    async def unsubscribe_page(request: Request, state: State, token: str) -> Response:
        verified = await verify_token(state, token, UNSUBSCRIBE)
        if verified is None:
            return _invalid()
        engine = state.engine

        def read() -> dict[str, Any]:
            with engine.connect() as conn:
                return consent.get_settings(conn, verified.workspace_id)

        what = _topic_label(await run_in_threadpool(read), verified.topic)
        body = (
            f"<p>Do you want to stop receiving {html.escape(what)}?</p>"
            f'<form method="post" action="{html.escape(request.url.path, quote=True)}">'
            '<input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Unsubscribe</button></form>'
            '<p class="note">Messages about your account and orders will still be sent.</p>'
            + _preferences_link(state, verified)
        )
        return _page("Unsubscribe", body)

    @router.post("/u/{token}")
    async def unsubscribe(request: Request, state: State, token: str) -> Response:
        verified = await verify_token(state, token, UNSUBSCRIBE)
        if verified is None:
            return PlainTextResponse("not found", status_code=404, headers={"Cache-Control": "no-store"})
        form = await _form(request)
        method = "one_click" if form.get("List-Unsubscribe") == ["One-Click"] else "page"
        now = _now_ms(state)
        topic = verified.topic or consent.ALL

        def apply(conn: Connection) -> tuple[bool, dict[str, Any]] | None:
            who = profile_identity(conn, verified.profile_id)
            if who is None:
                return None
            changed = consent.set_subscription(conn, verified.workspace_id, who[0], topic, False, now)
            if changed:
                message_id = f"nudgeflow:{verified.message_key}:unsubscribed:{topic}:{now}"
                _record(conn, verified, UNSUBSCRIBED, message_id, {"topic": topic, "method": method}, now)
            return changed, consent.get_settings(conn, verified.workspace_id)

        result = await _job(state, apply)
        if result is None:
            return _invalid()
        what = _topic_label(result[1], verified.topic)
        body = f'<p role="status">You are unsubscribed from {html.escape(what)}.</p>' + _preferences_link(
            state, verified
        )
        return _page("Unsubscribed", body)

    async def preference_center(request: Request, state: AppState, token: str, save: bool) -> Response:
        verified = await verify_token(state, token, PREFERENCES)
        if verified is None:
            return _invalid()
        form = await _form(request) if save else {}
        now = _now_ms(state)
        ws = verified.workspace_id

        def work(conn: Connection) -> tuple[dict[str, Any], list[tuple[str, str]], bool] | None:
            who = profile_identity(conn, verified.profile_id)
            if who is None:
                return None
            pid = who[0]
            topics = consent.topics_of(consent.get_settings(conn, ws))
            changed = False
            if save:
                chosen = set(form.get("topic", []))
                frequency = form.get("frequency", [consent.NORMAL])[-1]
                if frequency not in consent.FREQUENCIES:
                    frequency = consent.NORMAL
                all_off = form.get("unsubscribe_all", ["0"])[-1] in ("1", "yes", "on")
                before = consent.subscriptions_of(conn, ws, pid)
                for topic, _label in topics:
                    changed |= consent.set_subscription(conn, ws, pid, topic, topic in chosen, now)
                changed |= consent.set_subscription(conn, ws, pid, consent.ALL, not all_off, now, frequency=frequency)
                after = consent.subscriptions_of(conn, ws, pid, [t for t, _ in topics])
                if changed:
                    props = {
                        "subscribed": after["subscribed"],
                        "frequency": after["frequency"],
                        "topics": after["topics"],
                    }
                    _record(
                        conn,
                        verified,
                        SUBSCRIPTION_PREFERENCES_UPDATED,
                        f"nudgeflow:{pid}:preferences:{now}",
                        props,
                        now,
                    )
                    if before["subscribed"] and all_off:
                        _record(
                            conn,
                            verified,
                            UNSUBSCRIBED,
                            f"nudgeflow:{verified.message_key}:unsubscribed:{consent.ALL}:{now}",
                            {"topic": consent.ALL, "method": "preferences"},
                            now,
                        )
                return after, topics, True
            return consent.subscriptions_of(conn, ws, pid, [t for t, _ in topics]), topics, False

        result = await (_job(state, work) if save else run_in_threadpool(_read_only, state, work))
        if result is None:
            return _invalid()
        subs, topics, saved = result
        return _page("Email preferences", _preferences_form(request.url.path, subs, topics, saved))

    @router.get("/p/{token}")
    async def preferences(request: Request, state: State, token: str) -> Response:
        return await preference_center(request, state, token, save=False)

    @router.post("/p/{token}")
    async def save_preferences(request: Request, state: State, token: str) -> Response:
        return await preference_center(request, state, token, save=True)

    return router


def _read_only(state: AppState, fn: Callable[[Connection], Any]) -> Any:
    with state.engine.connect() as conn:
        return fn(conn)


def _preferences_form(action: str, subs: dict[str, Any], topics: list[tuple[str, str]], saved: bool) -> str:
    parts: list[str] = []
    if saved:
        parts.append('<p role="status">Your preferences are saved.</p>')
    parts.append(f'<form method="post" action="{html.escape(action, quote=True)}">')
    if topics:
        parts.append("<fieldset><legend>What would you like to receive?</legend>")
        for i, (topic, label) in enumerate(topics):
            checked = " checked" if subs["topics"].get(topic, True) else ""
            parts.append(
                f'<label for="topic-{i}"><input type="checkbox" id="topic-{i}" name="topic" '
                f'value="{html.escape(topic, quote=True)}"{checked}> {html.escape(label)}</label>'
            )
        parts.append("</fieldset>")
    parts.append("<fieldset><legend>How often?</legend>")
    for value, label in ((consent.NORMAL, "As they come"), (consent.FEWER, "Fewer emails")):
        checked = " checked" if subs["frequency"] == value else ""
        parts.append(
            f'<label for="frequency-{value}"><input type="radio" id="frequency-{value}" name="frequency" '
            f'value="{value}"{checked}> {label}</label>'
        )
    parts.append("</fieldset>")
    all_off = "" if subs["subscribed"] else " checked"
    parts.append(
        '<fieldset><legend>Unsubscribe</legend><label for="unsubscribe-all">'
        f'<input type="checkbox" id="unsubscribe-all" name="unsubscribe_all" value="1"{all_off}> '
        "Unsubscribe from all marketing email</label>"
        '<p class="note">Messages about your account and orders will still be sent.</p></fieldset>'
    )
    parts.append('<button type="submit">Save preferences</button></form>')
    return "\n".join(parts)
