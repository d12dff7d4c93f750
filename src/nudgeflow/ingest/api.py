"""The Segment HTTP Tracking API: /v1/track, identify, page, screen, group, alias, batch, import.

These are plain Starlette routes rather than FastAPI ones: they are the hot path, and their
bodies are validated by pydantic-core straight from bytes. Their OpenAPI description is
added by hand in web/openapi.py from the same schemas.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nudgeflow.ingest.auth import basic_user
from nudgeflow.ingest.body import read_body
from nudgeflow.ingest.errors import IngestError, invalid
from nudgeflow.ingest.verification import Claim, reason_for, take_user_hash, verify
from nudgeflow.model.events import EventRecord, InvalidEvent, InvalidPayload, normalize, parse_batch, parse_single
from nudgeflow.store.group_commit import WriterFailed, WriterStopped
from nudgeflow.store.workspaces import WRITE

if TYPE_CHECKING:
    from nudgeflow.ingest.state import IngestState

SINGLE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_OK = orjson.dumps({"success": True})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: IngestError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


async def write_key_owner(state: IngestState, request: Request, body_key: Any) -> tuple[str, str]:
    """(workspace, write kind: public or server) of the request's write key, or a 401."""
    key = basic_user(request.headers.get("authorization"))
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
    found = await state.keys.owner(WRITE, key)
    if found is None:
        raise IngestError(401, "unauthorized", "unknown write key", reason="auth", field="writeKey")
    return found


def claim_of(message: dict[str, Any], index: int | None, batch_context: Any = None) -> Claim | None:
    """Take the message's userHash out, and say whether (and why) it needs one."""
    context = batch_context if isinstance(batch_context, dict) else None
    given = take_user_hash(message, context)
    reason = reason_for(message, context)
    return None if reason is None else (index, str(message["userId"]), reason, given)


def _warnings(records: list[EventRecord], in_batch: bool) -> list[dict[str, Any]]:
    out = []
    for index, record in enumerate(records):
        for name, problem in (record.trait_errors or {}).items():
            field = f"batch[{index}].traits.{name}" if in_batch else f"traits.{name}"
            item: dict[str, Any] = {"field": field, "message": f"{problem['reason']}; the trait was not applied"}
            if in_batch:
                item["index"] = index
            out.append(item)
    return out


async def _commit(state: IngestState, workspace_id: str, records: list[EventRecord], in_batch: bool) -> Response:
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
    warnings = _warnings(records, in_batch)
    if warnings:
        state.metrics.reject("invalid_trait", len(warnings))
        return json_response({"success": True, "warnings": warnings})
    return Response(_OK, media_type="application/json")


async def _guard(state: IngestState, request: Request, handler: Callable[[], Awaitable[Response]]) -> Response:
    """Turn every failure into a 4xx/503 answer: no input may produce a 500."""
    try:
        return await handler()
    except IngestError as exc:
        state.metrics.reject(exc.reason, exc.events)
        return error_response(exc)


def ingest_routes(state: IngestState) -> list[Route]:
    settings = state.settings

    async def batch(request: Request) -> Response:
        async def handle() -> Response:
            body = await read_body(request, settings.max_request_bytes)
            try:
                messages, parsed = parse_batch(body)
            except InvalidPayload as exc:
                raise invalid(exc.errors) from exc
            workspace_id, write_kind = await write_key_owner(state, request, parsed.get("writeKey"))
            received_at = state.clock.now()
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
                        )
                    )
                except InvalidEvent as exc:
                    error = invalid([exc])
                    error.events = len(messages)
                    raise error from exc
            return await _commit(state, workspace_id, records, in_batch=True)

        return await _guard(state, request, handle)

    def single(type_: str) -> Any:
        async def endpoint(request: Request) -> Response:
            async def handle() -> Response:
                body = await read_body(request, settings.max_event_bytes, one_event=True)
                try:
                    message = parse_single(type_, body)
                except InvalidPayload as exc:
                    raise invalid(exc.errors) from exc
                workspace_id, write_kind = await write_key_owner(state, request, message.get("writeKey"))
                claim = claim_of(message, None)
                await verify(state, workspace_id, write_kind, [claim] if claim else [], 1)
                try:
                    record = normalize(message, state.clock.now(), max_event_bytes=settings.max_event_bytes)
                except InvalidEvent as exc:
                    raise invalid([exc]) from exc
                return await _commit(state, workspace_id, [record], in_batch=False)

            return await _guard(state, request, handle)

        endpoint.__name__ = f"ingest_{type_}"
        return endpoint

    routes = [Route(f"/v1/{t}", single(t), methods=["POST"], name=f"ingest_{t}") for t in SINGLE_TYPES]
    routes.append(Route("/v1/batch", batch, methods=["POST"], name="ingest_batch"))
    routes.append(Route("/v1/import", batch, methods=["POST"], name="ingest_import"))
    return routes
