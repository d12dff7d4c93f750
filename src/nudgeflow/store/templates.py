"""Templates in the database: immutable versions.

Each save of a changed source adds the next version to `template_versions` and makes it
current (`templates.current_version`); saving a source identical to the current version
adds nothing. The caller validates and compiles a version before it is stored
(content/compiled_templates.py: a template that does not compile is never stored), and
the MJML body's HTML is stored with it.

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, update

from nudgeflow.errors import StoreError
from nudgeflow.store import sql
from nudgeflow.store.profiles import event_owners
from nudgeflow.store.schema import events, template_versions, templates, workspaces

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class TemplateStoreError(StoreError, ValueError):
    """A template operation that cannot be done; the message says why."""


class TemplateNotFound(TemplateStoreError):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateStoreError(
            f"template name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 200, starting with a letter or digit)"
        )
    return name


def _require_workspace(conn: Connection, workspace_id: str) -> None:
    if conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).scalar_one_or_none() is None:
        raise TemplateStoreError(f"no workspace {workspace_id!r}")


def _summary(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "channel": r.channel,
        "current_version": r.current_version,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
    }


def list_templates(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Every template of the workspace, by name: channel, current version, times."""
    rows = conn.execute(select(templates).where(templates.c.workspace_id == workspace_id).order_by(templates.c.name))
    return [_summary(r) for r in rows]


MAX_PAGE = 500


def template_page(conn: Connection, workspace_id: str, after: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """The next `limit` templates after the name `after`, by name (the console's list: one
    page of the primary key, however many templates there are)."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.execute(
        select(templates)
        .where(templates.c.workspace_id == workspace_id, templates.c.name > after)
        .order_by(templates.c.name)
        .limit(limit)
    )
    return [_summary(r) for r in rows]


def count_templates(conn: Connection, workspace_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(templates).where(templates.c.workspace_id == workspace_id)
        ).scalar_one()
    )


def get_template(conn: Connection, workspace_id: str, name: str, version: int | None = None) -> dict[str, Any] | None:
    """One version (the current one by default): its source, and every version's number and time."""
    row = conn.execute(
        select(templates).where(templates.c.workspace_id == workspace_id, templates.c.name == name)
    ).one_or_none()
    if row is None:
        return None
    wanted = row.current_version if version is None else version
    found = conn.execute(
        select(template_versions).where(
            template_versions.c.workspace_id == workspace_id,
            template_versions.c.name == name,
            template_versions.c.version == wanted,
        )
    ).one_or_none()
    if found is None:
        return None
    versions = [
        {"version": v, "created_at_ms": t}
        for v, t in conn.execute(
            select(template_versions.c.version, template_versions.c.created_at_ms)
            .where(
                template_versions.c.workspace_id == workspace_id,
                template_versions.c.name == name,
            )
            .order_by(template_versions.c.version)
        )
    ]
    return {
        "name": name,
        "channel": row.channel,
        "version": wanted,
        "current_version": row.current_version,
        "source": orjson.loads(found.source),
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
        "version_created_at_ms": found.created_at_ms,
        "versions": versions,
    }


def current_version(conn: Connection, workspace_id: str, name: str) -> int | None:
    return conn.execute(
        select(templates.c.current_version).where(templates.c.workspace_id == workspace_id, templates.c.name == name)
    ).scalar_one_or_none()


def store_version(
    conn: Connection, workspace_id: str, name: str, channel: str, text: str, compiled_html: str | None, now_ms: int
) -> tuple[int, bool]:
    """Store `text` (a source's canonical JSON, already validated and compiled by the caller)
    as the template's next version, unless it is the current one; returns (current version,
    whether it is new). Raises TemplateStoreError for an unknown workspace or a change of channel."""
    stmt = select(templates).where(templates.c.workspace_id == workspace_id, templates.c.name == name)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two saves at once must not pick the same version
    row = conn.execute(stmt).one_or_none()
    created = False
    if row is None:
        _require_workspace(conn, workspace_id)
        # A save of the same new name in another transaction may have found no row either:
        # this insert waits for it (PostgreSQL) and, when it committed, does nothing; the row
        # it made is then read (and locked) again and this text becomes its next version.
        created = sql.insert_one(
            conn,
            "templates",
            ("workspace_id", "name", "channel", "current_version", "created_at_ms", "updated_at_ms"),
            (workspace_id, name, channel, 1, now_ms, now_ms),
            conflict="workspace_id, name",
        )
        if not created:
            row = conn.execute(stmt).one()
    version = 1
    if row is not None:  # the template was there (or another save made it meanwhile)
        if row.channel != channel:
            raise TemplateStoreError(
                f"template {name!r} is a {row.channel} template; a {channel} one needs another name"
            )
        current = conn.execute(
            select(template_versions.c.source).where(
                template_versions.c.workspace_id == workspace_id,
                template_versions.c.name == name,
                template_versions.c.version == row.current_version,
            )
        ).scalar_one()
        if current == text:
            return row.current_version, False
        latest = conn.execute(
            select(template_versions.c.version)
            .where(
                template_versions.c.workspace_id == workspace_id,
                template_versions.c.name == name,
            )
            .order_by(template_versions.c.version.desc())
            .limit(1)
        ).scalar_one()
        version = latest + 1
        conn.execute(
            update(templates)
            .where(
                templates.c.workspace_id == workspace_id,
                templates.c.name == name,
            )
            .values(current_version=version, updated_at_ms=max(now_ms, row.updated_at_ms + 1))
        )
    conn.execute(
        insert(template_versions).values(
            workspace_id=workspace_id,
            name=name,
            version=version,
            source=text,
            compiled=compiled_html,
            created_at_ms=now_ms,
        )
    )
    return version, True


def version_source(conn: Connection, workspace_id: str, name: str, version: int) -> Any:
    """(source, compiled) of one version, or None."""
    return conn.execute(
        select(template_versions.c.source, template_versions.c.compiled).where(
            template_versions.c.workspace_id == workspace_id,
            template_versions.c.name == name,
            template_versions.c.version == version,
        )
    ).one_or_none()


def latest_track_event(conn: Connection, workspace_id: str, profile_id: str) -> Any:
    """(event, timestamp_ms, message_id, payload) of the person's latest track event, or None
    (a preview's trigger)."""
    return conn.execute(
        select(events.c.event, events.c.timestamp_ms, events.c.message_id, events.c.payload)
        .where(
            events.c.profile_id.in_(event_owners(conn, profile_id, workspace_id)),
            events.c.workspace_id == workspace_id,
            events.c.type == "track",
        )
        .order_by(events.c.timestamp_ms.desc(), events.c.seq.desc())
        .limit(1)
    ).one_or_none()
