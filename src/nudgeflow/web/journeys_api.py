"""The admin API for journeys: the same format and lifecycle as `nudgeflow journeys …`.

Definitions are sent as JSON, or as YAML with `Content-Type: application/yaml`. A
definition with errors is answered 422 with every problem (path, message, line) and is
not stored; warnings come back with a successful answer. Writes go through the group
committer, like every other write of the server; reads use their own connection.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from nudgeflow.core.catalog import place_tags
from nudgeflow.core.clock import to_ms
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journey_checks import Delivery, Problem, check_journey
from nudgeflow.model.journeys import Journey, journey_json_schema
from nudgeflow.runtime.backfill import Preview, preview
from nudgeflow.store import catalog as catalog_store
from nudgeflow.store import experiment_decisions as decisions
from nudgeflow.store import journeys as store
from nudgeflow.store import segments as segment_store
from nudgeflow.store import templates as template_store
from nudgeflow.store import webhook_destinations
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.web.admin import INT32_MAX, Workspace
from nudgeflow.web.definitions import Refused, invalid, nul_problems, problem_dicts, read_documents
from nudgeflow.web.draft_revisions import conflict, create_only, etag, expected_revision
from nudgeflow.web.state import AppState, State

T = TypeVar("T")


def _view(journey: dict[str, Any]) -> dict[str, Any]:
    """Store rows to API shapes: ISO 8601 times, like the rest of the admin API."""
    out = {k: v for k, v in journey.items() if not k.endswith("_at_ms") and k != "versions"}
    out["created_at"] = iso(journey["created_at_ms"], milliseconds=False)
    out["updated_at"] = iso(journey["updated_at_ms"], milliseconds=False)
    if "versions" in journey:
        out["versions"] = [
            {"version": v["version"], "published_at": iso(v["published_at_ms"], milliseconds=False)}
            for v in journey["versions"]
        ]
    return out


def _decision_view(decision: decisions.Decision) -> dict[str, Any]:
    view = {k: v for k, v in decision.as_dict().items() if not k.endswith("_at_ms")}
    view["decided_at"] = iso(decision.decided_at_ms, milliseconds=False)
    view["cleared_at"] = iso(decision.cleared_at_ms, milliseconds=False)
    view["active"] = decision.active
    return view


def _invalid(problems: list[dict[str, Any]], detail: str = "invalid journey definition") -> Refused:
    return invalid(problems, detail)


async def _documents(request: Request) -> list[tuple[int, Any]]:
    return await read_documents(request, "journey")


def _error_answer(exc: Exception) -> JSONResponse:
    if isinstance(exc, Refused):
        return JSONResponse(exc.body, exc.status)
    if isinstance(exc, store.InvalidDefinition):
        return JSONResponse({"detail": str(exc), "problems": problem_dicts(exc.problems)}, 422)
    if isinstance(exc, store.DraftConflict):
        return conflict(str(exc), exc.current)
    if isinstance(exc, store.JourneyNotFound):
        return JSONResponse({"detail": str(exc)}, 404)
    if isinstance(exc, store.InvalidTransition):
        return JSONResponse({"detail": str(exc)}, 409)
    if isinstance(exc, store.JourneyError):
        return JSONResponse({"detail": str(exc)}, 400)
    if isinstance(exc, WriterStopped):
        return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
    raise exc


def _answering(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn the journey errors into their answers (FastAPI sees the handler's signature)."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except (Refused, store.JourneyError, WriterStopped) as exc:
            return _error_answer(exc)

    return wrapped


async def _write(state: AppState, fn: Callable[[Connection], T]) -> T:
    return await state.committer.run_job(fn)


def _now(state: AppState) -> int:
    return to_ms(state.clock.now())


def _read(state: AppState, fn: Callable[[Connection], T]) -> T:
    with state.engine.connect() as conn:
        return fn(conn)


def _delivery(state: AppState, workspace_id: str) -> Delivery:
    """The channels this server serves, the workspace's templates (name -> channel), places,
    webhook destinations and live segments."""

    def read(conn: Connection) -> tuple[dict[str, str], dict[str, frozenset[str]], list[str] | None, set[str]]:
        templates = {t["name"]: t["channel"] for t in template_store.list_templates(conn, workspace_id)}
        places = {
            p["id"]: frozenset(place_tags(p["attributes"]))
            for p in catalog_store.all_items(conn, workspace_id, "places")
        }
        segments = set(segment_store.live_definitions(conn, workspace_id))
        return templates, places, webhook_destinations.destination_names(conn, workspace_id), segments

    known, places, destinations, segments = _read(state, read)
    return Delivery.serving(
        state.settings.log_channels, known, "this workspace", places, destinations, segments=segments
    )


def _preview(conn: Connection, workspace_id: str, found: dict[str, Any], now: int) -> Preview | None:
    """Who would enter at once if the draft went live now; None when publishing makes no new version."""
    if not found["draft_changed"] or found["status"] == "archived":
        return None
    return preview(conn, workspace_id, Journey.model_validate(found["draft"]), now)


def journeys_router() -> APIRouter:
    router = APIRouter(prefix="/api/journeys", tags=["journeys"])

    # Fixed paths first: `schema` and `validate` are reserved and cannot be journey ids.

    @router.get("/schema", summary="The JSON Schema of the journey format")
    def schema(workspace_id: Workspace) -> dict[str, Any]:
        return journey_json_schema()

    @router.post("/validate", summary="Check definitions without storing them (JSON or YAML body)")
    @_answering
    async def validate(request: Request, state: State, workspace_id: Workspace) -> dict[str, Any]:
        """Answers 200 with `valid` and every problem, errors and warnings; `document` is the
        index of the YAML document (or JSON array item) each problem belongs to."""
        documents = await _documents(request)

        def check() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = nul_problems(documents)
            delivery = _delivery(state, workspace_id)
            for index, doc in documents:
                found.extend(problem_dicts(check_journey(doc, delivery)[1], index))
            return found

        problems = await run_in_threadpool(check)  # seconds for a large definition: not on the event loop
        if not documents:
            problems.append(
                {"path": "", "message": "no journey in the body", "severity": "error", "line": None, "document": 0}
            )
        return {"valid": not any(p["severity"] == "error" for p in problems), "problems": problems}

    @router.get("", summary="The workspace's journeys")
    def list_journeys(state: State, workspace_id: Workspace) -> dict[str, Any]:
        found = _read(state, lambda conn: store.list_journeys(conn, workspace_id))
        return {"journeys": [_view(j) for j in found]}

    @router.get("/{journey_id}", summary="A journey: status, live version, draft definition, versions")
    def get_journey(state: State, journey_id: str, workspace_id: Workspace) -> Any:
        found = _read(state, lambda conn: store.get_journey(conn, workspace_id, journey_id))
        if found is None:
            return JSONResponse({"detail": f"no journey {journey_id!r} in this workspace"}, 404)
        # The draft's revision: a PUT with it in If-Match is refused if the draft changed since.
        return JSONResponse(_view(found), headers={"ETag": etag(found["draft_revision"])})

    @router.get("/{journey_id}/versions/{version}", summary="One published version's definition")
    def get_version(
        state: State, journey_id: str, version: Annotated[int, Path(ge=1, le=INT32_MAX)], workspace_id: Workspace
    ) -> Any:
        def read(conn: Connection) -> tuple[Any, Any]:
            info = store.get_journey(conn, workspace_id, journey_id)
            return info, store.load_version(conn, workspace_id, journey_id, version)

        info, journey = _read(state, read)
        if info is None or journey is None:
            return JSONResponse({"detail": f"no version {version} of journey {journey_id!r}"}, 404)
        published = next(v["published_at_ms"] for v in info["versions"] if v["version"] == version)
        return {
            "id": journey_id,
            "version": version,
            "live": info["live_version"] == version,
            "published_at": iso(published, milliseconds=False),
            "definition": journey.model_dump(mode="json", by_alias=True),
        }

    @router.put("/{journey_id}", summary="Create or update a journey's draft (JSON or YAML body)")
    @_answering
    async def put_journey(
        request: Request,
        state: State,
        journey_id: str,
        workspace_id: Workspace,
        publish: Annotated[bool, Query(description="Publish the draft once saved.")] = False,
    ) -> Any:
        """201 when created, 200 when updated; 422 with `problems` when the definition has
        errors (nothing is stored). A definition without `id` takes the URL's. With
        `If-Match` (the ETag of GET), only if the draft is still at that revision: 412 with
        `current_revision` otherwise; without it, the draft is replaced whatever its revision.
        With `If-None-Match: *`, only a new journey: 412 when the id is taken."""
        expected, new_only = expected_revision(request), create_only(request)
        documents = await _documents(request)
        if len(documents) != 1:
            raise _invalid([Problem("", f"send one journey per request, not {len(documents)}").as_dict()])
        if nul := nul_problems(documents):
            raise _invalid(nul)
        _, doc = documents[0]
        if isinstance(doc, dict):
            doc.setdefault("id", journey_id)
            if doc["id"] != journey_id:
                line = doc.line_of(("id",)) if hasattr(doc, "line_of") else None
                raise _invalid(
                    [
                        Problem(
                            "id", f"the definition's id {doc['id']!r} is not the URL's {journey_id!r}", line=line
                        ).as_dict()
                    ]
                )
        # Channels and templates too: a step that cannot be sent is refused now, not when it is due.
        journey, problems = check_journey(doc, _delivery(state, workspace_id))
        if journey is None:
            raise _invalid(problem_dicts(problems))
        now = _now(state)

        def apply(conn: Connection) -> tuple[bool, int | None, dict[str, Any] | None]:
            created = store.apply_draft(
                conn, workspace_id, journey, now, expected_revision=expected, create_only=new_only
            )
            version = store.publish(conn, workspace_id, journey_id, now) if publish else None
            return created, version, store.get_journey(conn, workspace_id, journey_id)

        created, version, info = await _write(state, apply)
        assert info is not None
        body = {
            "created": created,
            "published_version": version,
            "journey": _view(info),
            "warnings": problem_dicts([p for p in problems if p.severity == "warning"]),
        }
        return JSONResponse(body, 201 if created else 200, headers={"ETag": etag(info["draft_revision"])})

    @router.post("/{journey_id}/publish", summary="Freeze the draft as a new version and make it live")
    @_answering
    async def publish_journey(
        state: State,
        journey_id: str,
        workspace_id: Workspace,
        dry_run: Annotated[
            bool,
            Query(
                description="Publish nothing: count the people already known who would "
                "enter at once (`profiles`, `would_enter`)."
            ),
        ] = False,
        from_now: Annotated[bool, Query(description="No backfill: only what happens from now on counts.")] = False,
    ) -> dict[str, Any]:
        """A paused journey stays paused. An unchanged draft makes no new version
        (`new_version` false). A draft with errors, or whose channels or templates are not
        there, is refused with 422. A new version looks at the people already known in the
        background (`backfill` true) unless `from_now` is set (docs/journeys.md)."""
        now = _now(state)
        found = _read(state, lambda conn: store.get_journey(conn, workspace_id, journey_id))
        if found is not None:
            _journey, problems = check_journey(found["draft"], _delivery(state, workspace_id))
            if any(p.severity == "error" for p in problems):
                raise _invalid(
                    problem_dicts([p for p in problems if p.severity == "error"]),
                    f"journey {journey_id!r} cannot be published",
                )

        if dry_run:
            if found is None:
                raise store.JourneyNotFound(f"no journey {journey_id!r} in this workspace")
            # Reads every profile: off the event loop, on a connection of its own.
            seen = await asyncio.to_thread(_read, state, lambda conn: _preview(conn, workspace_id, found, now))
            return {
                "id": journey_id,
                "dry_run": True,
                "new_version": seen is not None,
                "profiles": seen.profiles if seen else 0,
                "would_enter": seen.entering if seen else 0,
            }

        def run(conn: Connection) -> tuple[int, bool, str]:
            before = store.get_journey(conn, workspace_id, journey_id)
            version = store.publish(conn, workspace_id, journey_id, now, backfill=not from_now)
            after = store.get_journey(conn, workspace_id, journey_id)
            assert before is not None and after is not None
            return version, before["live_version"] != version, after["status"]

        version, new, status = await _write(state, run)
        return {
            "id": journey_id,
            "version": version,
            "new_version": new,
            "status": status,
            "backfill": new and not from_now,
        }

    def _transition(action: Callable[[Connection, str, str, int], store.Transition], summary: str, doc: str) -> None:
        @router.post(f"/{{journey_id}}/{action.__name__}", summary=summary, description=doc)
        @_answering
        async def transition(state: State, journey_id: str, workspace_id: Workspace) -> dict[str, Any]:
            now = _now(state)
            done = await _write(state, lambda conn: action(conn, workspace_id, journey_id, now))
            return {
                "id": done.journey_id,
                "status": done.status,
                "changed": done.changed,
                "runs_woken": done.runs_woken,
            }

        transition.__name__ = f"{action.__name__}_journey"

    @router.get(
        "/{journey_id}/experiments",
        summary="Experiment decisions: arms paused, winners routed to",
        description="The decisions the experiment evaluator made on the journey's experiment steps, oldest first, "
        "with when and why (docs/measurement.md, experiment automation). `all=true` includes cleared ones.",
    )
    def experiment_decisions(
        state: State,
        journey_id: Annotated[str, Path(max_length=80)],
        workspace_id: Workspace,
        all: Annotated[bool, Query(description="Cleared decisions too.")] = False,
    ) -> Any:
        def read(conn: Connection) -> list[decisions.Decision] | None:
            if store.status_of(conn, workspace_id, journey_id) is None:
                return None
            return decisions.listed(conn, workspace_id, journey_id, active_only=not all)

        found = _read(state, read)
        if found is None:
            return JSONResponse({"detail": f"no journey {journey_id!r} in this workspace"}, 404)
        return {"journey_id": journey_id, "decisions": [_decision_view(d) for d in found]}

    @router.post(
        "/{journey_id}/experiments/{step}/resume",
        summary="Clear an experiment step's decisions",
        description="Paused arms take new runs again and a routed winner no longer takes them all, from the "
        "engine's next batch; the decisions are kept, marked cleared. The evaluator does not make a cleared "
        "decision again on that version. 404 when the step never had a decision.",
    )
    async def resume_experiment(
        state: State,
        journey_id: Annotated[str, Path(max_length=80)],
        step: Annotated[str, Path(max_length=100)],
        workspace_id: Workspace,
        arm: Annotated[str | None, Query(max_length=100, description="Only this arm's decision.")] = None,
        version: Annotated[int | None, Query(ge=1, le=INT32_MAX, description="Only this version's.")] = None,
    ) -> Any:
        now = _now(state)
        note = "resumed through the admin API"
        try:
            cleared = await _write(
                state,
                lambda conn: decisions.resume(
                    conn, workspace_id, journey_id, step, now, note, version=version, arm=arm
                ),
            )
        except decisions.DecisionError as exc:
            return JSONResponse({"detail": str(exc)}, 404)
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        return {"journey_id": journey_id, "step": step, "cleared": [_decision_view(d) for d in cleared]}

    _transition(
        store.pause,
        "Stop new entries; runs in progress are held",
        "Pausing a paused journey changes nothing (`changed` false). 409 for a draft or an archived journey.",
    )
    _transition(
        store.resume,
        "Go live again; held runs continue",
        "Each held run gets a timer due now (`runs_woken`). 409 for a draft or an archived journey.",
    )
    _transition(
        store.archive,
        "Retire the journey for good",
        "Nothing enters any more, runs end, and the journey can no longer be changed or published.",
    )

    return router
