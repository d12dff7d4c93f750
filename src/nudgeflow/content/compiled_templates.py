"""Template versions as content: compiled before they are stored, compiled once for senders.

A version is validated and compiled before it is stored (a template that does not compile
is never stored), and the MJML body's HTML is stored with it (store/templates.py), so no
process compiles MJML for a version that already exists.

`load_compiled` is what a sender calls per message: it returns the parsed template from a
small in-process cache keyed by (workspace, name, version): versions never change, so the
cache never needs invalidating, and rendering never parses or compiles.

Templates as files (`load_template_files`): a directory of `NAME.yaml` (or `.yml`), one
template per file, named by the file: a YAML mapping with the source's fields (`channel`,
`subject`, `preheader`, `body`, `text`, `topic`; for push `title`, `body`, `image`, `url`,
`data`). Write the body as a YAML block scalar (`body: |`).

Every function that takes a Connection leaves committing to the caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import Connection

from nudgeflow.content.context import build_context
from nudgeflow.content.templates import (
    CompiledTemplate,
    TemplateError,
    TemplateSource,
    compile_template,
    parse_source,
)
from nudgeflow.errors import ContentError
from nudgeflow.store.profiles import resolve_profile_id
from nudgeflow.store.templates import (
    TemplateNotFound,
    TemplateStoreError,
    check_name,
    current_version,
    latest_track_event,
    store_version,
    version_source,
)


def save_template(
    conn: Connection, workspace_id: str, name: str, source: TemplateSource | dict[str, Any], now_ms: int
) -> tuple[int, bool]:
    """Validate, compile and store a new version; returns (current version, whether it is new).

    Raises TemplateError (with part, line and column) for a source that does not compile,
    TemplateStoreError for a bad name, an unknown workspace, or a change of channel.
    """
    check_name(name)
    if not isinstance(source, TemplateSource):
        source = parse_source(source)
    compiled = compile_template(source)  # raises TemplateError: nothing stored
    text = source.canonical_json()
    version, new = store_version(
        conn, workspace_id, name, source.channel, text, compiled.html if source.is_mjml else None, now_ms
    )
    if new:
        _remember((workspace_id, name, version), compiled)
    return version, new


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
    row = version_source(conn, workspace_id, name, version)
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


class TemplateFileError(TemplateStoreError, ContentError):
    # Raised by content since the compiled templates moved here; still a TemplateStoreError
    # for the callers that catch one.
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
    profile_id = resolve_profile_id(conn, workspace_id, profile_ref)
    if profile_id is None:
        raise TemplateNotFound(f"no profile {profile_ref!r} in this workspace")
    latest = latest_track_event(conn, workspace_id, profile_id)
    trigger: dict[str, Any] = {}
    if latest is not None:
        payload = orjson.loads(latest.payload)
        props = payload.get("properties") if isinstance(payload, dict) else None
        trigger = {
            "event": latest.event,
            "at": latest.timestamp_ms,
            "message_id": latest.message_id,
            "properties": props if isinstance(props, dict) else {},
        }
    return build_context(conn, workspace_id, profile_id, {"trigger": trigger}, now_ms)
