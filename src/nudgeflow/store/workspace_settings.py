"""Per-workspace settings: one JSON document per workspace, in sections ("smtp", ...).

Secrets live here too (an SMTP password, a DKIM private key), in the database as given:
protect the database as you protect them. They never leave through this module's public
readers: `smtp_settings_masked` is what the admin API and the CLI show.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update

from nudgeflow.channels.smtp_config import SmtpConfig, SmtpConfigError
from nudgeflow.store.schema import workspace_settings

SMTP = "smtp"


def get_all(conn: Connection, workspace_id: str) -> dict[str, Any]:
    raw = conn.execute(
        select(workspace_settings.c.settings).where(workspace_settings.c.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if not raw:
        return {}
    data = orjson.loads(raw)
    return data if isinstance(data, dict) else {}


def any_workspace_has(engine: Any, section: str) -> bool:
    """Whether some workspace has this settings section ("smtp", "fcm", "apns"): how a
    server decides at start whether a channel is set up anywhere. False before the schema
    exists (a server starting on a new database)."""
    if engine is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(workspace_settings.c.settings)).scalars().all()
    except Exception:  # not migrated yet: nothing configured
        return False
    return any(section in (orjson.loads(row) if row else {}) for row in rows)


def get_section(conn: Connection, workspace_id: str, section: str) -> Any:
    return get_all(conn, workspace_id).get(section)


def set_section(conn: Connection, workspace_id: str, section: str, value: Any, now_ms: int) -> None:
    """Replace one section (None removes it), leaving the others as they are."""
    current = conn.execute(
        select(workspace_settings.c.settings).where(workspace_settings.c.workspace_id == workspace_id)
    ).scalar_one_or_none()
    data = orjson.loads(current) if current else {}
    if value is None:
        data.pop(section, None)
    else:
        data[section] = value
    doc = orjson.dumps(data).decode()
    if current is None:
        conn.execute(insert(workspace_settings).values(workspace_id=workspace_id, settings=doc, updated_at_ms=now_ms))
    else:
        conn.execute(
            update(workspace_settings)
            .where(workspace_settings.c.workspace_id == workspace_id)
            .values(settings=doc, updated_at_ms=now_ms)
        )


def get_smtp(conn: Connection, workspace_id: str) -> SmtpConfig | None:
    """The workspace's own SMTP configuration, secrets included (for the email channel only)."""
    data = get_section(conn, workspace_id, SMTP)
    if not data:
        return None
    return SmtpConfig.from_dict(data)


def set_smtp(conn: Connection, workspace_id: str, config: SmtpConfig | None, now_ms: int) -> None:
    set_section(conn, workspace_id, SMTP, config.to_dict() if config is not None else None, now_ms)


def smtp_settings_masked(conn: Connection, workspace_id: str, default: SmtpConfig | None = None) -> dict[str, Any]:
    """What the admin API and CLI show: the effective configuration, secrets masked, and
    where it comes from ("workspace", "default" or none)."""
    try:
        own = get_smtp(conn, workspace_id)
    except SmtpConfigError as exc:
        return {"source": "workspace", "error": str(exc), "config": None}
    if own is not None:
        return {"source": "workspace", "config": own.masked()}
    if default is not None:
        return {"source": "default", "config": default.masked()}
    return {"source": None, "config": None}
