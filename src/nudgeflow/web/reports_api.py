"""The admin API for reports: journeys' metrics read from the rollups alone.

- GET /api/reports/journeys/{id}   totals and a breakdown (`by=step,variant,channel`)
- GET /api/reports/overview        per journey, per trigger type, the workspace, and the program's
                                   lift (the global control group against everyone else)

The journey report also has a `send_time` section: per send step timed by `send_time`, its
messages by arm (optimized, fallback, explore) and the feature's open and click rates against
a random hour (measure/send_time_report.py).

Both take `from` and `to` (UTC dates, inclusive: the runs that entered and the messages sent
on those days), `machine=true` to count machine opens and bot clicks in the opens, clicks and
rates, and `format=csv` for a CSV file instead of JSON. The journey's JSON also has its
experiments (`experiments`: every split step and send step with variants, arm by arm, with
the winner call); `minimum_per_arm` is the runs each arm needs before a winner or a guardrail
breach is called (default: each step's own `minimum_per_arm`, else 500). Admin auth and workspace scoping as
every /api route: a journey id of another workspace is a 404, as one that does not exist.
What each number means: docs/measurement.md.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection

from nudgeflow.errors import WebError
from nudgeflow.measure import report
from nudgeflow.measure.send_time_report import send_time_section
from nudgeflow.model.iso_time import iso
from nudgeflow.store import experiment_decisions, journeys, rollups
from nudgeflow.web.admin import Workspace
from nudgeflow.web.state import State

# Reading a report: the request's dates and breakdown checked, the rollups read
# (store/rollups.read, never the event log), the numbers computed (measure/report.py). The
# admin API below and `nudgeflow report` (cli/report.py) both answer with these.


BY_CHOICES = ("step", "variant", "channel", "version", "day")


class BadQuery(WebError, ValueError):
    """A report's dates or breakdown that cannot be read (the API answers 400)."""


def parse_day(text: str | None, name: str) -> int | None:
    """A UTC date (YYYY-MM-DD) as days since the epoch."""
    if text is None or text == "":
        return None
    try:
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    except ValueError as exc:
        raise BadQuery(f"{name}: not a date (YYYY-MM-DD): {text[:40]!r}") from exc


def parse_span(
    from_text: str | None, to_text: str | None, names: tuple[str, str] = ("from", "to")
) -> tuple[int | None, int | None]:
    """`from` and `to` as days since the epoch; refused when `from` is after `to` (a range of
    no days would answer an empty report as if nothing had happened)."""
    first, last = parse_day(from_text, names[0]), parse_day(to_text, names[1])
    if first is not None and last is not None and first > last:
        raise BadQuery(f"{names[0]} ({from_text}) is after {names[1]} ({to_text})")
    return first, last


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
    minimum_per_arm: int | None = None,
) -> dict[str, Any] | None:
    """The journey report, or None when the workspace has no such journey."""
    status = journeys.status_of(conn, workspace_id, journey_id)
    if status is None:
        return None
    counters, latencies = rollups.read(
        conn, workspace_id, journey_id=journey_id, from_day=from_day, to_day=to_day, by=by
    )
    out = report.journey_report(journey_id, counters, latencies, by, rollups.VALUES, include_machine=include_machine)
    out["from"], out["to"] = iso_date(from_day), iso_date(to_day)
    if "day" in by:
        for row in out["rows"]:
            row["day"] = iso_date(row["day"])
    out["send_time"] = load_send_time(
        conn, workspace_id, journey_id, from_day=from_day, to_day=to_day, include_machine=include_machine
    )
    out["experiments"] = load_experiments(
        conn, workspace_id, journey_id, status[1], from_day=from_day, to_day=to_day, minimum_per_arm=minimum_per_arm
    )
    return out


def load_send_time(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    *,
    from_day: int | None,
    to_day: int | None,
    include_machine: bool,
) -> list[dict[str, Any]]:
    """The journey report's send-time section: per send step timed by `send_time`, its
    messages by arm and optimized against explore (measure/send_time_report.py)."""
    rows = rollups.read_send_time(conn, workspace_id, journey_id, from_day=from_day, to_day=to_day)
    shares: dict[tuple[int, str], float | None] = {}
    for version in sorted({row["version"] for row in rows}):
        definition = journeys.load_version(conn, workspace_id, journey_id, version)
        for timed_by in {row["timed_by"] for row in rows if row["version"] == version}:
            step = definition.steps.get(timed_by) if definition is not None else None
            spec = getattr(step, "send_time", None)
            shares[(version, timed_by)] = spec.explore if spec is not None else None
    return send_time_section(rows, shares, include_machine=include_machine)


def load_experiments(
    conn: Connection,
    workspace_id: str,
    journey_id: str,
    live_version: int | None,
    *,
    from_day: int | None,
    to_day: int | None,
    minimum_per_arm: int | None,
) -> list[dict[str, Any]]:
    """The experiments of the live version and of every version whose runs were assigned arms
    in the range (a run stays on the version it entered with)."""
    arm_rows = rollups.experiment_arms(conn, workspace_id, journey_id, from_day=from_day, to_day=to_day)
    wanted = {row["version"] for row in arm_rows} | ({live_version} if live_version is not None else set())
    versions = {}
    for version in sorted(wanted):
        definition = journeys.load_version(conn, workspace_id, journey_id, version)
        if definition is not None:
            versions[version] = definition
    # A step's first decision (a pause or a route, held still or cleared since) changed the
    # weights runs are assigned by from then on: its sample-ratio check tests the runs
    # assigned before it against the configured weights (docs/measurement.md).
    made = experiment_decisions.listed(conn, workspace_id, journey_id)
    first: dict[tuple[int, str], int] = {}
    for d in made:
        first[(d.version, d.step)] = min(d.decided_at_ms, first.get((d.version, d.step), d.decided_at_ms))
    before = rollups.arms_assigned_before(conn, workspace_id, journey_id, first, from_day=from_day, to_day=to_day)
    weighted: dict[tuple[int, str], dict[str, int]] = {key: {} for key in first}
    for (version, step, arm), runs in before.items():
        weighted[(version, step)][arm] = runs
    sections = report.experiments(versions, arm_rows, minimum_per_arm=minimum_per_arm, weighted_runs=weighted)
    # What automation decided and still holds (store/experiment_decisions.py), beside the
    # counts it judged.
    holding = [d for d in made if d.active]
    for section in sections:
        key = (section["version"], section["step"])
        if key in first:
            section["sample_ratio_runs"] = (
                f"assigned before the step's first decision, {iso(first[key], milliseconds=False)}"
            )
        section["decisions"] = [
            {
                "arm": d.arm,
                "action": d.action,
                "reason": d.reason,
                "decided_at": iso(d.decided_at_ms, milliseconds=False),
            }
            for d in holding
            if (d.version, d.step) == (section["version"], section["step"])
        ]
    return sections


def load_overview(
    conn: Connection, workspace_id: str, *, from_day: int | None, to_day: int | None, include_machine: bool
) -> dict[str, Any]:
    counters, latencies = rollups.read(conn, workspace_id, from_day=from_day, to_day=to_day)
    out = report.overview_report(
        counters,
        latencies,
        journeys.trigger_types(conn, workspace_id),
        rollups.VALUES,
        program=rollups.read_program(conn, workspace_id, from_day=from_day, to_day=to_day),
        include_machine=include_machine,
    )
    conversions, revenue = rollups.read_unique_conversions(conn, workspace_id, from_day=from_day, to_day=to_day)
    # Each goal event once, however many journeys it converted runs of.
    out["workspace"]["unique_conversions"] = conversions
    out["workspace"]["unique_revenue"] = round(revenue, 6)
    out["from"], out["to"] = iso_date(from_day), iso_date(to_day)
    return out


def iso_date(day: int | None) -> str | None:
    return None if day is None else date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()


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

    @router.get(
        "/journeys/{journey_id}",
        summary="A journey's metrics, with a breakdown by step, variant, channel, and its experiments",
    )
    def journey(
        state: State,
        journey_id: str,
        workspace_id: Workspace,
        from_: From = None,
        to: To = None,
        by: Annotated[str | None, Query(description="Comma-separated: step, variant, channel, version, day.")] = None,
        machine: Machine = False,
        format: Format = "json",
        minimum_per_arm: Annotated[
            int | None,
            Query(
                ge=1,
                le=1_000_000_000,
                description="Runs each experiment arm needs before a winner is called; default: each step's own "
                "`minimum_per_arm`, else 500.",
            ),
        ] = None,
    ) -> Any:
        try:
            span = parse_span(from_, to)
            groups = parse_by(by)
        except BadQuery as exc:
            return JSONResponse({"detail": str(exc)}, 400)
        with state.engine.connect() as conn:
            found = load_journey_report(
                conn,
                workspace_id,
                journey_id,
                from_day=span[0],
                to_day=span[1],
                by=groups,
                include_machine=machine,
                minimum_per_arm=minimum_per_arm,
            )
        if found is None:
            return JSONResponse({"detail": f"no journey {journey_id!r} in this workspace"}, 404)
        if format == "csv":
            return _csv(report.journey_csv(found), f"journey-{journey_id}")
        return found

    @router.get(
        "/overview", summary="Metrics per journey, per trigger type and for the workspace, and the program's lift"
    )
    def overview(
        state: State,
        workspace_id: Workspace,
        from_: From = None,
        to: To = None,
        machine: Machine = False,
        format: Format = "json",
    ) -> Any:
        try:
            span = parse_span(from_, to)
        except BadQuery as exc:
            return JSONResponse({"detail": str(exc)}, 400)
        with state.engine.connect() as conn:
            found = load_overview(conn, workspace_id, from_day=span[0], to_day=span[1], include_machine=machine)
        if format == "csv":
            return _csv(report.overview_csv(found), "overview")
        return found

    return router
