"""A workspace's Web Push (VAPID) settings, and the public key browsers subscribe with.

Admin API (bearer admin token, as every /api route):

- GET  /api/settings/webpush          public key, subject, when the pair was made
- PUT  /api/settings/webpush          {"subject": "mailto:…" | "https://…"}
- POST /api/settings/webpush/rotate   a new key pair (existing subscriptions must re-subscribe)

Public, for the browser SDK (the write key, as ingest takes it: Basic auth user or
`?writeKey=`):

- GET  /v1/push/vapid-public-key      {"publicKey": "<base64url>"} (the applicationServerKey)

The private key never leaves: no answer carries it. A workspace made before keys were
generated on creation gets its pair on the first of these calls.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from nudgeflow.core.clock import to_ms
from nudgeflow.ingest.api import error_response, json_response
from nudgeflow.ingest.auth import basic_user
from nudgeflow.ingest.errors import IngestError
from nudgeflow.store import vapid as store
from nudgeflow.store.workspaces import WRITE
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State

PUBLIC_KEY_TTL_S = 30.0  # how long this process reuses a workspace's public key it has read
ROTATION_NOTE = (
    "Browser subscriptions made with the previous public key are refused by their push services from "
    "now on; the SDK subscribes again when it sees the new key."
)

# Called from the site's pages, usually another origin; no cookies are involved.
CORS = {"Access-Control-Allow-Origin": "*"}
CORS_PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization",
    "Access-Control-Max-Age": "600",
}


class WebPushSettings(BaseModel):
    public_key: str = Field(description="base64url uncompressed P-256 point: the browsers' applicationServerKey")
    subject: str = Field(description="the VAPID contact (JWT sub) push services see")
    rotated_at_ms: int
    subject_is_placeholder: bool = Field(
        description="true until a real contact is set (Apple's service refuses the placeholder)"
    )
    note: str | None = None


class WebPushSettingsIn(BaseModel):
    subject: str = Field(description="mailto:you@example.com or https://example.com")


def _senders_changed(state: AppState, workspace_id: str) -> None:
    """A running Web Push sender drops its cached key and JWTs for the workspace at once."""
    runtime = state.runtime
    channel = runtime.channels.get("push") if runtime is not None else None
    sender = getattr(channel, "senders", {}).get("webpush") if channel is not None else None
    if sender is not None and hasattr(sender, "invalidate"):
        sender.invalidate(workspace_id)


def push_settings_router() -> APIRouter:
    router = APIRouter()
    public_keys: dict[str, tuple[float, str]] = {}  # workspace -> (read at, public key)

    def ensured(state: AppState, workspace_id: str) -> store.VapidKeys:
        with state.engine.connect() as conn:
            keys = store.get_vapid_keys(conn, workspace_id)
        if keys is None:
            with state.engine.begin() as conn:
                keys = store.ensure_vapid_keys(conn, workspace_id, to_ms(state.clock.now()))
        return keys

    @router.get(
        "/api/settings/webpush",
        tags=["admin"],
        response_model=WebPushSettings,
        summary="The workspace's VAPID public key and subject (never the private key)",
    )
    def get_webpush(state: State, workspace_id: Workspace) -> WebPushSettings:
        return WebPushSettings(**ensured(state, workspace_id).public_view())

    @router.put(
        "/api/settings/webpush",
        tags=["admin"],
        response_model=WebPushSettings,
        summary="Set the VAPID subject (the contact push services see)",
    )
    def put_webpush(state: State, body: WebPushSettingsIn, workspace_id: Workspace) -> WebPushSettings:
        with state.engine.begin() as conn:
            try:
                keys = store.set_vapid_subject(conn, workspace_id, body.subject, to_ms(state.clock.now()))
            except store.VapidError as exc:
                raise HTTPException(422, str(exc)) from None
        _senders_changed(state, workspace_id)
        return WebPushSettings(**keys.public_view())

    @router.post(
        "/api/settings/webpush/rotate",
        tags=["admin"],
        response_model=WebPushSettings,
        summary="A new VAPID key pair (existing browser subscriptions must subscribe again)",
    )
    def rotate_webpush(state: State, workspace_id: Workspace) -> WebPushSettings:
        with state.engine.begin() as conn:
            keys = store.rotate_vapid_keys(conn, workspace_id, to_ms(state.clock.now()))
        public_keys.pop(workspace_id, None)
        _senders_changed(state, workspace_id)
        return WebPushSettings(**keys.public_view(), note=ROTATION_NOTE)

    @router.options("/v1/push/vapid-public-key", include_in_schema=False)
    async def public_key_preflight() -> Response:
        return Response(status_code=204, headers=CORS_PREFLIGHT)

    @router.get(
        "/v1/push/vapid-public-key",
        tags=["sdk"],
        summary="The workspace's VAPID public key, for PushManager.subscribe (write key auth)",
    )
    async def public_key(request: Request, state: State) -> Response:
        try:
            workspace_id = await _write_key_workspace(state, request)
        except IngestError as exc:
            response = error_response(exc)
            response.headers.update(CORS)
            return response
        now = state.clock.monotonic()
        hit = public_keys.get(workspace_id)
        if hit is None or now - hit[0] >= PUBLIC_KEY_TTL_S:
            key = (await asyncio.to_thread(ensured, state, workspace_id)).public_key
            public_keys[workspace_id] = hit = (now, key)
        # no-cache: a rotation must reach the SDK, which re-subscribes when the key changes
        return json_response({"publicKey": hit[1]}, headers={**CORS, "Cache-Control": "no-cache"})

    return router


async def _write_key_workspace(state: AppState, request: Request) -> str:
    key = basic_user(request.headers.get("authorization")) or request.query_params.get("writeKey") or None
    if key is None:
        raise IngestError(
            401,
            "unauthorized",
            "missing write key: send it as the Basic auth user or as ?writeKey=",
            reason="auth",
            field="writeKey",
        )
    workspace_id = await state.keys.workspace(WRITE, key)
    if workspace_id is None:
        raise IngestError(401, "unauthorized", "unknown write key", reason="auth", field="writeKey")
    return workspace_id
