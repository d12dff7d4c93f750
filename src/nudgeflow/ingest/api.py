"""The Segment HTTP Tracking API: /v1/track, identify, page, screen, group, alias, batch, import.

These are plain ASGI endpoints rather than FastAPI or Starlette request handlers: they are the
hot path (a busy server answers thousands of small /v1/track requests a second), so each reads
the four headers it needs in one pass over the scope, the body straight from `receive`, and
sends its answer as two ASGI messages, with no Request, Headers or Response object between.
Bodies are validated by pydantic-core straight from bytes. Their OpenAPI description is added
by hand in web/openapi.py from the same schemas.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nudgeflow.ingest.auth import basic_user
from nudgeflow.ingest.body import RequestHead, receive_body, request_head
from nudgeflow.ingest.errors import IngestError, invalid
from nudgeflow.ingest.verification import Claim, reason_for, take_user_hash, verify
from nudgeflow.model.events import (
    EventRecord,
    InvalidEvent,
    InvalidPayload,
    describe_clamp,
    normalize,
    parse_batch,
    parse_single,
)
from nudgeflow.store.group_commit import WriterFailed, WriterStopped
from nudgeflow.store.workspaces import WRITE

if TYPE_CHECKING:
    from nudgeflow.ingest.state import IngestState

log = logging.getLogger("nudgeflow.ingest")

SINGLE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_OK = orjson.dumps({"success": True})

# Ingest answers any origin, as Segment's API does: the write key (in the Authorization
# header, never a cookie) is what authorizes, so no credentials mode is involved.
CORS = {"Access-Control-Allow-Origin": "*"}
_JSON = (b"content-type", b"application/json")
_CORS_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in CORS.items()]
# The common answer's headers, built once; each request is sent its own messages and list
# (a middleware or server may change what it is handed: a shared list would keep it).
_OK_HEADERS = ((b"content-length", str(len(_OK)).encode()), _JSON, *_CORS_RAW)

# What a handler answers: (status, JSON body, extra headers).
Answer = tuple[int, bytes, dict[str, str]]
_OK_ANSWER: Answer = (200, _OK, {})

# What a request cut by its client is counted as (nginx's "client closed request"): nothing
# is sent, and the request log line shows it apart from answered requests.
CLIENT_CLOSED = 499
_UNAVAILABLE = IngestError(
    503,
    "unavailable",
    "the server could not take the request; retry",
    headers={"Retry-After": "1"},
    reason="unavailable",
)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: IngestError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


async def write_key_owner(state: IngestState, request: Request, body_key: Any) -> tuple[str, str]:
    """(workspace, write kind: public or server) of the request's write key, or a 401."""
    return await key_owner(state, request.headers.get("authorization"), body_key)


async def key_owner(state: IngestState, authorization: str | None, body_key: Any) -> tuple[str, str]:
    """`write_key_owner` from the Authorization header's value (None: not sent)."""
    key = basic_user(authorization)
    if key is None and isinstance(body_key, str):
        key = body_key
    if key is None:
        raise IngestError(
            401,
            "unauthorized",
            "missing write key: send it as the Basic auth user or as writeKey",
            reason="auth",
            field="writeKey",
        )
    # A key seen lately is answered from the cache without a coroutine; else looked up.
    found = state.keys.cached(WRITE, key) or await state.keys.owner(WRITE, key)
    if found is None:
        raise IngestError(401, "unauthorized", "unknown write key", reason="auth", field="writeKey")
    return found


def claim_of(message: dict[str, Any], index: int | None, batch_context: Any = None) -> Claim | None:
    """Take the message's userHash out, and say whether (and why) it needs one."""
    context = batch_context if isinstance(batch_context, dict) else None
    given = take_user_hash(message, context)
    reason = reason_for(message, context)
    return None if reason is None else (index, str(message["userId"]), reason, given)


def _warnings(records: list[EventRecord], in_batch: bool, future_limit: timedelta) -> list[dict[str, Any]]:
    out = []

    def warn(index: int, name: str, message: str) -> None:
        item: dict[str, Any] = {"field": f"batch[{index}].{name}" if in_batch else name, "message": message}
        if in_batch:
            item["index"] = index
        out.append(item)

    for index, record in enumerate(records):
        if record.clamped_from is not None:
            warn(index, "timestamp", describe_clamp(record.clamped_from, future_limit))
        for name, problem in (record.trait_errors or {}).items():
            warn(index, f"traits.{name}", f"{problem['reason']}; the trait was not applied")
    return out


async def _commit(state: IngestState, workspace_id: str, records: list[EventRecord], in_batch: bool) -> Answer:
    wait = state.limiter.take(workspace_id, len(records))
    if wait:
        raise IngestError(
            429,
            "rate_limited",
            f"workspace ingest rate of {state.settings.ingest_rate_per_second:g} events/s exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
            reason="rate_limited",
            events=len(records),
        )
    try:
        await state.committer.write_events(workspace_id, records)
    except (WriterFailed, WriterStopped) as exc:
        raise IngestError(
            503, "unavailable", "events were not stored; retry", headers={"Retry-After": "1"}, reason="unavailable"
        ) from exc
    warnings = _warnings(records, in_batch, future_limit(state))
    if warnings:
        # Stored events are not refused ones: only the traits not applied count as rejects.
        trait_problems = sum(len(r.trait_errors or ()) for r in records)
        if trait_problems:
            state.metrics.reject("invalid_trait", trait_problems)
        clamped = sum(1 for r in records if r.clamped_from is not None)
        if clamped:
            state.metrics.correct("timestamp", clamped)
        return 200, orjson.dumps({"success": True, "warnings": warnings}), {}
    return _OK_ANSWER


def future_limit(state: IngestState) -> timedelta:
    """How far after its receipt an event's timestamp may be (docs/ingest-limits.md)."""
    return timedelta(seconds=state.settings.ingest_max_future_seconds)


Handler = Callable[[RequestHead, Receive], Awaitable[Answer]]


class IngestEndpoint:
    """One ingest route as an ASGI app. Every failure becomes a 4xx or 503 answer (no input
    may produce a 500; a failure on our side, such as the database down, is a 503), and a
    client that disconnects gets none; `__call__` returns the status it sent (CLIENT_CLOSED
    for none), for the timing around it."""

    def __init__(self, state: IngestState, handle: Handler) -> None:
        self._state = state
        self._handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        try:
            answer = await self._handle(request_head(scope["headers"]), receive)
        except IngestError as exc:
            self._state.metrics.reject(exc.reason, exc.events)
            answer = (exc.status, orjson.dumps(exc.body()), exc.headers)
        except ClientDisconnect:
            # The client went away mid-body: no one to answer, and nothing wrong on our side.
            log.debug("ingest: client disconnected before its body was read", extra={"route": scope["path"]})
            return CLIENT_CLOSED
        except Exception as exc:  # the database down (write key lookup, identity verification)...
            _log_failure(scope["path"], exc)
            self._state.metrics.reject(_UNAVAILABLE.reason)
            answer = (_UNAVAILABLE.status, orjson.dumps(_UNAVAILABLE.body()), _UNAVAILABLE.headers)
        if answer is _OK_ANSWER:  # the common answer, its headers built once
            await send({"type": "http.response.start", "status": 200, "headers": [*_OK_HEADERS]})
            await send({"type": "http.response.body", "body": _OK})
            return 200
        status, body, headers = answer
        raw = [(b"content-length", str(len(body)).encode()), _JSON, *_CORS_RAW]
        raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        return status


def _log_failure(route: str, exc: Exception) -> None:
    """Log a failure on our side: its type and where it was raised, never its message nor
    its locals (a database error's message holds the statement's parameters, which may be
    the body's values or the write key's lookup)."""
    where = "".join(traceback.format_tb(exc.__traceback__)[-4:])
    log.error(
        "ingest: request failed on the server, answered 503",
        extra={"route": route, "error": type(exc).__name__, "where": where},
    )


def ingest_endpoints(state: IngestState) -> dict[str, IngestEndpoint]:
    """The ingest ASGI endpoints by path (POST)."""
    settings = state.settings

    async def batch(head: RequestHead, receive: Receive) -> Answer:
        body = await receive_body(head, receive, settings.max_request_bytes)
        try:
            messages, parsed = parse_batch(body)
        except InvalidPayload as exc:
            raise invalid(exc.errors) from exc
        workspace_id, write_kind = await key_owner(state, head.authorization, parsed.get("writeKey"))
        received_at = state.clock.now()
        limit = future_limit(state)
        records = []
        context = parsed.get("context")
        claims = [c for i, m in enumerate(messages) if (c := claim_of(m, i, context)) is not None]
        await verify(state, workspace_id, write_kind, claims, len(messages))
        for index, message in enumerate(messages):
            try:
                records.append(
                    normalize(
                        message,
                        received_at,
                        batch_sent_at=parsed.get("sentAt"),
                        batch_context=context,
                        max_event_bytes=settings.max_event_bytes,
                        field=f"batch[{index}]",
                        index=index,
                        future_limit=limit,
                    )
                )
            except InvalidEvent as exc:
                error = invalid([exc])
                error.events = len(messages)
                raise error from exc
        return await _commit(state, workspace_id, records, in_batch=True)

    def single(type_: str) -> Handler:
        async def handle(head: RequestHead, receive: Receive) -> Answer:
            body = await receive_body(head, receive, settings.max_event_bytes, one_event=True)
            try:
                message = parse_single(type_, body)
            except InvalidPayload as exc:
                raise invalid(exc.errors) from exc
            workspace_id, write_kind = await key_owner(state, head.authorization, message.get("writeKey"))
            claim = claim_of(message, None)
            if claim is not None:  # most events need no proof: no settings read, no coroutine
                await verify(state, workspace_id, write_kind, [claim], 1)
            try:
                record = normalize(
                    message,
                    state.clock.now(),
                    max_event_bytes=settings.max_event_bytes,
                    future_limit=future_limit(state),
                )
            except InvalidEvent as exc:
                raise invalid([exc]) from exc
            return await _commit(state, workspace_id, [record], in_batch=False)

        return handle

    endpoints = {f"/v1/{t}": IngestEndpoint(state, single(t)) for t in SINGLE_TYPES}
    endpoints["/v1/batch"] = endpoints["/v1/import"] = IngestEndpoint(state, batch)
    return endpoints


def ingest_routes(endpoints: dict[str, IngestEndpoint]) -> list[Route]:
    """The endpoints as Starlette routes: the router answers 405 to another method, and the
    OpenAPI document lists them; web/app.py answers their POSTs ahead of the router."""
    names: Sequence[tuple[str, str]] = [*((f"/v1/{t}", f"ingest_{t}") for t in SINGLE_TYPES)]
    names = [*names, ("/v1/batch", "ingest_batch"), ("/v1/import", "ingest_import")]
    return [Route(path, endpoints[path], methods=["POST"], name=name) for path, name in names]
