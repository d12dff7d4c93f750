"""/audit (editors and admins): the workspace's audit log, newest first, a page at a time;
each entry with the document before and after when it is one (web/audit.py writes them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import HTMLResponse

from nudgeflow.store import audit_log
from nudgeflow.web.console.auth import Editor
from nudgeflow.web.console.render import page
from nudgeflow.web.state import State

PAGE_SIZE = 50


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """`before` is the last entry's "at_ms.id" of the previous page."""
    if not text:
        return None
    try:
        at, _, row_id = text.partition(".")
        return int(at), int(row_id)
    except ValueError:
        raise HTTPException(422, f"before: {text!r} is not a cursor of this page (at_ms.id)") from None


def shown(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        **entry,
        "at": datetime.fromtimestamp(entry["at_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "before_text": None if entry["before"] is None else json.dumps(entry["before"], indent=2, sort_keys=True),
        "after_text": None if entry["after"] is None else json.dumps(entry["after"], indent=2, sort_keys=True),
    }


def router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/audit")
    def audit_page(
        request: Request,
        state: State,
        user: Editor,
        before: Annotated[str | None, Query(max_length=60)] = None,
    ) -> HTMLResponse:
        cursor = parse_cursor(before)
        with state.engine.connect() as conn:
            entries, following = audit_log.entries(conn, user.workspace_id, limit=PAGE_SIZE, before=cursor)
        return page(
            request,
            user,
            "audit.html",
            title="Audit log",
            entries=[shown(e) for e in entries],
            next_cursor=None if following is None else f"{following[0]}.{following[1]}",
            first_page=cursor is None,
        )

    return router
