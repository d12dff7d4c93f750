"""The admin API for reports: journeys' metrics read from the rollups alone.

- GET /api/reports/journeys/{id}   totals and a breakdown (`by=step,variant,channel`)
- GET /api/reports/overview        per journey, per trigger type, and the workspace

Both take `from` and `to` (UTC dates, inclusive: the runs that entered and the messages sent
on those days), `machine=true` to count machine opens and bot clicks in the opens, clicks and
rates, and `format=csv` for a CSV file instead of JSON. Admin auth and workspace scoping as
every /api route: a journey id of another workspace is a 404, as one that does not exist.
What each number means: docs/measurement.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from nudgeflow.measure import report
from nudgeflow.measure.reading import BadQuery, load_journey_report, load_overview, parse_by, parse_day
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import State


def _csv(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"', "Cache-Control": "no-store"},
    )


From = Annotated[str | None, Query(alias="from", description="First UTC date (YYYY-MM-DD), inclusive.")]
To = Annotated[str | None, Query(description="Last UTC date (YYYY-MM-DD), inclusive.")]
Machine = Annotated[bool, Query(description="Count machine opens and bot clicks in opens, clicks and rates.")]
Format = Annotated[str, Query(pattern="^(json|csv)$", description="json (default) or csv.")]


def reports_router() -> APIRouter:
    router = APIRouter(prefix="/api/reports", tags=["reports"])

    @router.get("/journeys/{journey_id}", summary="A journey's metrics, with a breakdown by step, variant, channel")
    def journey(
        state: State,
        journey_id: str,
        workspace_id: Workspace,
        from_: From = None,
        to: To = None,
        by: Annotated[str | None, Query(description="Comma-separated: step, variant, channel, version, day.")] = None,
        machine: Machine = False,
        format: Format = "json",
    ) -> Any:
        try:
            span = parse_day(from_, "from"), parse_day(to, "to")
            groups = parse_by(by)
        except BadQuery as exc:
            return JSONResponse({"detail": str(exc)}, 400)
        with state.engine.connect() as conn:
            found = load_journey_report(
                conn, workspace_id, journey_id, from_day=span[0], to_day=span[1], by=groups, include_machine=machine
            )
        if found is None:
            return JSONResponse({"detail": f"no journey {journey_id!r} in this workspace"}, 404)
        if format == "csv":
            return _csv(report.journey_csv(found), f"journey-{journey_id}")
        return found

    @router.get("/overview", summary="Metrics per journey, per trigger type and for the workspace")
    def overview(
        state: State,
        workspace_id: Workspace,
        from_: From = None,
        to: To = None,
        machine: Machine = False,
        format: Format = "json",
    ) -> Any:
        try:
            span = parse_day(from_, "from"), parse_day(to, "to")
        except BadQuery as exc:
            return JSONResponse({"detail": str(exc)}, 400)
        with state.engine.connect() as conn:
            found = load_overview(conn, workspace_id, from_day=span[0], to_day=span[1], include_machine=machine)
        if format == "csv":
            return _csv(report.to_csv(found["journeys"], ["journey_id", "trigger_type"]), "overview")
        return found

    return router
