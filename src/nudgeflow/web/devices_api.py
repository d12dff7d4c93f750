"""The admin API for a person's push targets (bearer admin token):

    GET    /api/profiles/{ref}/push-targets         Web Push subscriptions and device tokens
    POST   /api/profiles/{ref}/devices              {token, type | provider, app_id?}
    DELETE /api/profiles/{ref}/devices/{token}

`ref` is a profile id, userId or anonymousId, as in the rest of the admin API. Web Push
subscriptions are listed without their keys (p256dh, auth): those are the browser's secrets.
A token registered for another person moves to this one (a shared or re-installed device).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import AfterValidator, BaseModel, Field

from nudgeflow.core.clock import to_ms
from nudgeflow.model.nul import no_nul
from nudgeflow.store.device_ingest import normalize_device, register_device
from nudgeflow.store.push_targets import PushTargetError, list_targets, remove_device_token
from nudgeflow.web.admin import Workspace, resolve_profile
from nudgeflow.web.state import State

Text = Annotated[str, AfterValidator(no_nul)]  # a text column: PostgreSQL cannot store NUL


class DeviceIn(BaseModel):
    token: Text = Field(
        min_length=1, max_length=512, description="The FCM registration token or APNs device token (hex)"
    )
    type: Text | None = Field(
        default=None, max_length=20, description="ios or android, as Segment's context.device.type"
    )
    provider: Text | None = Field(default=None, max_length=10, description="fcm or apns (instead of type)")
    app_id: Text | None = Field(
        default=None, max_length=200, description="The app's bundle id / package name (the APNs topic)"
    )


def devices_router() -> APIRouter:
    # Included ahead of the admin router: its /profiles/{ref:path} routes (DELETE erases the
    # person!) would otherwise match these paths too.
    router = APIRouter(prefix="/api", tags=["push"])

    @router.get("/profiles/{ref:path}/push-targets", summary="A person's Web Push subscriptions and device tokens")
    def push_targets(state: State, ref: str, workspace_id: Workspace) -> dict[str, Any]:
        profile_id = resolve_profile(state, workspace_id, ref)
        with state.engine.connect() as conn:
            return {"profile_id": profile_id, "targets": list_targets(conn, workspace_id, profile_id)}

    @router.post("/profiles/{ref:path}/devices", status_code=201, summary="Register a mobile device token on a person")
    async def add_device(state: State, ref: str, body: DeviceIn, workspace_id: Workspace) -> dict[str, Any]:
        profile_id = resolve_profile(state, workspace_id, ref)
        if body.type is None and body.provider is None:
            raise HTTPException(422, "give the device's type (ios, android) or the provider (fcm, apns)")
        try:
            device = normalize_device(body.token, body.type, body.provider, body.app_id)
        except PushTargetError as exc:
            raise HTTPException(422, str(exc)) from exc
        now = to_ms(state.clock.now())
        await state.committer.run_job(lambda conn: register_device(conn, workspace_id, profile_id, device, now))
        return {
            "profile_id": profile_id,
            "provider": device.provider,
            "token": device.token,
            "platform": device.platform,
            "app_id": device.app_id,
        }

    @router.delete("/profiles/{ref:path}/devices/{token}", summary="Remove a device token from a person")
    async def remove_device(state: State, ref: str, token: str, workspace_id: Workspace) -> dict[str, Any]:
        profile_id = resolve_profile(state, workspace_id, ref)
        given = token.strip()
        spellings = {given, given.lower()}  # APNs tokens are stored in lower case

        def remove(conn: Any) -> bool:
            return remove_device_token(conn, workspace_id, profile_id, sorted(spellings))

        if not await state.committer.run_job(remove):
            raise HTTPException(404, "the person has no such device token")
        return {"removed": True, "profile_id": profile_id}

    return router
