"""The browser SDK: its two scripts, and the endpoint that attaches a push subscription to a person.

- GET    /sdk/nudgeflow.js        the SDK (identify, track, page, reset, push.subscribe...)
- GET    /sdk/sw.js               the service worker: shows pushes, reports delivered / clicked
- POST   /v1/push/subscriptions   {userId?, anonymousId?, subscription, userAgent?, context?}
- DELETE /v1/push/subscriptions   {endpoint} (or {subscription: {endpoint}})

The two subscription endpoints take the write key the way ingest does (Basic auth user, or
`writeKey` in the body) and answer errors in ingest's shape, each naming its field.

How a subscription finds its person: the registration *is* an ingest event. The endpoint
turns it into a track "Push Subscribed" with the caller's userId / anonymousId, validates and
normalizes it exactly as /v1/track would, and writes it with ingest's own writer
(store/ingest_writer.write_events), which resolves, creates and merges profiles. In the same
transaction it looks the profile up by the identity it was just resolved under and stores
the subscription there (store/push_targets.save_subscription); the answer is 200 only once
that transaction has committed. So an anonymous visitor who subscribes and later logs in
brings the subscription along with the merge, exactly like their events, and a journey can
trigger on "Push Subscribed". The subscription's keys never enter the event log (events are
exported and replayed; the auth secret would leak with them): the event carries only the
endpoint's hash and its push service's origin.

The event's messageId is derived from (endpoint, userId, anonymousId): a retried or repeated
registration is stored once, as ingest stores a repeated messageId once, while the
subscription row is refreshed every time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter
from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import Response

from nudgeflow.channels import push_services
from nudgeflow.core.clock import to_ms
from nudgeflow.ingest.api import error_response, future_limit, json_response, write_key_owner
from nudgeflow.ingest.body import read_body
from nudgeflow.ingest.errors import IngestError, invalid
from nudgeflow.ingest.verification import take_user_hash, verify
from nudgeflow.model.event_names import PUSH_SUBSCRIBED
from nudgeflow.model.events import EventRecord, InvalidEvent, InvalidPayload, normalize, parse_message
from nudgeflow.store.event_log import append_events, appending, profile_identity
from nudgeflow.store.group_commit import WriterFailed, WriterStopped
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import profile_of_identity
from nudgeflow.store.push_targets import (
    PushTargetError,
    delete_subscription,
    endpoint_hash,
    parse_subscription,
    save_subscription,
    subscription_owner,
)
from nudgeflow.store.push_unsubscribed import REPLACED, push_service, unsubscribed_row
from nudgeflow.web.state import AppState, State

log = logging.getLogger("nudgeflow.sdk")

MAX_BODY = 16 * 1024  # a PushSubscription is ~0.5 KB; the page context is the rest
JS_TYPE = "text/javascript; charset=utf-8"  # RFC 9239

# The SDK is called from the site's pages, which are often on another origin than Nudgeflow.
# No cookies are involved (the write key travels in the Authorization header), so "*" is
# right, and it keeps a CDN in front of us from caching one site's origin for another.
CORS_ALLOW = {"Access-Control-Allow-Origin": "*"}
CORS_PREFLIGHT = {
    **CORS_ALLOW,
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


# -- the scripts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Script:
    body: bytes
    etag: str


@lru_cache(maxsize=4)
def _script(name: str) -> _Script:
    """Read from the installed package once per process (they change only with a release)."""
    body = (resources.files("nudgeflow.web") / "sdk" / name).read_bytes()
    return _Script(body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def _serve_script(request: Request, name: str, headers: dict[str, str]) -> Response:
    script = _script(name)
    common = {
        "ETag": script.etag,
        "X-Content-Type-Options": "nosniff",
        # Sites that isolate themselves (COEP) may still load the SDK from our origin.
        "Cross-Origin-Resource-Policy": "cross-origin",
        **CORS_ALLOW,
        **headers,
    }
    if script.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=common)
    body = b"" if request.method == "HEAD" else script.body
    response = Response(body, media_type=JS_TYPE, headers=common)
    if request.method == "HEAD":
        response.headers["content-length"] = str(len(script.body))
    return response


# -- helpers for the subscription endpoints ---------------------------------------------------------


def _bad(field: str, message: str) -> IngestError:
    return invalid([InvalidEvent(field, message)])


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad("body", f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("body", "expected a JSON object")
    return data


def _target_error(exc: PushTargetError) -> IngestError:
    """PushTargetError messages read "<field>: <problem>"; keep the field as the field."""
    field, _, problem = str(exc).partition(": ")
    return _bad(field, problem or str(exc))


def _subscribed_message_id(digest: str, user_id: str | None, anonymous_id: str | None) -> str:
    who = orjson.dumps([digest, user_id, anonymous_id])
    return "push-subscribed-" + hashlib.sha256(who).hexdigest()[:32]


def _profile_of(conn: Connection, workspace_id: str, user_id: str | None, anonymous_id: str | None) -> str | None:
    """The profile an ingest event with these ids was resolved to (identities follow merges)."""
    keys = [f"u:{user_id}"] if user_id else []
    keys += [f"a:{anonymous_id}"] if anonymous_id else []
    for key in keys:
        found = profile_of_identity(conn, workspace_id, key)
        if found is not None:
            return found
    return None


async def _guarded(state: AppState, handler: Any) -> Response:
    """Every failure becomes a 4xx/503 in ingest's shape, with CORS so the page can read it."""
    try:
        response: Response = await handler()
    except IngestError as exc:
        state.metrics.reject(exc.reason, exc.events)
        response = error_response(exc)
    except Exception as exc:  # the writer stopped, the database refused (e.g. another process's race)
        if not isinstance(exc, (WriterFailed, WriterStopped)):
            # The class only: a database error's text carries the statement's parameters,
            # and those hold the subscription's keys.
            log.error("could not store a push subscription change: %s", type(exc).__name__)
        response = json_response(
            {"success": False, "code": "unavailable", "message": "not stored; retry"}, 503, {"Retry-After": "1"}
        )
    response.headers.update(CORS_ALLOW)
    return response


# -- the router --------------------------------------------------------------------------------------


def sdk_router() -> APIRouter:
    """The SDK's routes, and the push report endpoint its service worker calls."""
    from nudgeflow.web.push_reports import push_reports_router

    router = APIRouter(tags=["sdk"], include_in_schema=False)
    router.include_router(push_reports_router())

    @router.api_route("/sdk/nudgeflow.js", methods=["GET", "HEAD"])
    async def sdk_script(request: Request) -> Response:
        # Short-lived: a release reaches pages within minutes; the ETag makes the check cheap.
        return _serve_script(request, "nudgeflow.js", {"Cache-Control": "public, max-age=300"})

    @router.api_route("/sdk/sw.js", methods=["GET", "HEAD"])
    async def service_worker(request: Request) -> Response:
        # Served from /sdk/, but it must be allowed to control the whole site (scope "/").
        # no-cache: the browser revalidates the worker on every update check instead of
        # running a stale one for up to a day.
        return _serve_script(request, "sw.js", {"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    @router.options("/v1/push/subscriptions")
    async def subscriptions_preflight() -> Response:
        return Response(status_code=204, headers=CORS_PREFLIGHT)

    @router.post("/v1/push/subscriptions")
    async def subscribe(request: Request, state: State) -> Response:

        async def handle() -> Response:
            data = _object(await read_body(request, MAX_BODY))
            workspace_id, write_kind = await write_key_owner(state, request, data.get("writeKey"))
            subscription = data.get("subscription")
            try:
                endpoint, _, _ = parse_subscription(subscription)
            except PushTargetError as exc:
                raise _target_error(exc) from exc
            if not push_services.allowed(endpoint, push_services.allowed_hosts(state.settings)):
                # We would POST to it from the operator's network: only push services.
                raise _bad(
                    "subscription.endpoint",
                    f"{push_service(endpoint)} is not a known Web Push service "
                    "(an operator adds one with NUDGEFLOW_WEBPUSH_HOSTS)",
                )
            user_agent = data.get("userAgent")
            if user_agent is not None and not isinstance(user_agent, str):
                raise _bad("userAgent", "expected a string")
            user_agent = user_agent or request.headers.get("user-agent")
            digest = endpoint_hash(endpoint)
            context = data.get("context")
            if context is not None and not isinstance(context, dict):
                raise _bad("context", "expected an object")
            message: dict[str, Any] = {
                "type": "track",
                "event": PUSH_SUBSCRIBED,
                "properties": {"provider": "webpush", "endpoint_hash": digest, "push_service": push_service(endpoint)},
                "context": {**(context or {}), **({"userAgent": user_agent} if user_agent else {})},
            }
            for name in ("userId", "anonymousId", "timestamp", "sentAt"):
                if data.get(name) is not None:
                    message[name] = data[name]
            try:
                parsed = parse_message(message)  # ingest's validation: ids, lengths, timestamps
            except InvalidPayload as exc:
                raise invalid(exc.errors) from exc
            user_id, anonymous_id = parsed.get("userId") or None, parsed.get("anonymousId") or None
            # Identity verification: a subscription for a userId is that person's push.
            given = take_user_hash(parsed)
            if user_id:
                await verify(
                    state,
                    workspace_id,
                    write_kind,
                    [(None, str(user_id), "it attaches a push subscription to the userId", given)],
                    1,
                )
            message_id = _subscribed_message_id(digest, user_id, anonymous_id)
            received_at = state.clock.now()

            def record_with(mid: str) -> EventRecord:
                return normalize(
                    {**parsed, "messageId": mid},
                    received_at,
                    max_event_bytes=state.settings.max_event_bytes,
                    future_limit=future_limit(state),
                )

            try:
                record = record_with(message_id)
            except InvalidEvent as exc:
                raise invalid([exc]) from exc
            wait = state.limiter.take(workspace_id, 1)
            if wait:
                raise IngestError(
                    429,
                    "rate_limited",
                    "workspace ingest rate exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                    reason="rate_limited",
                )
            now_ms = to_ms(received_at)

            def store(conn: Connection) -> str:
                # One take of the partitions' offsets for the whole transaction, at its end,
                # however many write_events it makes: two takes in one transaction could lock
                # partition heads out of order against an ingest commit (store/event_log.py).
                with appending(conn):
                    write_events(conn, workspace_id, [record], now_ms)
                    profile_id = _profile_of(conn, workspace_id, user_id, anonymous_id)
                    if profile_id is None:
                        # The event repeated one whose person has since been erased (the event
                        # was skipped as known, and no identity exists: an erasure committed
                        # between the two reads): write it anew under a fresh id, so the person
                        # exists again to hold the subscription.
                        write_events(conn, workspace_id, [record_with(f"{message_id}-{now_ms}")], now_ms)
                        profile_id = _profile_of(conn, workspace_id, user_id, anonymous_id)
                        if profile_id is None:
                            raise WriterFailed("the subscription's person could not be resolved")
                    replaced: list[tuple[str, str]] = []
                    save_subscription(conn, workspace_id, profile_id, subscription, now_ms, user_agent, replaced)
                    # Replaced by the cap: the person's history says so, as for one removed
                    # by DELETE (and `reachable: push` stops counting it).
                    who = profile_identity(conn, profile_id)
                    if who is not None and replaced:
                        append_events(
                            conn,
                            [
                                unsubscribed_row(workspace_id, who, gone, url, now_ms, REPLACED)
                                for gone, url in replaced
                            ],
                        )
                return profile_id

            await state.committer.run_job(store)
            if record.clamped_from is not None:
                state.metrics.correct("timestamp")
            if state.runtime is not None:
                state.runtime.push_targets_changed()  # the first subscription turns push on at once
            return json_response({"success": True, "endpointHash": digest})

        return await _guarded(state, handle)

    @router.delete("/v1/push/subscriptions")
    async def unsubscribe(request: Request, state: State) -> Response:

        async def handle() -> Response:
            data = _object(await read_body(request, MAX_BODY))
            workspace_id, _ = await write_key_owner(state, request, data.get("writeKey"))
            endpoint = data.get("endpoint")
            field = "endpoint"
            if endpoint is None and isinstance(data.get("subscription"), dict):
                endpoint, field = data["subscription"].get("endpoint"), "subscription.endpoint"
            if not isinstance(endpoint, str) or not endpoint:
                raise _bad(field, "required: the subscription's endpoint URL")
            digest = endpoint_hash(endpoint)
            now_ms = to_ms(state.clock.now())

            def remove(conn: Connection) -> bool:
                owner = subscription_owner(conn, workspace_id, digest)
                if owner is None or not delete_subscription(conn, workspace_id, endpoint):
                    return False  # already gone: removing twice is not an error
                who = profile_identity(conn, owner)
                if who is not None:
                    append_events(conn, [unsubscribed_row(workspace_id, who, digest, endpoint, now_ms)])
                return True

            removed = await state.committer.run_job(remove)
            return json_response({"success": True, "removed": removed})

        return await _guarded(state, handle)

    return router
