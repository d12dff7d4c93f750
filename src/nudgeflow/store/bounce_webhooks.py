"""A workspace's bounce and complaint webhook secrets: its settings section "bounce_webhooks".

One entry per provider (docs/bounces.md), kept sealed with the rest of the workspace's
settings (store/workspace_settings.py). web/bounces.py checks each webhook request against
them; `nudgeflow workspace bounce-webhooks` sets, shows and clears them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from nudgeflow.store import workspace_settings

SECTION = "bounce_webhooks"
PROVIDERS = ("ses", "sendgrid", "postmark", "mailgun")


def webhook_settings(conn: Connection, workspace_id: str) -> Any:
    """The section as stored: {provider: {field: value}}, or None when nothing is set."""
    return workspace_settings.get_section(conn, workspace_id, SECTION)


def set_webhook_settings(
    conn: Connection, workspace_id: str, provider: str, values: dict[str, Any] | None, now_ms: int
) -> None:
    """Set (or with None remove) one provider's webhook secrets of a workspace."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}: ses, sendgrid, postmark or mailgun")
    section = webhook_settings(conn, workspace_id) or {}
    if values is None:
        section.pop(provider, None)
    else:
        section[provider] = values
    workspace_settings.set_section(conn, workspace_id, SECTION, section or None, now_ms)
