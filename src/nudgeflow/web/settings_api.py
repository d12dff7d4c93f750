"""Workspace settings in the admin API: GET/PATCH /api/settings (every key of the registry,
model/workspace_keys.py; secrets masked), and GET/PUT/DELETE /api/settings/smtp.

Secrets go in and never come out: answers show the password and the DKIM key masked. A
PUT whose URL carries the mask as its password keeps the stored password (so a settings
form can send back what it was shown)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel, Field

from nudgeflow.core.clock import to_ms
from nudgeflow.model.smtp_config import MASK, SmtpConfig, SmtpConfigError, parse_smtp_url
from nudgeflow.store import workspace_settings as store
from nudgeflow.store.console_users import ADMIN
from nudgeflow.web.access import require_session_role
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State


class SmtpSettingsIn(BaseModel):
    url: str = Field(description="smtp://user:pass@host:port, smtp+starttls://…, smtps://… (options as query)")
    from_address: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    bounce_domain: str | None = Field(
        default=None, description="Envelope sender: a signed bounces+<workspace>.<ref>.<mac>@this domain"
    )
    dkim_private_key: str | None = Field(default=None, description="PEM; the mask keeps the stored key")
    dkim_ed25519_selector: str | None = Field(
        default=None, description="A second signature, Ed25519 (RFC 8463), beside the RSA one: its selector"
    )
    dkim_ed25519_private_key: str | None = Field(
        default=None, description="PEM of the Ed25519 key; the mask keeps the stored key"
    )


def _default(state: AppState) -> Any:
    url = state.settings.smtp_url
    return parse_smtp_url(url) if url else None


def _stored_if_mask(name: str, key: str | None, current: SmtpConfig | None) -> str | None:
    """A key as sent, or the stored one when the mask was sent back."""
    if key != MASK:
        return key
    stored = getattr(current, name) if current else None
    if not stored:
        raise SmtpConfigError(f"{name} is the mask and no key is stored")
    return str(stored)


def _email_channel_changed(state: AppState, workspace_id: str) -> None:
    runtime = state.runtime
    if runtime is None:
        return
    from nudgeflow.channels.email.channel import EmailChannel, WorkspaceConfigs
    from nudgeflow.channels.wiring import configure_email

    channel = runtime.channels.get("email")
    if isinstance(channel, EmailChannel):
        if isinstance(channel.configs, WorkspaceConfigs):
            channel.configs.invalidate(workspace_id)
    else:
        configure_email(runtime.channels, state.engine, state.settings, state.clock)


def settings_router() -> APIRouter:
    router = APIRouter(prefix="/api/settings", tags=["admin"])

    @router.get(
        "",
        summary=(
            "Every workspace setting: value (secrets masked), default, effect; "
            "and the sections with endpoints of their own"
        ),
    )
    def get_settings(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return store.show_settings(conn, workspace_id)

    @router.patch(
        "",
        summary=(
            "Change settings: {key: value, …} (null clears a key); all or none, a wrong value is a 422 naming its key"
        ),
    )
    def patch_settings(
        request: Request,
        state: State,
        workspace_id: Workspace,
        body: dict[str, Any] = Body(description="Keys as docs/settings.md lists them"),
    ) -> dict[str, Any]:
        from nudgeflow.model.workspace_keys import SettingError

        if any(str(name).startswith("identity.") for name in body):
            # Turning identity verification off lets a public write key speak for anyone:
            # an admin's decision, as the /api/identity routes are (web/access.py).
            require_session_role(request, ADMIN, "identity verification")

        try:
            with state.engine.begin() as conn:
                shown = store.change_settings(conn, workspace_id, body, to_ms(state.clock.now()))
        except SettingError as exc:
            raise HTTPException(422, str(exc)) from None
        if any(name.startswith("smtp.") for name in body):
            _email_channel_changed(state, workspace_id)
        if any(name.startswith("identity.") or name == "consent_traits" for name in body):
            state.identity.forget(workspace_id)  # what ingest asks a public key to prove: at once here
        return shown

    @router.get("/smtp", summary="The workspace's SMTP settings (secrets masked)")
    def get_smtp(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return store.smtp_settings_masked(conn, workspace_id, _default(state))

    @router.put("/smtp", summary="Set the workspace's own SMTP server")
    def put_smtp(state: State, body: SmtpSettingsIn, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            try:
                current = store.get_smtp(conn, workspace_id)
            except SmtpConfigError:
                current = None
            try:
                config = parse_smtp_url(body.url)
                if config.password == MASK:
                    if current is None or not current.password:
                        raise SmtpConfigError("the URL's password is the mask and none is stored")
                    config = config.with_(password=current.password)
                if config.dkim_key_path or config.dkim_ed25519_key_path:
                    raise SmtpConfigError("send the DKIM key itself as dkim_private_key, not a server path")
                keys = {
                    name: _stored_if_mask(name, getattr(body, name), current)
                    for name in ("dkim_private_key", "dkim_ed25519_private_key")
                }
                config = config.with_(
                    **{k: v for k, v in body.model_dump(exclude={"url", *keys}).items() if v is not None},
                    **keys,
                )
            except (SmtpConfigError, TypeError) as exc:
                raise HTTPException(422, str(exc)) from None
            for name, key in keys.items():
                if key and b"PRIVATE KEY" not in key.encode():
                    raise HTTPException(422, f"{name} is not a PEM private key")
            store.set_smtp(conn, workspace_id, config, to_ms(state.clock.now()))
        _email_channel_changed(state, workspace_id)
        return {"source": "workspace", "config": config.masked()}

    @router.delete("/smtp", summary="Back to the default SMTP server")
    def delete_smtp(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.begin() as conn:
            store.set_smtp(conn, workspace_id, None, to_ms(state.clock.now()))
        _email_channel_changed(state, workspace_id)
        with state.engine.connect() as conn:
            return store.smtp_settings_masked(conn, workspace_id, _default(state))

    return router
