"""Public routes behind the links in messages: the open pixel, tracked clicks, one-click
unsubscribe (RFC 8058) and the preference center.

No authentication: the signed token in the path is the authority (content/links.py), and
it names one workspace, message and person. Nothing here redirects anywhere but to the
destination a valid click token signs; a tampered or unknown token gets a 404.

- GET  /t/o/{token}.gif  a 1x1 GIF; records "Email Opened" (once per message and day)
- GET  /t/c/{token}      302 to the signed destination, records "Email Link Clicked"
  (HEAD on either answers the same without a body, and records a machine's open or click)
- POST /u/{token}        unsubscribes at once (all marketing, or the token's topic), 200, no redirect
- GET  /u/{token}        a confirmation page whose button POSTs; a GET alone changes nothing
- GET  /p/{token}        the preference center: per channel the workspace uses (email, push),
                         topics and unsubscribe from all; email frequency
- POST /p/{token}        saves them, at once
- GET  /s/{token}        a double opt-in confirmation page whose button POSTs; a GET changes nothing
- POST /s/{token}        records the consent the link names (channel, topic), source double_opt_in

An open or click that a machine made (Apple Mail Privacy Protection's prefetch, a link
scanner: model/engagement_signals.py) is recorded with `machine: true` / `bot: true` and
its reason, under a message id of its own, so that it never takes the place of the
person's open or click of the same day; the click still redirects.

Each action becomes an event on the person's profile (a deterministic message id keeps a
repeated open or a provider's repeated one-click POST from counting twice), so journeys can
branch or exit on them; each consent change also a "Consent Updated" (store/consent_records).

A confirmation link records consent, so it is checked hardest: its signature first (nothing
is looked up for a token we did not sign but the workspace's secret), then its expiry, then
that the person's address is still the one it was sent to. Confirming twice records once.

Every route is rate limited (web/link_limits.py): per person once its token is verified,
per client address while a workspace's link secret is read; over a limit, 429 with
Retry-After (`throttled_answer`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from nudgeflow.content import links
from nudgeflow.content.links import (
    CLICK,
    CONFIRM,
    OPEN,
    PREFERENCES,
    UNSUBSCRIBE,
    ExpiredToken,
    InvalidToken,
    LinkToken,
)
from nudgeflow.core.clock import to_ms
from nudgeflow.model.engagement_signals import (
    FAST_CLICK,
    Kind,
    Networks,
    Rules,
    Sample,
    Verdict,
    classify,
    is_flagged,
)
from nudgeflow.model.event_names import EMAIL_LINK_CLICKED, EMAIL_OPENED, SUBSCRIPTION_PREFERENCES_UPDATED, UNSUBSCRIBED
from nudgeflow.settings import ConfigError, Settings
from nudgeflow.store import consent, consent_records, rollups
from nudgeflow.store.consent_records import Person
from nudgeflow.store.event_log import append_events, event_exists, event_row, profile_identity
from nudgeflow.store.outbox import message_origin
from nudgeflow.store.profiles import load_for_messages
from nudgeflow.web import link_limits
from nudgeflow.web.link_limits import LinkThrottled
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


async def verify_token(
    request: Request, state: AppState, token: str, kind: str, now_ms: int | None = None
) -> LinkToken | None:
    """The token's content if it is valid and of `kind`; the secret is read once per workspace.
    A confirmation link (`now_ms` given) past its time raises ExpiredToken, once its MAC is right.
    Reading a secret not yet cached counts against the client address's limit (LinkThrottled)."""
    try:
        workspace_id = links.peek_workspace(token)
    except InvalidToken:
        return None
    cache = state.tracking_secrets
    secret = cache.get(workspace_id)
    if secret is None:
        # A database read for any workspace id a token names, made-up ones too.
        link_limits.take(state.link_limits.lookups, _client(request))
        engine = state.engine

        def read() -> str | None:
            with engine.connect() as conn:
                return consent.existing_tracking_secret(conn, workspace_id)

        secret = await run_in_threadpool(read)
        if secret is None:
            return None  # no link was ever signed for this workspace
        cache[workspace_id] = secret
    try:
        return links.verify(secret, token, kind, now_ms)
    except ExpiredToken:
        raise
    except InvalidToken:
        return None


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def engagement(state: AppState, token: LinkToken) -> None:
    """An open, click or push report of the token's person (LinkThrottled over the limit)."""
    link_limits.take(state.link_limits.engagement, f"{token.workspace_id}:{token.profile_id}")


def _consent(state: AppState, token: LinkToken) -> None:
    """A consent page of the token's person: a bucket of its own, which no open or click uses."""
    link_limits.take(state.link_limits.consent, f"{token.workspace_id}:{token.profile_id}")


async def throttled_answer(request: Request, exc: Exception) -> Response:
    """429 with Retry-After, in the shape of the route: a push report's JSON (CORS: the
    service worker reads it), a page for the pages, plain text for the pixel and clicks."""
    assert isinstance(exc, LinkThrottled)
    headers = {"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"}
    path = request.url.path
    if path.startswith("/t/n/"):
        headers["Access-Control-Allow-Origin"] = "*"
        return JSONResponse({"success": False, "message": str(exc)}, status_code=429, headers=headers)
    if path.startswith("/t/"):
        return PlainTextResponse(str(exc), status_code=429, headers=headers)
    note = f'<p class="note">Too many requests for this link: {html.escape(str(exc))}.</p>'
    page = _page("Too many requests", note, 429)
    page.headers.update(headers)
    return page


def _now_ms(state: AppState) -> int:
    return to_ms(state.clock.now())


async def _job(state: AppState, fn: Callable[[Connection], Any]) -> Any:
    return await state.committer.run_job(fn)


def _message_facts(conn: Connection, workspace_id: str, key: str) -> dict[str, Any]:
    return _origin_facts(message_origin(conn, workspace_id, key), key)


def _origin_facts(row: Any, key: str) -> dict[str, Any]:
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


def _record(
    conn: Connection,
    token: LinkToken,
    name: str,
    message_id: str,
    extra: dict[str, Any],
    now_ms: int,
    facts: dict[str, Any] | None = None,
) -> bool:
    who = profile_identity(conn, token.profile_id)
    if who is None:
        return False
    if facts is None:
        facts = _message_facts(conn, token.workspace_id, token.message_key)
    properties = {**facts, **extra}
    append_events(conn, [event_row(token.workspace_id, who[0], who[1], name, message_id, properties, now_ms, LIBRARY)])
    fact = _FACTS.get(name)
    if fact is not None:
        # Machine opens and bot clicks (flagged on the event) are counted apart, so that
        # reports can leave them out of the rates (store/rollups.py: once per message).
        flagged = is_flagged(properties)
        rollups.count_engagement(conn, token.workspace_id, token.message_key, fact[int(flagged)], now_ms)
    return True


# The report rollups' fact for each event recorded here: (human, machine or bot).
_FACTS = {
    EMAIL_OPENED: (rollups.OPENED, rollups.OPENED_MACHINE),
    EMAIL_LINK_CLICKED: (rollups.CLICKED, rollups.CLICKED_BOT),
    UNSUBSCRIBED: (rollups.UNSUBSCRIBED, rollups.UNSUBSCRIBED),
}


# -- machine opens and bot clicks (model/engagement_signals.py) -----------------------------------


def engagement_rules(settings: Settings) -> Rules:
    """The rules the tracking routes classify with: the settings' click window and, when
    NUDGEFLOW_APPLE_RELAY_RANGES names a file, Apple's relay ranges, read from it once."""
    relay = Networks()
    path = settings.apple_relay_ranges_file
    if path:
        try:
            with Path(path).open(encoding="utf-8") as lines:
                relay = Networks.parse(lines)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"NUDGEFLOW_APPLE_RELAY_RANGES: {path}: {exc}") from exc
    return Rules(bot_click_seconds=settings.bot_click_seconds, apple_relay=relay)


def _sample(request: Request, kind: Kind) -> Sample:
    """What the request says. The client address is the one uvicorn gives: the peer, or what
    X-Forwarded-For says when the peer is a proxy it trusts (its --forwarded-allow-ips, by
    default only 127.0.0.1); a header any browser can send is not read here."""
    client = request.client
    return Sample(
        kind=kind,
        method=request.method,
        user_agent=request.headers.get("user-agent"),
        client_ip=client.host if client is not None else None,
    )


def _flagged_id(message_id: str, verdict: Verdict) -> str:
    """A machine's open or click is stored under an id of its own: deduplicated among
    themselves, and never taking the place of the person's open or click of that day."""
    return message_id if verdict.flag is None else f"{message_id}:{verdict.flag}"


# How many days of opens the fast_click rule looks back at, at most (the window is seconds).
_MAX_OPEN_DAYS = 3


def _opened_since(conn: Connection, workspace_id: str, key: str, since_ms: int, now_ms: int) -> bool:
    """A person's open of the message was recorded since `since_ms` (the pixel's ids are
    per message and day, so this is one indexed lookup per day)."""
    first = max(since_ms // DAY_MS, now_ms // DAY_MS - _MAX_OPEN_DAYS + 1)
    return any(
        event_exists(conn, workspace_id, f"nudgeflow:{key}:opened:{day}") for day in range(first, now_ms // DAY_MS + 1)
    )


def _classify_click(
    conn: Connection, token: LinkToken, sample: Sample, rules: Rules, sent_at_ms: int | None, now_ms: int
) -> Verdict:
    if sent_at_ms is not None:
        sample = replace(sample, seconds_since_sent=max(0, now_ms - sent_at_ms) / 1000)
    verdict = classify(sample, rules)
    # Only a click this fast asks whether the person opened the message first.
    if (
        verdict.reason == FAST_CLICK
        and sent_at_ms is not None
        and _opened_since(conn, token.workspace_id, token.message_key, sent_at_ms, now_ms)
    ):
        verdict = classify(replace(sample, opened_before=True), rules)
    return verdict


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

    @router.api_route("/t/o/{token}.gif", methods=["GET", "HEAD"])
    async def open_pixel(request: Request, state: State, token: str) -> Response:
        verified = await verify_token(request, state, token, OPEN)
        if verified is not None:
            engagement(state, verified)
            now = _now_ms(state)
            day = now // DAY_MS
            verdict = classify(_sample(request, "open"), state.engagement_rules)
            message_id = _flagged_id(f"nudgeflow:{verified.message_key}:opened:{day}", verdict)
            flags = verdict.properties
            try:
                await _job(state, lambda conn: _record(conn, verified, EMAIL_OPENED, message_id, flags, now))
            except Exception:
                log.exception("could not record an open")
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, max-age=0"})

    @router.api_route("/t/c/{token}", methods=["GET", "HEAD"])
    async def click(request: Request, state: State, token: str) -> Response:
        verified = await verify_token(request, state, token, CLICK)
        if verified is None or not verified.destination:
            return PlainTextResponse("not found", status_code=404, headers={"Cache-Control": "no-store"})
        engagement(state, verified)
        destination = verified.destination
        now = _now_ms(state)
        url_hash = hashlib.sha256(destination.encode()).hexdigest()[:16]
        message_id = f"nudgeflow:{verified.message_key}:clicked:{url_hash}:{now // DAY_MS}"
        sample, rules = _sample(request, "click"), state.engagement_rules

        def record(conn: Connection) -> bool:
            origin = message_origin(conn, verified.workspace_id, verified.message_key)
            verdict = _classify_click(conn, verified, sample, rules, origin.sent_at_ms if origin else None, now)
            facts = _origin_facts(origin, verified.message_key)
            extra = {"url": destination, **verdict.properties}
            return _record(
                conn, verified, EMAIL_LINK_CLICKED, _flagged_id(message_id, verdict), extra, now, facts=facts
            )

        try:
            await _job(state, record)
        except Exception:  # the person (or the scanner following the link) still gets where it was going
            log.exception("could not record a click")
        return RedirectResponse(
            destination, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    @router.get("/u/{token}")
    async def unsubscribe_page(request: Request, state: State, token: str) -> Response:
        verified = await verify_token(request, state, token, UNSUBSCRIBE)
        if verified is None:
            return _invalid()
        _consent(state, verified)
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
        verified = await verify_token(request, state, token, UNSUBSCRIBE)
        if verified is None:
            return PlainTextResponse("not found", status_code=404, headers={"Cache-Control": "no-store"})
        _consent(state, verified)
        form = await _form(request)
        method = "one_click" if form.get("List-Unsubscribe") == ["One-Click"] else "page"
        now = _now_ms(state)
        topic = verified.topic or consent.ALL

        def apply(conn: Connection) -> tuple[bool, dict[str, Any]] | None:
            who = profile_identity(conn, verified.profile_id)
            if who is None:
                return None
            # The link is in an email: it unsubscribes from email only (push keeps its own choices).
            changed = consent_records.record(
                conn,
                verified.workspace_id,
                Person(*who),
                consent.EMAIL,
                topic,
                False,
                now,
                consent_records.UNSUBSCRIBE_LINK,
                message_key=verified.message_key,
            )
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
        verified = await verify_token(request, state, token, PREFERENCES)
        if verified is None:
            return _invalid()
        _consent(state, verified)
        form = await _form(request) if save else {}
        now = _now_ms(state)

        def work(conn: Connection) -> Preferences | None:
            who = profile_identity(conn, verified.profile_id)
            if who is None:
                return None
            prefs = _read_preferences(conn, verified.workspace_id, who[0])
            if save:
                _save_preferences(conn, verified, Person(*who), prefs, form, now)
                prefs = _read_preferences(conn, verified.workspace_id, who[0])
                prefs.saved = True
            return prefs

        result = await (_job(state, work) if save else run_in_threadpool(_read_only, state, work))
        if result is None:
            return _invalid()
        title = "Email preferences" if result.channels == [consent.EMAIL] else "Your preferences"
        return _page(title, _preferences_form(request.url.path, result))

    @router.get("/p/{token}")
    async def preferences(request: Request, state: State, token: str) -> Response:
        return await preference_center(request, state, token, save=False)

    @router.post("/p/{token}")
    async def save_preferences(request: Request, state: State, token: str) -> Response:
        return await preference_center(request, state, token, save=True)

    @router.get("/s/{token}")
    async def confirmation_page(request: Request, state: State, token: str) -> Response:
        try:
            verified = await verify_token(request, state, token, CONFIRM, _now_ms(state))
        except ExpiredToken:
            return _expired()
        if verified is None:
            return _invalid()
        _consent(state, verified)
        engine = state.engine

        def read() -> dict[str, Any]:
            with engine.connect() as conn:
                return consent.get_settings(conn, verified.workspace_id)

        what = _confirm_label(await run_in_threadpool(read), verified)
        body = (
            f"<p>Please confirm that you want to receive {html.escape(what)}.</p>"
            f'<form method="post" action="{html.escape(request.url.path, quote=True)}">'
            '<input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Confirm</button></form>'
            '<p class="note">If you did not ask for this, ignore this page: nothing changes.</p>'
        )
        return _page("Confirm your subscription", body)

    @router.post("/s/{token}")
    async def confirm(request: Request, state: State, token: str) -> Response:
        now = _now_ms(state)
        try:
            verified = await verify_token(request, state, token, CONFIRM, now)
        except ExpiredToken:
            return _expired()
        if verified is None:
            return _invalid()
        _consent(state, verified)

        def apply(conn: Connection) -> tuple[str, dict[str, Any]]:
            return _confirm(conn, verified, now), consent.get_settings(conn, verified.workspace_id)

        outcome, settings = await _job(state, apply)
        if outcome == "unknown":
            return _invalid()
        if outcome == "moved":
            return _page(
                "Link no longer valid",
                '<p class="note">This link was sent to an address that is no longer the one we have for you. '
                "Nothing was changed.</p>",
                410,
            )
        what = _confirm_label(settings, verified)
        said = "was already confirmed" if outcome == "already" else "is confirmed"
        return _page(
            "Subscription confirmed",
            f'<p role="status">Thank you: your subscription to {html.escape(what)} {said}.</p>',
        )

    return router


def _read_only(state: AppState, fn: Callable[[Connection], Any]) -> Any:
    with state.engine.connect() as conn:
        return fn(conn)


# -- the double opt-in confirmation ----------------------------------------------------------------


def _expired() -> HTMLResponse:
    return _page(
        "Link expired",
        '<p class="note">This confirmation link has expired. Nothing was changed: ask for a new one '
        "where you signed up.</p>",
        410,
    )


def _confirm_label(settings: dict[str, Any], token: LinkToken) -> str:
    topic = None if token.topic in (None, consent.ALL) else token.topic
    label = _topic_label(settings, topic)
    if token.channel == consent.EMAIL:
        return label
    return label.replace(" email", "") + f" ({_CHANNEL_LABELS.get(token.channel or '', token.channel or '')})"


def _confirm(conn: Connection, token: LinkToken, now_ms: int) -> str:
    """Record the consent a verified confirmation link names: "confirmed", "already" (this
    very link recorded it before), "moved" (the person's address is no longer the one it
    was sent to), or "unknown" (no such person)."""
    found = load_for_messages(conn, [token.profile_id]).get(token.profile_id)
    if found is None:
        return "unknown"
    traits, user_id, profile_id = found
    channel, topic = token.channel or consent.EMAIL, token.topic or consent.ALL
    address = consent.address_of(channel, traits)
    if address is None or not hmac.compare_digest(
        links.address_digest(channel, address).encode(), (token.address or "").encode()
    ):
        return "moved"
    for row in consent.choices_of(conn, token.workspace_id, profile_id):
        if (
            (row["channel"], row["topic"]) == (channel, topic)
            and row["subscribed"]
            and row["source"] == consent_records.DOUBLE_OPT_IN
            and row["message_key"] == token.message_key
        ):
            return "already"
    consent_records.record(
        conn,
        token.workspace_id,
        Person(profile_id, user_id),
        channel,
        topic,
        True,
        now_ms,
        consent_records.DOUBLE_OPT_IN,
        message_key=token.message_key,
    )
    return "confirmed"


# -- the preference center ---------------------------------------------------------------------

_CHANNEL_LABELS = {consent.EMAIL: "Email", consent.PUSH: "Push notifications"}
_CHANNEL_NOUNS = {consent.EMAIL: "marketing email", consent.PUSH: "marketing push notifications"}


@dataclass
class ChannelPreferences:
    """What one channel's part of the form shows."""

    all_off: bool  # "unsubscribe from all" ticked: a no to all marketing holds for every topic
    topics: dict[str, bool]  # ticked: this topic's messages are wanted
    frequency: str


@dataclass
class Preferences:
    mode: str
    topics: list[tuple[str, str]]
    channels: list[str]
    by_channel: dict[str, ChannelPreferences]
    choices: dict[str, consent.Choices]
    saved: bool = False


def _read_preferences(conn: Connection, workspace_id: str, profile_id: str) -> Preferences:
    settings = consent.get_settings(conn, workspace_id)
    mode = consent.consent_mode(settings)
    topics = consent.topics_of(settings)
    channels = consent_records.channels_in_use(conn, workspace_id, profile_id, settings)
    choices = consent.all_choices(conn, workspace_id, profile_id)
    shown = {c: _shown(choices.get(c, {}), [t for t, _ in topics], mode) for c in channels}
    return Preferences(mode, topics, channels, shown, choices)


def _shown(choices: consent.Choices, topics: list[str], mode: str) -> ChannelPreferences:
    """A channel's form as the choices stand. A topic's box: its own choice if there is one,
    else what all marketing says (in opt_out, yes unless the person said no to the topic;
    in opt_in, a yes to all marketing covers it). "Unsubscribe from all": a no to all
    marketing no topic was said yes to since."""
    every = choices.get(consent.ALL)
    ticked: dict[str, bool] = {}
    for topic in topics:
        own = choices.get(topic)
        if own is not None:
            ticked[topic] = own.subscribed if mode == consent.OPT_OUT else own.consent
        else:
            ticked[topic] = mode == consent.OPT_OUT or (every is not None and every.consent)
    all_off = (
        every is not None
        and not every.subscribed
        and not any(c.subscribed and c.at_ms > every.at_ms for t, c in choices.items() if t != consent.ALL)
    )
    return ChannelPreferences(all_off, ticked, every.frequency if every is not None else consent.NORMAL)


def _field(channel: str, name: str) -> str:
    """A form field of a channel's part: email's keep their first names (topic,
    unsubscribe_all), the others are prefixed (push_topic, push_unsubscribe_all)."""
    return name if channel == consent.EMAIL else f"{channel}_{name}"


def _save_preferences(
    conn: Connection, token: LinkToken, person: Person, prefs: Preferences, form: dict[str, list[str]], now: int
) -> None:
    """Record what the person changed on the form, channel by channel, and the page's events.

    A box changed from what it showed records that choice; a box left as it was records
    nothing (in opt_in, leaving a topic unticked is not a new no). "Unsubscribe from all"
    ticked records a no to all marketing of the channel dated now, so that it holds over
    the topics ticked in the same form; unticked where it was ticked, it records a yes to
    all marketing in opt_out, and in opt_in dates the ticked topics now (a yes to them,
    not to everything)."""
    ws = token.workspace_id
    record_ = dict(message_key=token.message_key)
    changed = False
    newly_all_off = False
    for channel in prefs.channels:
        shown = prefs.by_channel[channel]
        chosen = set(form.get(_field(channel, "topic"), []))
        all_off = form.get(_field(channel, "unsubscribe_all"), ["0"])[-1] in ("1", "yes", "on")
        lifting = shown.all_off and not all_off
        for topic, _label in prefs.topics:
            want = topic in chosen
            if want != shown.topics[topic] or (want and lifting and prefs.mode == consent.OPT_IN):
                changed |= consent_records.record(
                    conn, ws, person, channel, topic, want, now, consent_records.PREFERENCES, **record_
                )
        if all_off:
            changed |= consent_records.record(
                conn, ws, person, channel, consent.ALL, False, now, consent_records.PREFERENCES, **record_
            )
            newly_all_off |= channel == consent.EMAIL and not shown.all_off
        elif lifting and prefs.mode == consent.OPT_OUT:
            changed |= consent_records.record(
                conn, ws, person, channel, consent.ALL, True, now, consent_records.PREFERENCES, **record_
            )
        if channel == consent.EMAIL:
            frequency = form.get("frequency", [shown.frequency])[-1]
            if frequency in consent.FREQUENCIES:
                changed |= consent.set_frequency(conn, ws, person.profile_id, frequency, now)
    if not changed:
        return
    after = _read_preferences(conn, ws, person.profile_id)
    email = after.by_channel[consent.EMAIL]
    props = {
        "subscribed": not email.all_off,
        "frequency": email.frequency,
        "topics": email.topics,
        "channels": {c: {"subscribed": not p.all_off, "topics": p.topics} for c, p in after.by_channel.items()},
    }
    _record(
        conn, token, SUBSCRIPTION_PREFERENCES_UPDATED, f"nudgeflow:{person.profile_id}:preferences:{now}", props, now
    )
    if newly_all_off:
        _record(
            conn,
            token,
            UNSUBSCRIBED,
            f"nudgeflow:{token.message_key}:unsubscribed:{consent.ALL}:{now}",
            {"topic": consent.ALL, "method": "preferences"},
            now,
        )


def _preferences_form(action: str, prefs: Preferences) -> str:
    parts: list[str] = []
    if prefs.saved:
        parts.append('<p role="status">Your preferences are saved.</p>')
    parts.append(f'<form method="post" action="{html.escape(action, quote=True)}">')
    several = len(prefs.channels) > 1
    for channel in prefs.channels:
        shown = prefs.by_channel[channel]
        prefix = "" if channel == consent.EMAIL else f"{channel}-"
        noun = _CHANNEL_NOUNS.get(channel, f"marketing {channel}")
        if several:
            parts.append(f"<h2>{html.escape(_CHANNEL_LABELS.get(channel, channel.capitalize()))}</h2>")
        if prefs.topics:
            parts.append("<fieldset><legend>What would you like to receive?</legend>")
            for i, (topic, label) in enumerate(prefs.topics):
                checked = " checked" if shown.topics.get(topic) else ""
                parts.append(
                    f'<label for="{prefix}topic-{i}"><input type="checkbox" id="{prefix}topic-{i}" '
                    f'name="{_field(channel, "topic")}" value="{html.escape(topic, quote=True)}"{checked}> '
                    f"{html.escape(label)}</label>"
                )
            parts.append("</fieldset>")
        if channel == consent.EMAIL:
            parts.append("<fieldset><legend>How often?</legend>")
            for value, label in ((consent.NORMAL, "As they come"), (consent.FEWER, "Fewer emails")):
                checked = " checked" if shown.frequency == value else ""
                parts.append(
                    f'<label for="frequency-{value}"><input type="radio" id="frequency-{value}" name="frequency" '
                    f'value="{value}"{checked}> {label}</label>'
                )
            parts.append("</fieldset>")
        all_off = " checked" if shown.all_off else ""
        parts.append(
            f'<fieldset><legend>Unsubscribe</legend><label for="{prefix}unsubscribe-all">'
            f'<input type="checkbox" id="{prefix}unsubscribe-all" name="{_field(channel, "unsubscribe_all")}" '
            f'value="1"{all_off}> Unsubscribe from all {html.escape(noun)}</label>'
            + (
                '<p class="note">Messages about your account and orders will still be sent.</p>'
                if channel == consent.EMAIL
                else ""
            )
            + "</fieldset>"
        )
    parts.append('<button type="submit">Save preferences</button></form>')
    return "\n".join(parts)
