"""The webhook step's settings of a workspace: the named destinations and the default signing secret.

They live in the workspace's settings document, section "webhooks" (model/webhooks.py says
its shape), sealed like every secret there (store/workspace_settings.py). Each change reads,
changes and writes the whole section with the workspace row locked, as `change_settings`
does, so two changes at once on PostgreSQL cannot lose one.

Secrets are read here only for the webhook channel (`load`); what the CLI and the admin API
show is `WebhookSettings.masked()`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from nudgeflow.model.webhooks import SECTION, Destination, WebhookSettings, WebhookSettingsError, new_secret
from nudgeflow.store.schema import workspaces
from nudgeflow.store.workspace_settings import load_document, store_document


def load(conn: Connection, workspace_id: str) -> WebhookSettings:
    """The workspace's webhook settings, secrets included. WebhookSettingsError when the
    stored section does not check (written by hand, or by a newer version)."""
    return WebhookSettings.from_section(load_document(conn, workspace_id)[1].get(SECTION))


def destination_names(conn: Connection, workspace_id: str) -> list[str] | None:
    """The destinations' names, for the journey checks; None when the section does not check."""
    try:
        return sorted(load(conn, workspace_id).destinations)
    except WebhookSettingsError:
        return None


def _change(conn: Connection, workspace_id: str, now_ms: int, change: Any) -> WebhookSettings:
    conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update())
    exists, doc = load_document(conn, workspace_id)
    updated: WebhookSettings = change(WebhookSettings.from_section(doc.get(SECTION)))
    section = updated.to_section()
    if section is None:
        doc.pop(SECTION, None)
    else:
        doc[SECTION] = section
    store_document(conn, workspace_id, doc, now_ms, exists=exists)
    return updated


def set_destination(conn: Connection, workspace_id: str, destination: Destination, now_ms: int) -> WebhookSettings:
    """Add or replace one destination."""

    def change(current: WebhookSettings) -> WebhookSettings:
        return WebhookSettings(current.secret, {**current.destinations, destination.name: destination})

    return _change(conn, workspace_id, now_ms, change)


def remove_destination(conn: Connection, workspace_id: str, name: str, now_ms: int) -> bool:
    """Remove one destination; False when there was none of that name."""
    if name not in load(conn, workspace_id).destinations:
        return False

    def change(current: WebhookSettings) -> WebhookSettings:
        return WebhookSettings(current.secret, {k: v for k, v in current.destinations.items() if k != name})

    _change(conn, workspace_id, now_ms, change)
    return True


def set_secret(conn: Connection, workspace_id: str, secret: str, now_ms: int) -> WebhookSettings:
    """Replace the default signing secret (that of steps that give a `url`)."""
    return _change(conn, workspace_id, now_ms, lambda current: WebhookSettings(secret, current.destinations))


def ensure_secret(conn: Connection, workspace_id: str, now_ms: int) -> str:
    """The default signing secret, made on first use (like the link-signing secret): a step
    with a `url` is never sent unsigned. `nudgeflow workspace webhooks secret show --reveal`
    gives it to whoever checks the signatures."""
    current = load(conn, workspace_id)
    if current.secret is not None:
        return current.secret
    made = _change(
        conn,
        workspace_id,
        now_ms,
        lambda now: now if now.secret is not None else WebhookSettings(new_secret(), now.destinations),
    )
    assert made.secret is not None
    return made.secret
