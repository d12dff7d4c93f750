"""Where a shown or clicked push notification reports back: POST /t/n/{token}.

The service worker (web/sdk/sw.js) POSTs {"event": "delivered"} when it has shown a
notification and {"event": "clicked", "action": "<id or empty>"} when the person clicks it,
to the notification's `report_url` (content/links.push_report_url). As with the email
tracking links (web/tracking.py), the signed token is the only authority: it names the
workspace, the message and the person, so the service worker carries no write key. A token
that is not valid, not of kind "n", or whose person is gone gets a 404, never a 5xx.

Each report becomes an event on the person's profile, "Push Delivered" or "Push Clicked"
(with the action), whose messageId is derived from (message key, event, action): a browser
that shows the same message on two devices, or a service worker that retries, records it
once, and a journey can branch on it like on an email open. Reports are rate limited per
person with the email opens and clicks (web/link_limits.py): 429 with Retry-After beyond.

CORS: the service worker's fetch comes from the site's origin, which is usually not ours,
and a JSON body makes it a non-simple request: the preflight is answered here, and the
answer allows any origin (the token, not the origin, is what authorizes the report).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from nudgeflow.content.links import PUSH, LinkToken
from nudgeflow.core.clock import to_ms
from nudgeflow.model.event_names import PUSH_CLICKED, PUSH_DELIVERED
from nudgeflow.store import rollups
from nudgeflow.store.event_log import append_events, event_row, profile_identity
from nudgeflow.store.outbox import message_origin
from nudgeflow.web.state import State
from nudgeflow.web.tracking import engagement, verify_token

log = logging.getLogger("nudgeflow.push_reports")

EVENTS = {"delivered": PUSH_DELIVERED, "clicked": PUSH_CLICKED}
LIBRARY = "nudgeflow-push"
MAX_BODY = 4096
MAX_ACTION = 128
REPORTABLE_TYPES = ("application/json", "text/plain", "")  # text/plain: a beacon, no preflight

CORS_ALLOW = {"Access-Control-Allow-Origin": "*"}
CORS_PREFLIGHT = {
    **CORS_ALLOW,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
NO_STORE = {"Cache-Control": "no-store"}


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers={**CORS_ALLOW, **NO_STORE}
    )


def _error(status: int, field: str | None, message: str) -> Response:
    body: dict[str, Any] = {"success": False, "message": f"{field}: {message}" if field else message}
    if field:
        body["errors"] = [{"field": field, "message": message}]
    return _answer(body, status)


def report_message_id(message_key: str, event: str, action: str | None) -> str:
    """One event per (message, event[, action]); long action ids are hashed to fit the column."""
    if event != "clicked":
        return f"nudgeflow:{message_key}:push-{event}"
    act = action or ""
    if len(act) > 40:
        act = "h" + hashlib.sha256(act.encode()).hexdigest()[:32]
    return f"nudgeflow:{message_key}:push-clicked:{act}"


def _message_facts(conn: Connection, workspace_id: str, key: str) -> dict[str, Any]:
    """The journey, run, step, template (and variant) the message came from, for measurement."""
    row = message_origin(conn, workspace_id, key)
    facts: dict[str, Any] = {"message_key": key, "channel": "push"}
    if row is not None:
        facts.update(
            journey_id=row.journey_id, run_id=row.run_id, step=row.step, channel=row.channel, template=row.template
        )
        if row.variant is not None:
            facts["variant"] = row.variant
    return facts


def _record(conn: Connection, token: LinkToken, event: str, action: str | None, now_ms: int) -> bool:
    who = profile_identity(conn, token.profile_id)
    if who is None:
        return False  # erased, or never ours
    properties = _message_facts(conn, token.workspace_id, token.message_key)
    if event == "clicked":
        properties["action"] = action or None
    row = event_row(
        token.workspace_id,
        who[0],
        who[1],
        EVENTS[event],
        report_message_id(token.message_key, event, action),
        properties,
        now_ms,
        LIBRARY,
    )
    append_events(conn, [row])  # ON CONFLICT DO NOTHING: a repeat is stored once
    if event == "clicked":
        # Opening a notification is clicking it: the report counts it as the message's
        # unique open and unique click (store/rollups.py; a bot flag, when set, apart).
        bot = bool(properties.get("bot") or properties.get("machine"))
        opened = rollups.OPENED_MACHINE if bot else rollups.OPENED
        clicked = rollups.CLICKED_BOT if bot else rollups.CLICKED
        for fact in (opened, clicked):
            rollups.count_engagement(conn, token.workspace_id, token.message_key, fact, now_ms)
    return True


async def _read(request: Request) -> bytes | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def _parse(body: bytes) -> tuple[str, str | None] | Response:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _error(400, "body", "invalid JSON")
    if not isinstance(data, dict):
        return _error(400, "body", "expected a JSON object")
    event = data.get("event")
    if event not in EVENTS:
        return _error(400, "event", 'must be "delivered" or "clicked"')
    action = data.get("action")
    if action is not None and not isinstance(action, str):
        return _error(400, "action", "expected a string")
    if action is not None and len(action) > MAX_ACTION:
        return _error(400, "action", f"longer than {MAX_ACTION} characters")
    return event, (action or None)


def push_reports_router() -> APIRouter:
    router = APIRouter(tags=["tracking"], include_in_schema=False)

    @router.options("/t/n/{token}")
    async def preflight(token: str) -> Response:
        return Response(status_code=204, headers=CORS_PREFLIGHT)

    @router.post("/t/n/{token}")
    async def report(request: Request, state: State, token: str) -> Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in REPORTABLE_TYPES:
            return _error(415, "Content-Type", "must be application/json")
        verified = await verify_token(request, state, token, PUSH)
        if verified is None:
            return _error(404, None, "not found")
        engagement(state, verified)  # LinkThrottled: 429 (web/tracking.throttled_answer)
        body = await _read(request)
        if body is None:
            return _error(413, "body", f"larger than {MAX_BODY} bytes")
        parsed = _parse(body)
        if isinstance(parsed, Response):
            return parsed
        event, action = parsed
        now = to_ms(state.clock.now())
        try:
            recorded = await state.committer.run_job(lambda conn: _record(conn, verified, event, action, now))
        except Exception:  # the writer is stopping or the database refused: the worker may retry
            log.exception("could not record a push report")
            return _error(503, None, "not recorded; retry")
        if not recorded:
            return _error(404, None, "not found")
        return _answer({"success": True})

    return router
