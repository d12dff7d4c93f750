"""The console's templates: the list (/templates) and the editor (/templates/{name}).

The list is one page of templates by name (store.templates.template_page: a page of the
primary key, however many there are). The editor shows a template's current version (or
`?version=N`) in CodeMirror with a live preview that the page's script asks of the admin
API as the author types (POST /api/templates/{name}/preview: rendered on the server as a
send would render it); saving is PUT /api/templates/{name}, so every change goes through
the admin API. A diff of two versions (`?from=A&to=B`) is computed here, line by line over
each version's fields, so the page needs no script to show it.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from nudgeflow.model.iso_time import iso
from nudgeflow.store import templates as store
from nudgeflow.web.access import ConsoleUser
from nudgeflow.web.admin import INT32_MAX
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import page
from nudgeflow.web.state import State

PAGE_SIZE = 50
EDITOR = "editor"
# The fields a user edits, in the order the page shows them and a diff lists them.
EMAIL_FIELDS = ("subject", "preheader", "topic", "body", "text")
PUSH_FIELDS = ("title", "body", "image", "icon", "url", "collapse_key")
# A version's YAML lists the fields as an author writes them (the stored JSON sorts its keys).
FIELD_ORDER = ("channel", "subject", "preheader", "title", "topic", "body", "text", "image", "icon", "url", "data")


def _time(ms: int | None) -> str:
    return iso(ms, milliseconds=False) if ms else ""


def source_text(source: dict[str, Any]) -> str:
    """A version's source as the YAML a template file holds (NAME.yaml): only what is set."""
    keys = sorted(source, key=lambda k: (FIELD_ORDER.index(k) if k in FIELD_ORDER else len(FIELD_ORDER), k))
    shown = {
        k: source[k] for k in keys if source[k] not in (None, [], {}, "") and (k, source[k]) != ("channel", "email")
    }

    class _Block(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Block.add_representer(str, text)
    return yaml.dump(shown, Dumper=_Block, sort_keys=False, allow_unicode=True, width=1000)


def diff_rows(old: str, new: str) -> list[dict[str, Any]]:
    """A unified line diff of two texts: rows of {kind: same|add|del|gap, old, new, text}."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[dict[str, Any]] = []
    for group in difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(3):
        if rows:
            rows.append({"kind": "gap", "old": None, "new": None, "text": "…"})
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.extend(
                    {"kind": "same", "old": i + 1, "new": j + 1, "text": a[i]}
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                )
                continue
            rows.extend({"kind": "del", "old": i + 1, "new": None, "text": a[i]} for i in range(i1, i2))
            rows.extend({"kind": "add", "old": None, "new": j + 1, "text": b[j]} for j in range(j1, j2))
    return rows


def _list(conn: Connection, workspace_id: str, after: str, limit: int) -> dict[str, Any]:
    found = store.template_page(conn, workspace_id, after, limit + 1)
    return {
        "templates": [{**t, "updated": _time(t["updated_at_ms"])} for t in found[:limit]],
        "next": found[limit - 1]["name"] if len(found) > limit else None,
        "total": store.count_templates(conn, workspace_id),
    }


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/templates", response_class=HTMLResponse, include_in_schema=False)
    def templates_list(
        request: Request,
        user: Viewer,
        state: State,
        after: Annotated[str, Query(max_length=200)] = "",
        limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = PAGE_SIZE,
        open_: Annotated[str, Query(alias="open", max_length=200)] = "",
        channel: Annotated[str, Query(pattern="^(email|push)$")] = "email",
    ) -> Response:
        """`?open=NAME&channel=…` (the "new or existing template" form) goes to its editor."""
        name = open_.strip()
        problem = None
        if name:
            try:
                store.check_name(name)
                return RedirectResponse(f"/templates/{quote(name)}?channel={channel}", status_code=303)
            except store.TemplateStoreError as exc:
                problem = str(exc)
        with state.engine.connect() as conn:
            listed = _list(conn, user.workspace_id, after, limit)
        return page(
            request,
            user,
            "message_templates/list.html",
            title="Templates",
            after=after,
            limit=limit,
            problem=problem,
            open_name=name,
            status_code=422 if problem else 200,
            **listed,
        )

    @r.get("/templates/{name}", response_class=HTMLResponse, include_in_schema=False)
    def template_page(
        request: Request,
        user: Viewer,
        state: State,
        name: str,
        version: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
        from_: Annotated[int | None, Query(alias="from", ge=1, le=INT32_MAX)] = None,
        to: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
        channel: Annotated[str, Query(pattern="^(email|push)$")] = "email",
    ) -> HTMLResponse:
        return _editor(request, user, state, name, version, from_, to, channel)

    return r


def _editor(
    request: Request,
    user: ConsoleUser,
    state: Any,
    name: str,
    version: int | None,
    from_: int | None,
    to: int | None,
    channel: str,
) -> HTMLResponse:
    try:
        store.check_name(name)
    except store.TemplateStoreError as exc:
        return page(
            request, user, "message_templates/missing.html", title="Templates", detail=str(exc), status_code=404
        )
    with state.engine.connect() as conn:
        found = store.get_template(conn, user.workspace_id, name, version)
        diff = None
        if found is not None and from_ is not None and to is not None:
            old = store.get_template(conn, user.workspace_id, name, from_)
            new = store.get_template(conn, user.workspace_id, name, to)
            if old is not None and new is not None:
                diff = {
                    "from": from_,
                    "to": to,
                    "rows": diff_rows(source_text(old["source"]), source_text(new["source"])),
                }
    if found is None and version is not None:
        detail = f"no version {version} of template {name!r} in this workspace"
        return page(request, user, "message_templates/missing.html", title=name, detail=detail, status_code=404)
    source = (
        found["source"]
        if found is not None
        else {"channel": channel, "body": "", "subject": "" if channel == "email" else None}
    )
    kind = source.get("channel", "email")
    versions = [
        {"version": v["version"], "created": _time(v["created_at_ms"])} for v in (found or {}).get("versions", [])
    ]
    data = {
        "name": name,
        "channel": kind,
        "source": source,
        "exists": found is not None,
        "version": found["version"] if found else None,
        "current_version": found["current_version"] if found else None,
        "can_edit": user.may(EDITOR),
    }
    return page(
        request,
        user,
        "message_templates/edit.html",
        title=f"Template {name}",
        name=name,
        kind=kind,
        source=source,
        fields=EMAIL_FIELDS if kind == "email" else PUSH_FIELDS,
        found=found,
        versions=list(reversed(versions)),
        diff=diff,
        data=data,
        can_edit=user.may(EDITOR),
    )
