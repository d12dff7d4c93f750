"""The admin API's exports, for a warehouse: the same rows as `nudgeflow export`.

    GET /api/exports/{kind}?from=…&to=…&format=csv|parquet

`kind` is exposures, messages or conversions (store/exports.py says what each row is).
`from` (included) and `to` (excluded) are dates or ISO 8601 date-times, UTC unless they say.
CSV is streamed as it is read; Parquet is written to a temporary file first (a Parquet file's
footer comes last), then sent. Only the admin token's own workspace is ever read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from nudgeflow.model.iso_time import parse_instant
from nudgeflow.store import exports
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import AppState, State

SPOOL_BYTES = 16 * 1024 * 1024  # a Parquet export larger than this goes to disk while written
PIECE = 1024 * 1024


def _instant(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from exc


def _csv(state: AppState, workspace_id: str, kind: exports.Kind, start: int | None, end: int | None) -> Iterator[str]:
    # A connection of its own for as long as the response streams (Starlette runs a sync
    # iterator in its thread pool, a chunk at a time).
    with state.engine.connect() as conn:
        yield from exports.csv_chunks(exports.COLUMNS[kind], exports.rows(conn, workspace_id, kind, start, end))


def exports_router() -> APIRouter:
    router = APIRouter(prefix="/api/exports", tags=["exports"])

    @router.get(
        "/{kind}",
        summary="Exposures, messages or conversions as CSV or Parquet, oldest first",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The rows: CSV with a header (format=csv), or a Parquet file (format=parquet).",
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            501: {"description": "Parquet was asked for and pyarrow is not installed."},
        },
    )
    def export(
        state: State,
        workspace_id: Workspace,
        kind: exports.Kind,
        from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
        to: Annotated[str | None, Query(max_length=64)] = None,
        format: Literal["csv", "parquet"] = "csv",
    ) -> StreamingResponse:
        start, end = _instant(from_, "from"), _instant(to, "to")
        if start is not None and end is not None and end <= start:
            raise HTTPException(422, "to: must be after from")
        filename = f"{kind}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
        if format == "csv":
            return StreamingResponse(
                _csv(state, workspace_id, kind, start, end), media_type="text/csv; charset=utf-8", headers=headers
            )
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by the stream below
        try:
            with state.engine.connect() as conn:
                exports.write_parquet(spool, exports.COLUMNS[kind], exports.rows(conn, workspace_id, kind, start, end))
        except exports.ExportFormatError as exc:
            spool.close()
            raise HTTPException(501, str(exc)) from exc
        spool.seek(0)

        def pieces() -> Iterator[bytes]:
            try:
                while piece := spool.read(PIECE):
                    yield piece
            finally:
                spool.close()

        return StreamingResponse(pieces(), media_type="application/vnd.apache.parquet", headers=headers)

    return router
