"""The admin API for segments: the same format and lifecycle as `nudgeflow segments …`.

Definitions are sent as JSON, or as YAML with `Content-Type: application/yaml`, and
refused as journeys are (web/definitions.py): 422 with every problem, nothing stored.
Applying a changed definition makes a new live version, which the engine then computes
for the people already stored; `GET /api/segments/{id}` says how far that went, the size
now (exact: a count of the members), as of which event of the log, and the size per day.
Writes go through the group committer; reads use their own connection.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from nudgeflow.core.clock import to_ms
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journey_checks import Problem
from nudgeflow.model.segment_checks import check_segment, circle_among
from nudgeflow.model.segments import Segment, segment_json_schema, segment_order
from nudgeflow.store import segments as store
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.web.admin import INT32_MAX, Workspace
from nudgeflow.web.definitions import Refused, invalid, nul_problems, problem_dicts, read_documents
from nudgeflow.web.draft_revisions import conflict, create_only, etag, expected_revision, refuse_if_match
from nudgeflow.web.person_refs import person_id
from nudgeflow.web.segment_explain import explain_person
from nudgeflow.web.state import AppState, State

T = TypeVar("T")

INVALID = "invalid segment definition"


def _time(ms: int | None) -> str | None:
    return iso(ms, milliseconds=False) if ms else None


def _computed(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "version": found["version"],
        "status": found["status"],
        "profiles_done": found["profiles_done"],
        "size": found["size"],
        "as_of_seq": found["as_of_seq"],
        "started_at": _time(found["started_at_ms"]),
        "finished_at": _time(found["finished_at_ms"]),
    }


def view(segment: dict[str, Any]) -> dict[str, Any]:
    """Store rows to API shapes: ISO 8601 times and dates, like the rest of the admin API."""
    out: dict[str, Any] = {
        "id": segment["id"],
        "name": segment["name"],
        "status": segment["status"],
        "live_version": segment["live_version"],
        "draft_revision": segment["draft_revision"],
        "draft_changed": segment["draft_changed"],
        "size": segment["size"],
        "computed": _computed(segment["computed"]),
        "created_at": _time(segment["created_at_ms"]),
        "updated_at": _time(segment["updated_at_ms"]),
    }
    if "draft" in segment:
        out["as_of"] = {"seq": segment["as_of_seq"], "at": _time(segment["as_of_ms"])}
        out["definition"] = segment["definition"]
        out["draft"] = segment["draft"]
        out["versions"] = [
            {"version": v["version"], "published_at": _time(v["published_at_ms"])} for v in segment["versions"]
        ]
        out["daily"] = [
            {"date": iso(d["day"] * store.DAY_MS)[:10], **{k: d[k] for k in ("entered", "exited", "size")}}
            for d in segment["daily"]
        ]
    return out


def _error_answer(exc: Exception) -> JSONResponse:
    if isinstance(exc, Refused):
        return JSONResponse(exc.body, exc.status)
    if isinstance(exc, store.InvalidSegment):
        return JSONResponse({"detail": str(exc), "problems": problem_dicts(exc.problems)}, 422)
    if isinstance(exc, store.DraftConflict):
        return conflict(str(exc), exc.current)
    if isinstance(exc, store.SegmentNotFound):
        return JSONResponse({"detail": str(exc)}, 404)
    if isinstance(exc, store.SegmentRefused):
        return JSONResponse({"detail": str(exc)}, 409)
    if isinstance(exc, store.SegmentError):
        return JSONResponse({"detail": str(exc)}, 400)
    if isinstance(exc, WriterStopped):
        return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
    raise exc


def _answering(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn the segment errors into their answers (FastAPI sees the handler's signature)."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except (Refused, store.SegmentError, WriterStopped) as exc:
            return _error_answer(exc)

    return wrapped


async def _write(state: AppState, fn: Callable[[Connection], T]) -> T:
    return await state.committer.run_job(fn)


def _now(state: AppState) -> int:
    return to_ms(state.clock.now())


def _read(state: AppState, fn: Callable[[Connection], T]) -> T:
    with state.engine.connect() as conn:
        return fn(conn)


def _checked(
    documents: list[tuple[int, Any]], live: dict[str, Segment]
) -> tuple[list[Segment], list[dict[str, Any]], list[dict[str, Any]]]:
    """(the valid segments, those referred to first; errors; warnings) of the body's
    documents, references checked against the live segments and each other."""
    errors: list[dict[str, Any]] = nul_problems(documents)
    warnings: list[dict[str, Any]] = []
    found: list[Segment] = []
    known = set(live) | {d["id"] for _, d in documents if isinstance(d, dict) and isinstance(d.get("id"), str)}
    for index, doc in documents:
        segment, problems = check_segment(doc, known=known)
        errors.extend(problem_dicts([p for p in problems if p.severity == "error"], index))
        warnings.extend(problem_dicts([p for p in problems if p.severity == "warning"], index))
        if segment is not None:
            found.append(segment)
    circle = circle_among(found, live)
    if circle is not None:
        message = "segments refer to each other in a circle: " + " -> ".join(circle)
        errors.extend(problem_dicts([Problem("when", message)]))
    if not documents:
        errors.append({"path": "", "message": "no segment in the body", "severity": "error", "line": None})
    if errors:
        return [], errors, warnings
    by_id = {s.id: s for s in found}
    return [by_id[sid] for sid in segment_order(found)], errors, warnings


async def _checked_against_live(
    state: AppState, workspace_id: str, documents: list[tuple[int, Any]]
) -> tuple[list[Segment], list[dict[str, Any]], list[dict[str, Any]]]:
    """`_checked` against the workspace's live segments, in a worker thread: checking a
    megabyte of definitions takes about a second and a half, which on the event loop every
    other request (/healthz, ingest) would wait out; the read is a database round trip."""

    def check() -> tuple[list[Segment], list[dict[str, Any]], list[dict[str, Any]]]:
        live = _read(state, lambda conn: store.live_definitions(conn, workspace_id))
        return _checked(documents, live)

    return await run_in_threadpool(check)


def segments_router() -> APIRouter:
    router = APIRouter(prefix="/api/segments", tags=["segments"])

    # Fixed paths first: `schema` and `validate` are reserved and cannot be segment ids.

    @router.get("/schema", summary="The JSON Schema of the segment format")
    def schema(workspace_id: Workspace) -> dict[str, Any]:
        return segment_json_schema()

    @router.post("/validate", summary="Check definitions without storing them (JSON or YAML body)")
    @_answering
    async def validate(request: Request, state: State, workspace_id: Workspace) -> dict[str, Any]:
        """Answers 200 with `valid` and every problem, errors and warnings; `document` is the
        index of the YAML document (or JSON array item) each problem belongs to. References
        to other segments are checked against the workspace's live ones and the body's."""
        documents = await read_documents(request, "segment")
        _segments, errors, warnings = await _checked_against_live(state, workspace_id, documents)
        return {"valid": not errors, "problems": errors + warnings}

    @router.get("", summary="The workspace's segments: status, live version, size, computation")
    def list_segments(state: State, workspace_id: Workspace) -> dict[str, Any]:
        found = _read(state, lambda conn: store.list_segments(conn, workspace_id))
        return {"segments": [view(s) for s in found]}

    async def _apply(
        state: AppState,
        workspace_id: str,
        documents: list[tuple[int, Any]],
        draft: bool,
        expected: int | None = None,
        new_only: bool = False,
    ) -> Any:
        found, errors, warnings = await _checked_against_live(state, workspace_id, documents)
        if errors:
            raise invalid(errors, INVALID)
        now = _now(state)

        def apply(conn: Connection) -> list[store.Applied]:
            return [
                store.apply(
                    conn, workspace_id, segment, now, draft=draft, expected_revision=expected, create_only=new_only
                )
                for segment in found
            ]

        return await _write(state, apply), warnings

    @router.post("", summary="Apply segments (one or several documents): each changed one becomes a new live version")
    @_answering
    async def apply_segments(
        request: Request,
        state: State,
        workspace_id: Workspace,
        draft: Annotated[bool, Query(description="Only store the drafts: nothing goes live.")] = False,
    ) -> Any:
        """All or nothing, in one transaction, those referred to first. Each new version is
        computed by the engine for the people already stored (`GET /api/segments/{id}`
        says how far it went, and the size it found)."""
        refuse_if_match(request, "PUT /api/segments/{id}")
        documents = await read_documents(request, "segment")
        done, warnings = await _apply(state, workspace_id, documents, draft)
        return {"applied": [_applied(a) for a in done], "warnings": warnings}

    @router.get("/{segment_id}", summary="A segment: definition, version, status, size, as of when, daily sizes")
    def get_segment(state: State, segment_id: str, workspace_id: Workspace) -> Any:
        today = store.day_of(_now(state))
        found = _read(state, lambda conn: store.get_segment(conn, workspace_id, segment_id, today))
        if found is None:
            return JSONResponse({"detail": f"no segment {segment_id!r} in this workspace"}, 404)
        # The draft's revision: a PUT with it in If-Match is refused if the draft changed since.
        return JSONResponse(view(found), headers={"ETag": etag(found["draft_revision"])})

    @router.put("/{segment_id}", summary="Create or change a segment and apply it (JSON or YAML body)")
    @_answering
    async def put_segment(
        request: Request,
        state: State,
        segment_id: str,
        workspace_id: Workspace,
        draft: Annotated[bool, Query(description="Only store the draft: nothing goes live.")] = False,
    ) -> Any:
        """201 when created, 200 when changed or unchanged; 422 with `problems` when the
        definition has errors (nothing is stored). A definition without `id` takes the URL's.
        With `If-Match` (the ETag of GET), only if the draft is still at that revision: 412
        with `current_revision` otherwise, and nothing is stored or applied. With
        `If-None-Match: *`, only a new segment: 412 when the id is taken."""
        expected, new_only = expected_revision(request), create_only(request)
        documents = await read_documents(request, "segment")
        if len(documents) != 1:
            raise invalid([Problem("", f"send one segment per request, not {len(documents)}").as_dict()], INVALID)
        _, doc = documents[0]
        if isinstance(doc, dict):
            doc.setdefault("id", segment_id)
            if doc["id"] != segment_id:
                line = doc.line_of(("id",)) if hasattr(doc, "line_of") else None
                message = f"the definition's id {doc['id']!r} is not the URL's {segment_id!r}"
                raise invalid([Problem("id", message, line=line).as_dict()], INVALID)
        done, warnings = await _apply(state, workspace_id, documents, draft, expected, new_only)
        found = await run_in_threadpool(_read, state, lambda conn: store.get_segment(conn, workspace_id, segment_id))
        assert found is not None
        body = {**_applied(done[0]), "segment": view(found), "warnings": warnings}
        return JSONResponse(body, 201 if done[0].created else 200, headers={"ETag": etag(found["draft_revision"])})

    @router.post("/{segment_id}/apply", summary="Make the stored draft live (a new version when it changed)")
    @_answering
    async def apply_draft(state: State, segment_id: str, workspace_id: Workspace) -> dict[str, Any]:
        now = _now(state)
        version, new = await _write(state, lambda conn: store.publish(conn, workspace_id, segment_id, now))
        return {"id": segment_id, "status": store.LIVE, "version": version, "new_version": new}

    @router.post("/{segment_id}/archive", summary="Retire a segment for good")
    @_answering
    async def archive(state: State, segment_id: str, workspace_id: Workspace) -> dict[str, Any]:
        """Its members are let go and nothing computes it any more. 409 while a live
        journey or another live segment uses it."""
        now = _now(state)
        changed = await _write(state, lambda conn: store.archive(conn, workspace_id, segment_id, now))
        return {"id": segment_id, "status": store.ARCHIVED, "changed": changed}

    @router.get("/{segment_id}/members", summary="The members, paged by profile id")
    def members(
        state: State,
        segment_id: str,
        workspace_id: Workspace,
        after: Annotated[str, Query(max_length=40, description="The last profile id of the previous page.")] = "",
        limit: Annotated[int, Query(ge=1, le=store.MAX_PAGE)] = 100,
    ) -> Any:
        """`next` is the `after` of the next page; null on the last one."""

        def read(conn: Connection) -> tuple[Any, tuple[list[tuple[str, int]], str | None]]:
            return store.status_of(conn, workspace_id, segment_id), store.members_page(
                conn, workspace_id, segment_id, after, limit
            )

        status, (page, next_after) = _read(state, read)
        if status is None:
            return JSONResponse({"detail": f"no segment {segment_id!r} in this workspace"}, 404)
        return {
            "members": [{"profile_id": pid, "since": _time(since)} for pid, since in page],
            "next": next_after,
        }

    @router.get("/{segment_id}/explain", summary="Why a person is in the segment or not, condition by condition")
    def explain(
        state: State,
        segment_id: str,
        workspace_id: Workspace,
        person: Annotated[
            str, Query(min_length=1, max_length=500, description="Profile id, userId, anonymousId or email.")
        ],
    ) -> Any:
        """Each condition of the live version evaluated for the person now, with what it
        read (web/segment_explain.py). 404 for a person or segment not in this workspace."""
        now = _now(state)

        def read(conn: Connection) -> Any:
            pid = person_id(conn, workspace_id, person)
            if pid is None:
                return 404, f"no person {person!r} in this workspace"
            return explain_person(conn, workspace_id, segment_id, pid, now)

        found = _read(state, read)
        if isinstance(found, tuple):
            return JSONResponse({"detail": found[1]}, found[0])
        return found

    @router.get("/{segment_id}/versions/{version}", summary="One version's definition")
    def get_version(
        state: State, segment_id: str, version: Annotated[int, Path(ge=1, le=INT32_MAX)], workspace_id: Workspace
    ) -> Any:
        def read(conn: Connection) -> tuple[Any, Any]:
            return store.status_of(conn, workspace_id, segment_id), store.load_version(
                conn, workspace_id, segment_id, version
            )

        status, segment = _read(state, read)
        if status is None or segment is None:
            return JSONResponse({"detail": f"no version {version} of segment {segment_id!r}"}, 404)
        return {
            "id": segment_id,
            "version": version,
            "live": status[1] == version and status[0] == store.LIVE,
            "definition": segment.model_dump(mode="json", by_alias=True),
        }

    return router


def _applied(done: store.Applied) -> dict[str, Any]:
    return {
        "id": done.segment_id,
        "created": done.created,
        "status": done.status,
        "version": done.version,
        "new_version": done.new_version,
    }
