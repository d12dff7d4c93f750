"""The console's journey report (`/journeys/{id}/report`): the journey's metrics by step,
variant and channel, as tables and charts, and its experiments: each arm's rate with its
interval, the always-valid winner call ("no winner yet, because …"), the sample-ratio warning
and guardrail breaches.

The numbers are those of GET /api/reports/journeys/{id}: the same functions read them
(web/reports_api.load_journey_report over the rollups, measure/report.py's arithmetic)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from nudgeflow.core.clock import to_ms
from nudgeflow.measure import report
from nudgeflow.store import rollups
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.charts import Bar, LineChart, bars, line_chart
from nudgeflow.web.console.overview import day_label
from nudgeflow.web.console.render import error_page, page
from nudgeflow.web.reports_api import load_journey_report
from nudgeflow.web.state import State

WINDOWS = (7, 30, 90)  # and None: every day


def _rows(
    conn: Connection, workspace_id: str, journey_id: str, by: tuple[str, ...], span: tuple[int | None, int | None]
) -> list[dict[str, Any]]:
    counters, latencies = rollups.read(
        conn, workspace_id, journey_id=journey_id, from_day=span[0], to_day=span[1], by=by
    )
    return list(report.journey_report(journey_id, counters, latencies, by, rollups.VALUES)["rows"])


def report_view(
    conn: Connection, workspace_id: str, journey_id: str, *, days: int | None, now_ms: int
) -> dict[str, Any] | None:
    """What the report page shows over the last `days` UTC days (None: all), or None when the
    workspace has no such journey."""
    today = rollups.day_of(now_ms)
    span = (today - days + 1, today) if days is not None else (None, None)
    found = load_journey_report(
        conn,
        workspace_id,
        journey_id,
        from_day=span[0],
        to_day=span[1],
        by=("step", "variant", "channel"),
        include_machine=False,
    )
    if found is None:
        return None
    # A message's rows have a step; the run's own row (entries, conversions) has none.
    messages = [row for row in found["rows"] if row["step"]]
    by_step = [row for row in _rows(conn, workspace_id, journey_id, ("step",), span) if row["step"]]
    by_channel = [row for row in _rows(conn, workspace_id, journey_id, ("channel",), span) if row["channel"]]
    daily = _rows(conn, workspace_id, journey_id, ("day",), span)
    charts: list[LineChart] = []
    if daily:
        first = span[0] if span[0] is not None else min(row["day"] for row in daily)
        last = span[1] if span[1] is not None else max(row["day"] for row in daily)
        index = {day: i for i, day in enumerate(range(first, last + 1))}
        sent, entered, conversions = ([0.0] * len(index) for _ in range(3))
        for row in daily:
            i = index[row["day"]]
            sent[i] += row["sent"]
            entered[i] += row["entered"]
            conversions[i] += row["conversions"]
        labels = [day_label(day) for day in range(first, last + 1)]
        charts = [
            line_chart("Runs entered and messages sent", labels, {"entered": entered, "sent": sent}),
            line_chart("Conversions, by day of entry", labels, {"conversions": conversions}),
        ]
    step_bars: dict[str, list[Bar]] = {
        "Messages sent by step": bars([(row["step"], float(row["sent"])) for row in by_step]),
        "Conversions attributed to each step (last touch)": bars(
            [(row["step"], float(row["attributed_conversions"])) for row in by_step]
        ),
    }
    return {
        "journey_id": journey_id,
        "days": days,
        "windows": WINDOWS,
        "from": found["from"],
        "to": found["to"],
        "totals": found["totals"],
        "lift": found["lift"],
        "by_step": by_step,
        "by_channel": by_channel,
        "messages": messages,
        "charts": charts,
        "step_bars": step_bars,
        "experiments": found["experiments"],
        "send_time": found["send_time"],
    }


def router() -> APIRouter:
    pages = APIRouter()

    @pages.get(
        "/journeys/{journey_id}/report",
        response_class=HTMLResponse,
        name="console_journey_report",
        include_in_schema=False,
    )
    def journey_report(
        request: Request,
        state: State,
        user: Viewer,
        journey_id: str,
        days: Annotated[int | None, Query(description="7, 30 or 90; none: every day")] = None,
    ) -> HTMLResponse:
        back = ("/journeys", "All journeys")  # where a report that cannot be shown leads back to
        if days is not None and days not in WINDOWS:
            return error_page(request, user, HTTPException(400, f"days: {days} is not one of 7, 30, 90"), back=back)
        with state.engine.connect() as conn:
            view = report_view(conn, user.workspace_id, journey_id, days=days, now_ms=to_ms(state.clock.now()))
        if view is None:
            return error_page(
                request, user, HTTPException(404, f"no journey {journey_id!r} in this workspace"), back=back
            )
        return page(request, user, "reports/journey.html", title=f"Report: {journey_id}", **view)

    return pages
