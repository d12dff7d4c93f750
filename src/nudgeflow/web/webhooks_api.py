"""A workspace's webhook destinations and signing secret in the admin API (docs/webhooks.md).

- GET    /api/settings/webhooks                      the destinations and whether a secret is set, masked
- PUT    /api/settings/webhooks/destinations/{name}  add or replace one destination
- DELETE /api/settings/webhooks/destinations/{name}  remove it
- POST   /api/settings/webhooks/secret               a new workspace secret (for steps that give a url)

Secrets go in and come out once: a secret Nudgeflow makes (a new destination without one,
`{"new_secret": true}`, the workspace's rotation) is in that one answer, and every other
answer masks secrets and header values. A PUT that sends the mask as the secret, or as a
header's value, keeps what is stored, so a settings form can send back what it was shown.
A change reaches a running webhook channel at once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from nudgeflow.core.clock import to_ms
from nudgeflow.model.webhooks import MASK, Destination, WebhookSettingsError, check_secret, new_secret
from nudgeflow.store import webhook_destinations
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, app_state


class DestinationIn(BaseModel):
    url: str = Field(description="The http(s) URL to call.")
    method: str = Field(default="POST", description="POST or PUT (a step may choose).")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every call; values are secret.")
    secret: str | None = Field(
        default=None, description="whsec_… to sign with; omitted: the one stored, or a new one (in this answer)."
    )
    new_secret: bool = Field(default=False, description="Make a new secret (in this answer only).")
    allow_private: bool = Field(default=False, description="May reach private, loopback and link-local addresses.")
    allow_networks: list[str] = Field(default_factory=list, description="Private networks (CIDR) it may reach.")
    timeout_s: float | None = Field(default=None, description="Seconds for the whole call (at most 30).")


class SecretIn(BaseModel):
    secret: str | None = Field(default=None, description="whsec_… to use; omitted: a new one (in this answer).")


def _channel_changed(state: AppState, workspace_id: str) -> None:
    runtime = state.runtime
    channel = runtime.channels.get("webhook") if runtime is not None else None
    invalidate = getattr(channel, "invalidate", None)
    if callable(invalidate):
        invalidate(workspace_id)


def webhooks_router() -> APIRouter:
    router = APIRouter(prefix="/api/settings/webhooks", tags=["admin"])

    @router.get("", summary="The webhook destinations and whether a signing secret is set (secrets masked)")
    def get_webhooks(request: Request, workspace_id: Workspace) -> dict[str, Any]:
        with app_state(request).engine.connect() as conn:
            try:
                return webhook_destinations.load(conn, workspace_id).masked()
            except WebhookSettingsError as exc:
                raise HTTPException(500, f"the stored webhook settings are invalid: {exc}") from None

    @router.put("/destinations/{name}", summary="Add or replace a webhook destination")
    def put_destination(request: Request, name: str, body: DestinationIn, workspace_id: Workspace) -> dict[str, Any]:
        state = app_state(request)
        made: str | None = None
        try:
            with state.engine.begin() as conn:
                current = webhook_destinations.load(conn, workspace_id).destinations.get(name)
                secret = body.secret
                if secret == MASK:
                    secret = current.secret if current is not None else None
                    if secret is None:
                        raise WebhookSettingsError("secret is the mask and no secret is stored")
                if secret is None and (body.new_secret or current is None):
                    secret = made = new_secret()
                elif secret is None:
                    assert current is not None
                    secret = current.secret
                headers = dict(body.headers)
                for header, value in headers.items():
                    if value == MASK:
                        kept = current.headers.get(header) if current is not None else None
                        if kept is None:
                            raise WebhookSettingsError(f"header {header!r} is the mask and none is stored")
                        headers[header] = kept
                data = body.model_dump(exclude={"new_secret"}) | {"secret": secret, "headers": headers}
                destination = Destination.build(name, data)
                webhook_destinations.set_destination(conn, workspace_id, destination, to_ms(state.clock.now()))
        except WebhookSettingsError as exc:
            raise HTTPException(422, str(exc)) from None
        _channel_changed(state, workspace_id)
        return {**destination.masked(), **({"secret": made} if made else {})}

    @router.delete("/destinations/{name}", summary="Remove a webhook destination")
    def delete_destination(request: Request, name: str, workspace_id: Workspace) -> dict[str, Any]:
        state = app_state(request)
        with state.engine.begin() as conn:
            try:
                removed = webhook_destinations.remove_destination(conn, workspace_id, name, to_ms(state.clock.now()))
            except WebhookSettingsError as exc:
                raise HTTPException(422, str(exc)) from None
        if not removed:
            raise HTTPException(404, f"no webhook destination {name!r}")
        _channel_changed(state, workspace_id)
        return {"removed": name}

    @router.post("/secret", summary="Set or make the workspace's webhook secret (a made one is in this answer only)")
    def post_secret(request: Request, workspace_id: Workspace, body: SecretIn | None = None) -> dict[str, Any]:
        state = app_state(request)
        given = body.secret if body is not None else None
        value = given or new_secret()
        try:
            check_secret(value)
            with state.engine.begin() as conn:
                webhook_destinations.set_secret(conn, workspace_id, value, to_ms(state.clock.now()))
        except WebhookSettingsError as exc:
            raise HTTPException(422, str(exc)) from None
        _channel_changed(state, workspace_id)
        return {"secret": value if given is None else MASK}

    return router
