"""Reading a report: the request's dates and breakdown checked, the rollups read
(store/rollups.read, never the event log), the numbers computed (measure/report.py).
The admin API (web/reports_api.py) and `nudgeflow report` (cli/report.py) both answer
with these."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection

from nudgeflow.measure import report
from nudgeflow.measure.errors import MeasureError
from nudgeflow.store import journeys, rollups

BY_CHOICES = ("step", "variant", "channel", "version", "day")


class BadQuery(MeasureError):
    """A report's dates or breakdown that cannot be read (the API answers 400)."""


def parse_day(text: str | None, name: str) -> int | None:
    """A UTC date (YYYY-MM-DD) as days since the epoch."""
    if text is None or text == "":
        return None
    try:
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    except ValueError as exc:
        raise BadQuery(f"{name}: not a date (YYYY-MM-DD): {text[:40]!r}") from exc


def parse_by(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in BY_CHOICES]
    if unknown:
        raise BadQuery(f"by: {unknown[0][:40]!r} is not one of {', '.join(BY_CHOICES)}")
    return names


def load_journey_report(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    *,
    from_day: int | None,
    to_day: int | None,
    by: tuple[str, ...],
    include_machine: bool,
) -> dict[str, Any] | None:
    """The journey report, or None when the workspace has no such journey."""
    if journeys.status_of(conn, workspace_id, journey_id) is None:
        return None
    counters, latencies = rollups.read(
        conn, workspace_id, journey_id=journey_id, from_day=from_day, to_day=to_day, by=by
    )
    out = report.journey_report(journey_id, counters, latencies, by, rollups.VALUES, include_machine=include_machine)
    out["from"], out["to"] = iso_date(from_day), iso_date(to_day)
    if "day" in by:
        for row in out["rows"]:
            row["day"] = iso_date(row["day"])
    return out


def load_overview(
    conn: Connection, workspace_id: str, *, from_day: int | None, to_day: int | None, include_machine: bool
) -> dict[str, Any]:
    counters, latencies = rollups.read(conn, workspace_id, from_day=from_day, to_day=to_day)
    out = report.overview_report(
        counters, latencies, journeys.trigger_types(conn, workspace_id), rollups.VALUES, include_machine=include_machine
    )
    conversions, revenue = rollups.read_unique_conversions(conn, workspace_id, from_day=from_day, to_day=to_day)
    # Each goal event once, however many journeys it converted runs of.
    out["workspace"]["unique_conversions"] = conversions
    out["workspace"]["unique_revenue"] = round(revenue, 6)
    out["from"], out["to"] = iso_date(from_day), iso_date(to_day)
    return out


def iso_date(day: int | None) -> str | None:
    return None if day is None else date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()
