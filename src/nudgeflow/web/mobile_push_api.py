"""A workspace's FCM and APNs credentials in the admin API (admins only, as every secret):

    GET    /api/settings/fcm     the credentials in effect, the service account masked
    PUT    /api/settings/fcm     {service_account (the key JSON, object or text), project_id?, token_uri?, api_base?}
    DELETE /api/settings/fcm     back to the server's default (or none)
    GET    /api/settings/apns    the credentials in effect, the key masked
    PUT    /api/settings/apns    {team_id, key_id, private_key (the .p8 PEM), topic?, sandbox?, base_url?}
    DELETE /api/settings/apns

The same checks and storage as `nudgeflow workspace fcm|apns set|show|clear`
(channels/push_config.py): a key that does not load is a 422 naming the field, nothing
stored. Secrets go in and never come out: a PUT whose service account or private key is the
mask (`********`) keeps the stored one, so a form can send back what it was shown. A running
server's senders read the change within 30 seconds (their credentials cache), as after the CLI.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from nudgeflow.channels import push_config, wiring
from nudgeflow.core.clock import to_ms
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State


class FcmIn(BaseModel):
    service_account: dict[str, Any] | str = Field(
        description="The Firebase service account key (its JSON object, or its text); the mask keeps the stored one"
    )
    project_id: str | None = Field(default=None, description="Default: the key's project_id")
    token_uri: str | None = None
    api_base: str | None = Field(default=None, description="Default: https://fcm.googleapis.com")


class ApnsIn(BaseModel):
    team_id: str
    key_id: str
    private_key: str = Field(description="The .p8 key's PEM text; the mask keeps the stored one")
    topic: str | None = Field(default=None, description="The app's bundle id, when a device does not say its own")
    sandbox: bool = False
    base_url: str | None = None


def _shown(state: AppState, workspace_id: str, section: str) -> dict[str, Any]:
    default = wiring.fcm_default if section == push_config.FCM_SECTION else wiring.apns_default
    with state.engine.connect() as conn:
        return push_config.masked(conn, workspace_id, section, lambda: default(state.settings))


def _stored(state: AppState, workspace_id: str, section: str) -> Any:
    getter = push_config.get_fcm if section == push_config.FCM_SECTION else push_config.get_apns
    try:
        with state.engine.connect() as conn:
            return getter(conn, workspace_id)
    except push_config.PushConfigError:
        return None  # unreadable: a new value replaces it, the mask has nothing to keep


def mobile_push_router() -> APIRouter:
    router = APIRouter(prefix="/api/settings", tags=["admin"])

    @router.get("/fcm", summary="The workspace's FCM credentials in effect (the service account masked)")
    def get_fcm(state: State, workspace_id: Workspace) -> dict[str, Any]:
        return _shown(state, workspace_id, push_config.FCM_SECTION)

    @router.put("/fcm", summary="Set the workspace's own FCM credentials (a Firebase service account)")
    def put_fcm(state: State, body: FcmIn, workspace_id: Workspace) -> dict[str, Any]:
        try:
            if body.service_account == push_config.MASK:
                current = _stored(state, workspace_id, push_config.FCM_SECTION)
                if current is None:
                    raise push_config.PushConfigError("fcm.service_account: it is the mask and none is stored")
                account = current.service_account
            else:
                account = push_config.parse_service_account(body.service_account)
            config = push_config.FcmConfig(
                project_id=body.project_id or account.get("project_id") or "",
                service_account=account,
                token_uri=body.token_uri or None,
                api_base=body.api_base or None,
            )
        except push_config.PushConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        with state.engine.begin() as conn:
            push_config.set_fcm(conn, workspace_id, config, to_ms(state.clock.now()))
        return _shown(state, workspace_id, push_config.FCM_SECTION)

    @router.delete("/fcm", summary="Back to the server's default FCM credentials (or none)")
    def delete_fcm(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            push_config.set_fcm(conn, workspace_id, None, to_ms(state.clock.now()))
        return _shown(state, workspace_id, push_config.FCM_SECTION)

    @router.get("/apns", summary="The workspace's APNs credentials in effect (the key masked)")
    def get_apns(state: State, workspace_id: Workspace) -> dict[str, Any]:
        return _shown(state, workspace_id, push_config.APNS_SECTION)

    @router.put("/apns", summary="Set the workspace's own APNs credentials (a .p8 signing key)")
    def put_apns(state: State, body: ApnsIn, workspace_id: Workspace) -> dict[str, Any]:
        try:
            key = body.private_key
            if key == push_config.MASK:
                current = _stored(state, workspace_id, push_config.APNS_SECTION)
                if current is None:
                    raise push_config.PushConfigError("apns.private_key: it is the mask and none is stored")
                key = current.private_key
            config = push_config.ApnsConfig(
                team_id=body.team_id,
                key_id=body.key_id,
                private_key=key,
                topic=body.topic or None,
                sandbox=body.sandbox,
                base_url=body.base_url or None,
            )
        except push_config.PushConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        with state.engine.begin() as conn:
            push_config.set_apns(conn, workspace_id, config, to_ms(state.clock.now()))
        return _shown(state, workspace_id, push_config.APNS_SECTION)

    @router.delete("/apns", summary="Back to the server's default APNs credentials (or none)")
    def delete_apns(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            push_config.set_apns(conn, workspace_id, None, to_ms(state.clock.now()))
        return _shown(state, workspace_id, push_config.APNS_SECTION)

    return router
