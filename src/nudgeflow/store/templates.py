"""Templates in the database: immutable versions, and the compiled form senders render.

Each save of a changed source adds the next version to `template_versions` and makes it
current (`templates.current_version`); saving a source identical to the current version
adds nothing. A version is validated and compiled before it is stored (a template that
does not compile is never stored), and the MJML body's HTML is stored with it, so no
process compiles MJML for a version that already exists.

`load_compiled` is what a sender calls per message: it returns the parsed template from a
small in-process cache keyed by (workspace, name, version): versions never change, so the
cache never needs invalidating, and rendering never parses or compiles.

Templates as files (`load_template_files`): a directory of `NAME.yaml` (or `.yml`), one
template per file, named by the file: a YAML mapping with the source's fields (`channel`,
`subject`, `preheader`, `body`, `text`, `topic`; for push `title`, `body`, `image`, `url`,
`data`). Write the body as a YAML block scalar (`body: |`).

Every function takes a Connection and leaves committing to the caller.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import orjson
import yaml
from sqlalchemy import Connection, insert, select, update

from nudgeflow.content.templates import CompiledTemplate, TemplateError, TemplateSource, compile_template, parse_source
from nudgeflow.errors import StoreError
from nudgeflow.store.schema import profiles, template_versions, templates, workspaces

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class TemplateStoreError(StoreError, ValueError):
    """A template operation that cannot be done; the message says why."""


class TemplateNotFound(TemplateStoreError):
    pass


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateStoreError(
            f"template name {name!r}: use letters, digits, '.', '_' and '-' (at most 200, starting with a letter or digit)")
    return name


def _require_workspace(conn: Connection, workspace_id: str) -> None:
    if conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).scalar_one_or_none() is None:
        raise TemplateStoreError(f"no workspace {workspace_id!r}")


def save_template(conn: Connection, workspace_id: str, name: str, source: TemplateSource | dict[str, Any],
                  now_ms: int) -> tuple[int, bool]:
    """Validate, compile and store a new version; returns (current version, whether it is new).

    Raises TemplateError (with part, line and column) for a source that does not compile,
    TemplateStoreError for a bad name, an unknown workspace, or a change of channel.
    """
    check_name(name)
    if not isinstance(source, TemplateSource):
        source = parse_source(source)
    compiled = compile_template(source)  # raises TemplateError: nothing stored
    text = source.canonical_json()
    stmt = select(templates).where(templates.c.workspace_id == workspace_id, templates.c.name == name)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two saves at once must not pick the same version
    row = conn.execute(stmt).one_or_none()
    if row is None:
        _require_workspace(conn, workspace_id)
        version = 1
        conn.execute(insert(templates).values(
            workspace_id=workspace_id, name=name, channel=source.channel, current_version=1,
            created_at_ms=now_ms, updated_at_ms=now_ms))
    else:
        if row.channel != source.channel:
            raise TemplateStoreError(
                f"template {name!r} is a {row.channel} template; a {source.channel} one needs another name")
        current = conn.execute(select(template_versions.c.source).where(
            template_versions.c.workspace_id == workspace_id, template_versions.c.name == name,
            template_versions.c.version == row.current_version)).scalar_one()
        if current == text:
            return row.current_version, False
        latest = conn.execute(select(template_versions.c.version).where(
            template_versions.c.workspace_id == workspace_id, template_versions.c.name == name,
        ).order_by(template_versions.c.version.desc()).limit(1)).scalar_one()
        version = latest + 1
        conn.execute(update(templates).where(
            templates.c.workspace_id == workspace_id, templates.c.name == name,
        ).values(current_version=version, updated_at_ms=max(now_ms, row.updated_at_ms + 1)))
    conn.execute(insert(template_versions).values(
        workspace_id=workspace_id, name=name, version=version, source=text,
        compiled=compiled.html if source.is_mjml else None, created_at_ms=now_ms))
    _remember((workspace_id, name, version), compiled)
    return version, True


def list_templates(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Every template of the workspace, by name: channel, current version, times."""
    rows = conn.execute(select(templates).where(templates.c.workspace_id == workspace_id).order_by(templates.c.name))
    return [{"name": r.name, "channel": r.channel, "current_version": r.current_version,
             "created_at_ms": r.created_at_ms, "updated_at_ms": r.updated_at_ms} for r in rows]


def get_template(conn: Connection, workspace_id: str, name: str, version: int | None = None) -> dict[str, Any] | None:
    """One version (the current one by default): its source, and every version's number and time."""
    row = conn.execute(select(templates).where(
        templates.c.workspace_id == workspace_id, templates.c.name == name)).one_or_none()
    if row is None:
        return None
    wanted = row.current_version if version is None else version
    found = conn.execute(select(template_versions).where(
        template_versions.c.workspace_id == workspace_id, template_versions.c.name == name,
        template_versions.c.version == wanted)).one_or_none()
    if found is None:
        return None
    versions = [{"version": v, "created_at_ms": t} for v, t in conn.execute(
        select(template_versions.c.version, template_versions.c.created_at_ms).where(
            template_versions.c.workspace_id == workspace_id, template_versions.c.name == name,
        ).order_by(template_versions.c.version))]
    return {"name": name, "channel": row.channel, "version": wanted, "current_version": row.current_version,
            "source": orjson.loads(found.source), "created_at_ms": row.created_at_ms,
            "updated_at_ms": row.updated_at_ms, "version_created_at_ms": found.created_at_ms, "versions": versions}


# --- compiled templates for rendering -----------------------------------------------------------

CACHE_SIZE = 512
_cache: OrderedDict[tuple[str, str, int], CompiledTemplate] = OrderedDict()
_cache_lock = threading.Lock()


def _remember(key: tuple[str, str, int], compiled: CompiledTemplate) -> None:
    with _cache_lock:
        _cache[key] = compiled
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def current_version(conn: Connection, workspace_id: str, name: str) -> int | None:
    return conn.execute(select(templates.c.current_version).where(
        templates.c.workspace_id == workspace_id, templates.c.name == name)).scalar_one_or_none()


def load_compiled(conn: Connection, workspace_id: str, name: str, version: int | None = None) -> CompiledTemplate:
    """The template ready for `nudgeflow.content.templates.render` (the current version by
    default). Cached per (workspace, name, version): a cached version costs no query but
    the current-version lookup (none when `version` is given). Raises TemplateNotFound."""
    if version is None:
        version = current_version(conn, workspace_id, name)
        if version is None:
            raise TemplateNotFound(f"no template {name!r} in this workspace")
    key = (workspace_id, name, version)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    row = conn.execute(select(template_versions.c.source, template_versions.c.compiled).where(
        template_versions.c.workspace_id == workspace_id, template_versions.c.name == name,
        template_versions.c.version == version)).one_or_none()
    if row is None:
        raise TemplateNotFound(f"no version {version} of template {name!r}")
    compiled = compile_template(parse_source(row.source), compiled_html=row.compiled)
    _remember(key, compiled)
    return compiled


# --- templates as files -------------------------------------------------------------------------

TEMPLATE_SUFFIXES = (".yaml", ".yml")


def template_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the .yaml/.yml files of the directories named (sorted)."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in TEMPLATE_SUFFIXES and p.is_file()))
        else:
            out.append(path)
    return out


class TemplateFileError(TemplateStoreError):
    def __init__(self, path: Path, error: Exception) -> None:
        self.path = path
        self.error = error
        super().__init__(f"{path}: {error}")


def load_template_file(path: str | Path) -> tuple[str, TemplateSource]:
    """(name, source) from NAME.yaml; TemplateFileError says which file and what is wrong."""
    path = Path(path)
    try:
        name = check_name(path.stem)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TemplateError("the file is not a YAML mapping of the template's fields")
        source = parse_source(data)
        compile_template(source)  # syntax errors now, with the part, line and column
    except (OSError, yaml.YAMLError, TemplateError, TemplateStoreError) as exc:
        raise TemplateFileError(path, exc) from None
    return name, source


def load_template_files(paths: str | Path | Iterable[str | Path]) -> list[tuple[str, TemplateSource]]:
    """Every template of the files and directories given, checked and compiled; raises the
    first TemplateFileError (all or nothing)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [load_template_file(p) for p in template_files(paths)]


# --- previews -----------------------------------------------------------------------------------


def preview_context(conn: Connection, workspace_id: str, profile_ref: str, now_ms: int) -> dict[str, Any]:
    """The render context for previewing a template on a stored profile (by id, userId or
    anonymousId): nudgeflow.content.context.build_context with the profile's latest event
    as the trigger. Raises TemplateNotFound when there is no such profile."""
    from nudgeflow.store.profiles import resolve_profile_id
    from nudgeflow.store.schema import events

    profile_id = resolve_profile_id(conn, workspace_id, profile_ref)
    if profile_id is None:
        raise TemplateNotFound(f"no profile {profile_ref!r} in this workspace")
    latest = conn.execute(
        select(events.c.event, events.c.timestamp_ms, events.c.message_id, events.c.payload)
        .where(events.c.profile_id == profile_id, events.c.workspace_id == workspace_id, events.c.type == "track")
        .order_by(events.c.timestamp_ms.desc(), events.c.seq.desc()).limit(1)
    ).one_or_none()
    trigger: dict[str, Any] = {}
    if latest is not None:
        payload = orjson.loads(latest.payload)
        props = payload.get("properties") if isinstance(payload, dict) else None
        trigger = {"event": latest.event, "at": latest.timestamp_ms, "message_id": latest.message_id,
                   "properties": props if isinstance(props, dict) else {}}
    try:
        from nudgeflow.content.context import build_context
    except ImportError:  # without the personalization context: traits and the event only
        traits = conn.execute(select(profiles.c.traits).where(profiles.c.id == profile_id)).scalar_one()
        profile = {**orjson.loads(traits), "id": profile_id}
        return {"profile": profile, "event": {"name": trigger.get("event"),
                                              "properties": trigger.get("properties", {})}}
    return build_context(conn, workspace_id, profile_id, {"trigger": trigger}, now_ms)
