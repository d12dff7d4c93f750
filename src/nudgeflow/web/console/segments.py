"""The console's segments: the list (/segments) and one segment (/segments/{id}).

A segment's page shows its live definition as the YAML `segments apply` takes, its size now
(a count of the members rows) and per day (store.segments.daily_sizes, drawn here as an SVG
so it needs no script), its members a page at a time by profile id, and, for a person
named in `?person=`, why they are in or out: each condition evaluated on the engine's
state of them (web/segment_explain.py, the same answer as GET /api/segments/{id}/explain).
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from nudgeflow.core.clock import to_ms
from nudgeflow.model.iso_time import iso
from nudgeflow.model.segments import Segment
from nudgeflow.store import segments as store
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import page
from nudgeflow.web.person_refs import person_id
from nudgeflow.web.segment_explain import explain_person
from nudgeflow.web.state import State

MEMBERS_PAGE = 50
CHART_W, CHART_H, CHART_PAD = 640, 160, 28


def _time(ms: int | None) -> str:
    return iso(ms, milliseconds=False) if ms else ""


def size_chart(daily: list[dict[str, int]]) -> dict[str, Any] | None:
    """The daily sizes as an SVG polyline's points in a CHART_W x CHART_H box, with the axis
    labels: the first and last dates, and the largest size."""
    if not daily:
        return None
    top = max(max(d["size"] for d in daily), 1)
    span = max(len(daily) - 1, 1)
    inner_w, inner_h = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD
    points = []
    for i, d in enumerate(daily):
        x = CHART_PAD + inner_w * i / span
        y = CHART_PAD + inner_h * (1 - d["size"] / top)
        points.append((round(x, 1), round(y, 1)))
    if len(points) == 1:  # one day: a level line across, so there is something to see
        points.append((round(CHART_PAD + inner_w, 1), points[0][1]))
    return {
        "points": " ".join(f"{x},{y}" for x, y in points),
        "dots": points if len(daily) <= 31 else [points[-1]],
        "width": CHART_W,
        "height": CHART_H,
        "pad": CHART_PAD,
        "top": top,
        "first": iso(daily[0]["day"] * store.DAY_MS)[:10],
        "last": iso(daily[-1]["day"] * store.DAY_MS)[:10],
        "days": len(daily),
        "now": daily[-1]["size"],
    }


def written(definition: dict[str, Any]) -> dict[str, Any]:
    """A stored definition as an author writes it: without the fields left at their defaults
    (the store keeps every field spelled out)."""
    try:
        segment = Segment.model_validate(definition)
    except ValidationError:
        return definition  # an older stored form: shown as stored
    out: dict[str, Any] = segment.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return out


def router() -> APIRouter:
    r = APIRouter()

    @r.get("/segments", response_class=HTMLResponse, include_in_schema=False)
    def segments_list(request: Request, user: Viewer, state: State) -> HTMLResponse:
        with state.engine.connect() as conn:
            found = store.list_segments(conn, user.workspace_id)
        rows = [{**s, "updated": _time(s["updated_at_ms"])} for s in found]
        return page(request, user, "segments/list.html", title="Segments", segments=rows)

    @r.get("/segments/{segment_id}", response_class=HTMLResponse, include_in_schema=False)
    def segment_page(
        request: Request,
        user: Viewer,
        state: State,
        segment_id: str,
        after: Annotated[str, Query(max_length=40)] = "",
        person: Annotated[str, Query(max_length=500)] = "",
    ) -> HTMLResponse:
        now = to_ms(state.clock.now())
        ws = user.workspace_id
        why: Any = None
        with state.engine.connect() as conn:
            found = store.get_segment(conn, ws, segment_id, now // store.DAY_MS)
            if found is None:
                detail = f"no segment {segment_id!r} in this workspace"
                return page(request, user, "segments/missing.html", title="Segments", detail=detail, status_code=404)
            members = store.members(conn, ws, segment_id, after, MEMBERS_PAGE + 1)
            users = store.profile_user_ids(conn, [pid for pid, _ in members[:MEMBERS_PAGE]])
            if person.strip():
                pid = person_id(conn, ws, person)
                why = (
                    explain_person(conn, ws, segment_id, pid, now)
                    if pid
                    else (404, f"no person {person!r} in this workspace")
                )
        definition = written(found["definition"] or found["draft"])
        return page(
            request,
            user,
            "segments/detail.html",
            title=f"Segment {found['name']}",
            segment=found,
            definition_yaml=yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=1000),
            chart=size_chart(found["daily"]),
            as_of=_time(found["as_of_ms"]),
            members=[
                {"profile_id": pid, "user_id": users.get(pid), "since": _time(since)}
                for pid, since in members[:MEMBERS_PAGE]
            ],
            next_after=members[MEMBERS_PAGE - 1][0] if len(members) > MEMBERS_PAGE else None,
            after=after,
            person=person,
            why=why if isinstance(why, dict) else None,
            why_error=why[1] if isinstance(why, tuple) else None,
        )

    return r
