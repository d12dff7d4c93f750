"""The admin API for the catalog: products and places, the same format as `nudgeflow catalog import`.

PUT /api/catalog/{products|places} takes a JSON array, JSON Lines
(`application/x-ndjson`) or CSV (`text/csv`) and upserts by id: it answers 200 with the
import report — rows read, imported (created and updated), and each rejected row with
where it is and why (the good rows are imported all the same). A body that cannot be read
at all is 422 and nothing is imported. Writes go through the group committer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from nudgeflow.core.clock import to_ms
from nudgeflow.store import catalog as store
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State

T = TypeVar("T")

MAX_IMPORT_BYTES = 50 * 1024 * 1024
CSV_TYPES = ("text/csv", "application/csv")
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-seq")


def _read(state: AppState, fn: Callable[[Connection], T]) -> T:
    with state.engine.connect() as conn:
        return fn(conn)


def _kind(kind: str) -> str | None:
    return kind if kind in store.KINDS else None


def _unknown(kind: str) -> JSONResponse:
    return JSONResponse({"detail": f"unknown catalog {kind!r}: products or places"}, 404)


def catalog_router() -> APIRouter:
    router = APIRouter(prefix="/api/catalog", tags=["catalog"])

    @router.put("/{kind}", summary="Import products or places (JSON array, JSON Lines or CSV), upserted by id")
    async def put_items(request: Request, state: State, kind: str, workspace_id: Workspace) -> Any:
        if _kind(kind) is None:
            return _unknown(kind)
        body = await request.body()
        if len(body) > MAX_IMPORT_BYTES:
            return JSONResponse({"detail": f"an import is at most {MAX_IMPORT_BYTES} bytes; split the file"}, 413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"detail": "the body is not UTF-8 text"}, 422)
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        fmt = "csv" if content_type in CSV_TYPES else "jsonl" if content_type in JSONL_TYPES else "json"
        if not text.strip():
            return JSONResponse({"detail": "the body is empty"}, 422)
        try:
            rows = list(store.parse_rows(text, fmt))
        except store.CatalogError as exc:
            return JSONResponse({"detail": str(exc)}, 422)
        now = to_ms(state.clock.now())
        try:
            report = await state.committer.run_job(lambda conn: store.import_rows(conn, workspace_id, kind, rows, now))
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        return report.as_dict()

    @router.get("/{kind}", summary="Products or places in id order (page with `after`)")
    def list_items(
        state: State,
        kind: str,
        workspace_id: Workspace,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="the last id of the previous page")] = None,
        category: Annotated[str | None, Query(description="products of this category only")] = None,
    ) -> Any:
        if _kind(kind) is None:
            return _unknown(kind)
        items = _read(
            state,
            lambda conn: store.list_items(conn, workspace_id, kind, limit=limit, after=after, category=category),
        )
        return {kind: items, "next_after": items[-1]["id"] if len(items) == limit else None}

    @router.get("/{kind}/{item_id:path}", summary="One product or place")
    def get_item(state: State, kind: str, item_id: str, workspace_id: Workspace) -> Any:
        if _kind(kind) is None:
            return _unknown(kind)
        item = _read(state, lambda conn: store.get_item(conn, workspace_id, kind, item_id))
        if item is None:
            return JSONResponse({"detail": f"no {kind[:-1]} {item_id!r} in this workspace"}, 404)
        return item

    @router.delete("/{kind}/{item_id:path}", summary="Delete one product or place")
    async def delete_item(state: State, kind: str, item_id: str, workspace_id: Workspace) -> Any:
        if _kind(kind) is None:
            return _unknown(kind)
        try:
            deleted = await state.committer.run_job(lambda conn: store.delete_item(conn, workspace_id, kind, item_id))
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        if not deleted:
            return JSONResponse({"detail": f"no {kind[:-1]} {item_id!r} in this workspace"}, 404)
        return {"deleted": item_id}

    @router.delete("/{kind}", summary="Delete every product or place of the workspace (confirm=true)")
    async def delete_all(
        state: State,
        kind: str,
        workspace_id: Workspace,
        confirm: Annotated[bool, Query(description="must be true")] = False,
    ) -> Any:
        if _kind(kind) is None:
            return _unknown(kind)
        if not confirm:
            return JSONResponse({"detail": f"add ?confirm=true to delete every {kind[:-1]}"}, 400)
        try:
            count = await state.committer.run_job(lambda conn: store.delete_all(conn, workspace_id, kind))
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        return {"deleted": count}

    return router
