"""The console's journey pages (issue 16, item 4):

- /journeys                      the list: status, live version, people in the journey now, entries,
                                 sends and conversions over the last 7 days, lift when there is a holdout
- /journeys/{id}                 the canvas (static/journeys/canvas.js) of the draft, or of a published
                                 version (?version=N), with per-step counts; selecting a node shows its
                                 settings, template preview links and metrics; publish/pause/resume/archive
- /journeys/{id}/versions        the versions, and two of them (or the draft) side by side
- /journeys/{id}/definition.yaml the definition as YAML, what `nudgeflow journeys apply` takes
- POST /journeys/graph           the canvas's graph of a YAML text being edited
- POST /journeys/edit            a structural edit of such a text (add a step on a link, remove one,
                                 move one up or down: model/journey_edits.py), answered as the new text
  (neither changes any state: the editor's checks are the admin API's POST /api/journeys/validate,
  its save PUT /api/journeys/{id})

Pages only read (store/ functions; counts from the report rollups and the runs' index, never the
event log); every change goes through the admin API from the page's script. A journey id of
another workspace is a 404, like one that does not exist.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from nudgeflow.core.clock import to_ms
from nudgeflow.measure import report
from nudgeflow.model import yaml_limits
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journey_checks import DocumentError, check_journey, load_text
from nudgeflow.model.journey_edits import EditError, add_step, move_step, part_of, remove_step, replace_part
from nudgeflow.model.journey_graph import GOAL, TRIGGER, JourneyGraph, journey_graph
from nudgeflow.model.journeys import Journey
from nudgeflow.store import journey_activity, rollups
from nudgeflow.store import journeys as store
from nudgeflow.store.console_users import EDITOR
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import error_page, page
from nudgeflow.web.state import State

PAGE_SIZE = 25
MAX_DOCUMENT_BYTES = 1 << 20  # as the admin API's journey bodies
WINDOW_DAYS = 7  # the list's and the canvas's counts: the last 7 UTC days, today included
SENT_KINDS = ("send", "webhook")
JOURNEYS = ("/journeys", "All journeys")  # where a journey page that cannot be shown leads back to
WAIT_KINDS = ("wait", "wait_for_event")


def router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/journeys")
    def journey_list(
        request: Request, user: Viewer, state: State, page_number: Annotated[int, Query(alias="page", ge=1)] = 1
    ) -> HTMLResponse:
        today = rollups.day_of(to_ms(state.clock.now()))
        with state.engine.connect() as conn:
            listing = journey_rows(conn, user.workspace_id, today, page_number)
        return page(
            request,
            user,
            "journeys/list.html",
            title="Journeys",
            listing=listing,
            window_days=WINDOW_DAYS,
            can_edit=user.may(EDITOR),
        )

    @router.get("/journeys/{journey_id}")
    def journey_page(
        request: Request,
        user: Viewer,
        state: State,
        journey_id: str,
        version: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        today = rollups.day_of(to_ms(state.clock.now()))
        try:
            with state.engine.connect() as conn:
                view = canvas_view(conn, user.workspace_id, journey_id, today, version)
        except HTTPException as exc:
            return error_page(request, user, exc, back=JOURNEYS)
        data = {**view.data, "can_edit": user.may(EDITOR)}
        return page(
            request,
            user,
            "journeys/canvas.html",
            title=view.title,
            view=view,
            can_edit=user.may(EDITOR),
            page_data=script_json(data),
        )

    @router.post("/journeys/graph")
    async def graph_of_text(request: Request, user: Viewer) -> dict[str, Any]:
        """The graph of a definition as typed in the editor: `graph` null while the text is not
        yet a journey (the editor shows the admin API's problems and keeps the last drawing)."""
        body = await request.body()
        if len(body) > MAX_DOCUMENT_BYTES:
            raise HTTPException(413, f"a journey definition is at most {MAX_DOCUMENT_BYTES:,} bytes")
        # In a worker thread: reading and checking a large text takes seconds, which the event
        # loop (every other request) would wait out.
        return {"graph": await run_in_threadpool(_graph_of, body)}

    @router.post("/journeys/edit")
    async def edit_text(request: Request, user: Viewer) -> dict[str, Any]:
        """{yaml, op: add|remove|move|part|set, step, slot (add), kind (add), direction (move),
        part (set)} -> {yaml, step}: the text with the edit made (comments are not kept), and the
        step it made or moved; `part` answers the node's own piece as YAML, `set` replaces it.
        422 naming what does not apply."""
        body = await request.body()
        if len(body) > MAX_DOCUMENT_BYTES + 10_000:
            raise HTTPException(413, f"a journey definition is at most {MAX_DOCUMENT_BYTES:,} bytes")
        try:
            asked = orjson.loads(body)
            text, op, step = str(asked["yaml"]), str(asked["op"]), str(asked["step"])
            doc = yaml_limits.safe_load(text)
        except (orjson.JSONDecodeError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise HTTPException(422, f"expected JSON with yaml, op and step: {exc}"[:300]) from exc
        if not isinstance(doc, dict):
            raise HTTPException(422, "the text is not a journey document yet: fix it first")
        try:
            if op == "add":
                doc, step = add_step(doc, step, str(asked.get("slot", "next")), str(asked.get("kind", "")))
            elif op == "remove":
                doc = remove_step(doc, step)
            elif op == "move":
                doc = move_step(doc, step, str(asked.get("direction", "")))
            elif op == "part":  # the node's piece alone, as YAML (nothing changes)
                return {"yaml": _dump(part_of(doc, step)), "step": step}
            elif op == "set":
                try:
                    value = yaml_limits.safe_load(str(asked.get("part", "")))
                except yaml.YAMLError as exc:
                    raise EditError(f"the settings are not YAML: {exc}"[:300]) from exc
                doc = replace_part(doc, step, value)
            else:
                raise EditError(f"no edit {op[:40]!r} (add, remove, move, part or set)")
        except EditError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"yaml": _dump(doc), "step": step}

    @router.get("/journeys/{journey_id}/versions")
    def versions_page(
        request: Request,
        user: Viewer,
        state: State,
        journey_id: str,
        a: Annotated[str | None, Query(max_length=20)] = None,
        b: Annotated[str | None, Query(max_length=20)] = None,
    ) -> HTMLResponse:
        try:
            with state.engine.connect() as conn:
                found = _journey(conn, user.workspace_id, journey_id)
                numbers = [v["version"] for v in found["versions"]]
                # Default: the live version (else the newest) against the draft.
                left = _side(a, numbers, default=str(found["live_version"] or (numbers[-1] if numbers else "draft")))
                right = _side(b, numbers, default="draft")
                texts = {side: _side_yaml(conn, user.workspace_id, found, side) for side in {left, right}}
        except HTTPException as exc:
            return error_page(request, user, exc, back=JOURNEYS)
        sides = [{"value": "draft", "label": "the draft"}] + [
            {"value": str(v["version"]), "label": f"version {v['version']}"} for v in reversed(found["versions"])
        ]
        changed = changed_lines(texts[left], texts[right])
        versions = [
            {
                "version": v["version"],
                "published_at": iso(v["published_at_ms"], milliseconds=False),
                "live": v["version"] == found["live_version"],
            }
            for v in reversed(found["versions"])
        ]
        data = {
            "left": {"label": _label(left), "text": texts[left]},
            "right": {"label": _label(right), "text": texts[right]},
        }
        return page(
            request,
            user,
            "journeys/versions.html",
            title=f"{found['name']}: versions",
            journey=found,
            versions=versions,
            sides=sides,
            left=left,
            right=right,
            left_label=_label(left),
            right_label=_label(right),
            changed=changed,
            page_data=script_json(data),
        )

    @router.get("/journeys/{journey_id}/definition.yaml")
    def definition_download(
        user: Viewer, state: State, journey_id: str, version: Annotated[int | None, Query(ge=1)] = None
    ) -> Response:
        with state.engine.connect() as conn:
            found = _journey(conn, user.workspace_id, journey_id)
            side = "draft" if version is None else _side(str(version), [v["version"] for v in found["versions"]], "")
            text = _side_yaml(conn, user.workspace_id, found, side)
        name = journey_id if version is None else f"{journey_id}.v{version}"
        return Response(
            text,
            media_type="application/yaml; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.yaml"', "Cache-Control": "no-store"},
        )

    return router


# --- the list ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    rows: list[dict[str, Any]]
    page: int
    pages: int
    total: int


def journey_rows(conn: Connection, workspace_id: str, today: int, page_number: int) -> Listing:
    """One page of the workspace's journeys, with the last WINDOW_DAYS' counters (one grouped
    read of the rollups for the page's journeys) and the runs in flight now."""
    summaries = store.list_journeys(conn, workspace_id)
    pages = max(1, -(-len(summaries) // PAGE_SIZE))
    page_number = min(page_number, pages)
    shown = summaries[(page_number - 1) * PAGE_SIZE : page_number * PAGE_SIZE]
    ids = [s["id"] for s in shown]
    counters, _ = rollups.read(conn, workspace_id, from_day=today - WINDOW_DAYS + 1, to_day=today)
    by_journey = {row["journey_id"]: row for row in counters if row["journey_id"] in set(ids)}
    in_flight = journey_activity.people_in_journeys(conn, workspace_id, ids)
    rows = []
    for summary in shown:
        counts = by_journey.get(summary["id"])
        lift = report.lift(counts) if counts else None
        rows.append(
            {
                **summary,
                "in_flight": in_flight.get(summary["id"], 0),
                "entered": counts["entered"] if counts else 0,
                "sent": counts["sent"] if counts else 0,
                "conversions": counts["conversions"] if counts else 0,
                "lift": _lift_text(lift),
            }
        )
    return Listing(rows, page_number, pages, len(summaries))


def _lift_text(lift: dict[str, Any] | None) -> str | None:
    """`+1.2 pp (-0.4 to +2.8)`: the absolute conversion lift and its 95 % interval, in points."""
    if lift is None:
        return None
    absolute = lift["conversion"]["absolute_lift"]
    if absolute is None:
        return "not enough data"

    def points(value: float) -> str:
        return f"{value * 100:+.1f}"

    return f"{points(absolute['value'])} pp ({points(absolute['low'])} to {points(absolute['high'])})"


# --- the canvas --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanvasView:
    title: str
    journey: dict[str, Any]  # the store's summary: id, name, status, live_version, draft_changed, versions
    showing: str  # "draft" or "version N"
    version: int | None
    graph: JourneyGraph
    problems: list[dict[str, Any]]
    in_flight: int
    data: dict[str, Any]  # what the page's script reads (graph, counts, the journey)


def canvas_view(conn: Connection, workspace_id: str, journey_id: str, today: int, version: int | None) -> CanvasView:
    found = _journey(conn, workspace_id, journey_id)
    if version is None:
        # A stored draft was checked when it was saved; should this release's checks refuse it,
        # the page lists why instead of drawing it.
        definition, checked = check_journey(found["draft"])
        problems = [p.as_dict() for p in checked]
    else:
        loaded = store.load_version(conn, workspace_id, journey_id, version)
        if loaded is None:
            raise HTTPException(404, f"journey {journey_id!r} has no version {version}")
        definition, problems = loaded, []
    graph = journey_graph(definition) if definition is not None else JourneyGraph((), (), None)
    counts = node_counts(conn, workspace_id, journey_id, graph, today)
    in_flight = journey_activity.people_in_journeys(conn, workspace_id, [journey_id]).get(journey_id, 0)
    # draft_revision: the editor's save sends it as If-Match, so it cannot overwrite a draft
    # someone saved after this page was loaded (web/draft_revisions.py).
    journey = {k: found[k] for k in ("id", "name", "status", "live_version", "draft_changed", "draft_revision")}
    data = {
        "journey": {**journey, "in_flight": in_flight, "showing": version},
        # The editor's text (the draft only: a published version is never edited).
        "yaml": definition_yaml(found["draft"]) if version is None else None,
        "graph": graph.as_dict(),
        "counts": counts,
        "problems": problems,
        "window_days": WINDOW_DAYS,
    }
    showing = "the draft" if version is None else f"version {version}"
    return CanvasView(found["name"], found, showing, version, graph, problems, in_flight, data)


def node_counts(
    conn: Connection, workspace_id: str, journey_id: str, graph: JourneyGraph, today: int
) -> dict[str, list[list[Any]]]:
    """node id -> [[label, number], ...]: entries and conversions over the window on the trigger
    and the goal, messages sent (opened, clicked) on send steps, and runs at each step now."""
    counters, _ = rollups.read(
        conn, workspace_id, journey_id=journey_id, from_day=today - WINDOW_DAYS + 1, to_day=today, by=("step",)
    )
    by_step = {row["step"]: row for row in counters}
    runs = by_step.get("", {})
    here = journey_activity.people_at_steps(conn, workspace_id, journey_id)
    counts: dict[str, list[list[Any]]] = {}
    for node in graph.nodes:
        pairs: list[list[Any]] = []
        if node.id == TRIGGER:
            pairs.append(["entered", runs.get("entered", 0)])
            if runs.get("held_out"):
                pairs.append(["held out", runs["held_out"]])
        elif node.id == GOAL:
            pairs.append(["converted", runs.get("conversions", 0)])
        elif node.kind in SENT_KINDS:
            row = by_step.get(node.id, {})
            pairs.append(["sent", row.get("sent", 0)])
            for name in ("opens", "clicks"):
                if row.get(name):
                    pairs.append([name.removesuffix("s") + "ed", row[name]])
        if node.kind in (*SENT_KINDS, *WAIT_KINDS) or here.get(node.id):
            pairs.append(["here now", here.get(node.id, 0)])
        if pairs:
            counts[node.id] = pairs
    return counts


# --- helpers -----------------------------------------------------------------------------------


def _journey(conn: Connection, workspace_id: str, journey_id: str) -> dict[str, Any]:
    found = store.get_journey(conn, workspace_id, journey_id)
    if found is None:
        raise HTTPException(404, f"no journey {journey_id[:80]!r} in this workspace")
    return found


def _side(value: str | None, versions: list[int], default: str) -> str:
    """A diff side: "draft" or a version number of this journey (404 for another)."""
    value = value or default
    if value == "draft":
        return value
    if not value.isdigit() or int(value) not in versions:
        raise HTTPException(404, f"this journey has no version {value[:20]!r}")
    return value


def changed_lines(left: str, right: str) -> int:
    """Lines that differ between two texts: a line rewritten counts once, not as one out and one in."""
    matcher = difflib.SequenceMatcher(None, left.splitlines(), right.splitlines(), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def _label(side: str) -> str:
    return "the draft" if side == "draft" else f"version {side}"


def _side_yaml(conn: Connection, workspace_id: str, found: dict[str, Any], side: str) -> str:
    if side == "draft":
        return definition_yaml(found["draft"])
    loaded = store.load_version(conn, workspace_id, found["id"], int(side))
    if loaded is None:  # listed a moment ago; versions are never deleted
        raise HTTPException(404, f"this journey has no version {side}")
    return definition_yaml(loaded.model_dump(mode="json", by_alias=True))


def _graph_of(body: bytes) -> dict[str, Any] | None:
    """The graph of one journey's text, or None while it is not yet one."""
    try:
        documents = load_text(body.decode("utf-8"))
    except (UnicodeDecodeError, DocumentError):
        return None
    if len(documents) != 1:
        return None
    journey, _ = check_journey(documents[0][1])
    return journey_graph(journey).as_dict() if journey is not None else None


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def script_json(data: Any) -> str:
    """JSON for a `<script type="application/json">` block: `<`, `>` and `&` escaped, so no
    string in it (a step's name, a template's) can close the block or open another."""
    text = orjson.dumps(data).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def definition_yaml(document: dict[str, Any]) -> str:
    """A definition as the YAML `nudgeflow journeys apply` takes: the stored document (every
    default spelled out) with the defaults left out again, keys in the format's order, so the
    download reads like a file written by hand and means the same journey."""
    try:
        compact = Journey.model_validate(document).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    except ValueError:  # no longer valid under this release's checks: the document as stored
        compact = document
    return yaml.safe_dump(compact, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
