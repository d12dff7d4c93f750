"""Per-workspace settings: one JSON document per workspace, in sections ("smtp", ...).

Secrets live here too (an SMTP password, DKIM, FCM, APNs and VAPID keys, the link-signing
secret), so the document is stored sealed (store/secret_box.py): `load_document` and
`store_document` are the only way in and out, for this module and store/consent.py alike.
Secrets never leave through the public readers: `smtp_settings_masked` is what the admin
API and the CLI show.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from nudgeflow.model.smtp_config import SmtpConfig, SmtpConfigError
from nudgeflow.store import sql
from nudgeflow.store.schema import workspace_settings
from nudgeflow.store.secret_box import SecretBox, box_of

SMTP = "smtp"
# The server-wide public URL (Settings.public_url), carried by the database engine as the
# secret box is: what links point at when a workspace sets no `public_base_url` of its own.
PUBLIC_URL_OPTION = "nudgeflow_public_url"


def _parse(box: Any, stored: str | None) -> dict[str, Any]:
    if not stored:
        return {}
    try:
        data = orjson.loads(box.open(stored))  # SecretKeyError when no key here opens it
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def load_document(conn: Connection, workspace_id: str, *, for_update: bool = False) -> tuple[bool, dict[str, Any]]:
    """(whether the workspace has a settings row, its settings), opened. `for_update`: the
    row is locked until the transaction ends, and read as the last commit left it."""
    if for_update and conn.dialect.name == "sqlite":
        # SQLite has no row locks, and Python's driver runs a SELECT outside any
        # transaction: two writers could both read "no secret yet" and the later commit
        # would overwrite the earlier. A write that changes nothing takes the database's
        # write lock first (waiting for a writer already holding it), so what is read next
        # is the last commit and nobody can commit over it before this transaction ends.
        conn.execute(
            update(workspace_settings)
            .where(workspace_settings.c.workspace_id == workspace_id)
            .values(updated_at_ms=workspace_settings.c.updated_at_ms)
        )
    query = select(workspace_settings.c.settings).where(workspace_settings.c.workspace_id == workspace_id)
    stored = conn.execute(query.with_for_update() if for_update else query).scalar_one_or_none()
    return stored is not None, _parse(box_of(conn), stored)


def store_document(conn: Connection, workspace_id: str, data: dict[str, Any], now_ms: int, *, exists: bool) -> None:
    """Write the whole document, sealed (`exists`: as `load_document` found it)."""
    doc = box_of(conn).seal(orjson.dumps(data).decode())
    if exists:
        conn.execute(
            update(workspace_settings)
            .where(workspace_settings.c.workspace_id == workspace_id)
            .values(settings=doc, updated_at_ms=now_ms)
        )
    else:
        sql.insert_rows(
            conn,
            "workspace_settings",
            ("workspace_id", "settings", "updated_at_ms"),
            [(workspace_id, doc, now_ms)],
            conflict="workspace_id",
        )


def set_server_public_url(engine: Any, url: str | None) -> None:
    if url:
        engine.update_execution_options(**{PUBLIC_URL_OPTION: url.rstrip("/")})


def server_public_url(conn: Connection, fallback: str) -> str:
    """The server's public URL for this database, else `fallback`."""
    url = conn.get_execution_options().get(PUBLIC_URL_OPTION)
    return url if isinstance(url, str) and url else fallback


def get_all(conn: Connection, workspace_id: str) -> dict[str, Any]:
    return load_document(conn, workspace_id)[1]


def any_workspace_has(engine: Any, section: str) -> bool:
    """Whether some workspace has this settings section ("smtp", "fcm", "apns"): how a
    server decides at start whether a channel is set up anywhere. False before the schema
    exists (a server starting on a new database)."""
    if engine is None:
        return False
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(workspace_settings.c.settings)).scalars().all()
            box = box_of(conn)
    except Exception:  # not migrated yet: nothing configured
        return False
    return any(section in _parse(box, row) for row in rows)


def get_section(conn: Connection, workspace_id: str, section: str) -> Any:
    return get_all(conn, workspace_id).get(section)


def set_section(conn: Connection, workspace_id: str, section: str, value: Any, now_ms: int) -> None:
    """Replace one section (None removes it), leaving the others as they are."""
    exists, data = load_document(conn, workspace_id)
    if value is None:
        data.pop(section, None)
    else:
        data[section] = value
    store_document(conn, workspace_id, data, now_ms, exists=exists)


def reseal_all(conn: Connection) -> tuple[int, int]:
    """Rewrite every workspace's settings with the box's current key: (documents rewritten,
    of which were stored unsealed). For a key rotation, or to seal what was stored as is."""
    box = box_of(conn)
    rows = conn.execute(select(workspace_settings.c.workspace_id, workspace_settings.c.settings)).all()
    unsealed = 0
    for workspace_id, stored in rows:
        unsealed += 0 if box.is_sealed(stored) else 1
        doc = box.seal(box.open(stored or "{}"))
        conn.execute(
            update(workspace_settings).where(workspace_settings.c.workspace_id == workspace_id).values(settings=doc)
        )
    return len(rows), unsealed


def sealed_counts(conn: Connection) -> tuple[int, int]:
    """(workspace settings documents stored sealed, stored unsealed): what `secrets status` reports."""
    stored = conn.execute(select(workspace_settings.c.settings)).scalars().all()
    sealed = sum(1 for doc in stored if SecretBox.is_sealed(doc))
    return sealed, len(stored) - sealed


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


# -- the registry of keys (model/workspace_keys.py): what `settings show|set` and the API use --


def show_settings(conn: Connection, workspace_id: str) -> dict[str, Any]:
    """Every registered key with its value (secrets masked), default and effect, and the
    sections that have commands of their own, masked."""
    from nudgeflow.model.workspace_keys import show

    return show(get_all(conn, workspace_id))


def change_settings(conn: Connection, workspace_id: str, changes: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Apply `changes` ({key: value}, None clears) through the registry's checks, all or
    nothing: raises SettingError naming the first key that is wrong, writing nothing."""
    from nudgeflow.model.workspace_keys import apply_changes, show
    from nudgeflow.store.schema import workspaces

    # Read, change, write: two changes at once on PostgreSQL must not lose one (the
    # workspace row is the lock, as for the VAPID keys); SQLite has one writer anyway.
    conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update())
    exists, data = load_document(conn, workspace_id)
    updated = apply_changes(data, changes)
    if updated != data:
        store_document(conn, workspace_id, updated, now_ms, exists=exists)
    return show(updated)


def stored_documents(conn: Connection) -> Any:
    """Every workspace's settings document as stored (sealed), for a check that the key opens them."""
    return conn.execute(select(workspace_settings.c.settings)).scalars()
