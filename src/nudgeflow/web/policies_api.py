"""The admin API for send policies: the same document and checks as `nudgeflow policies …`.

    GET  /api/policies                    the policies in force, their version, when and by whom
    PUT  /api/policies                    a new document (JSON, or YAML with Content-Type: application/yaml)
    GET  /api/policies/history            the versions, newest first
    GET  /api/policies/versions/{n}       one earlier version
    GET  /api/policies/schema             the JSON Schema of policies.yaml

A document with errors is answered 422 with every problem (path, message, line) and is not
stored. A document that means what the policies in force mean stores no new version
(`changed` false). The engine picks a new version up at its next batch, no restart.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from nudgeflow.core.clock import to_ms
from nudgeflow.ingest.auth import bearer_token
from nudgeflow.model.iso_time import iso
from nudgeflow.model.journey_checks import DocumentError, Problem, load_text
from nudgeflow.model.nul import NUL_MESSAGE, nul_path
from nudgeflow.model.policies import EMPTY, Policies, policies_json_schema
from nudgeflow.model.policy_checks import check_policies_documents
from nudgeflow.store import policies as store
from nudgeflow.store.group_commit import WriterStopped
from nudgeflow.web.admin import INT32_MAX, Workspace
from nudgeflow.web.state import AppState, State

MAX_DOCUMENT_BYTES = 256 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _invalid(problems: list[Problem], detail: str = "invalid send policies") -> JSONResponse:
    return JSONResponse({"detail": detail, "problems": [p.as_dict() for p in problems]}, 422)


def _view(found: store.StoredPolicies | None) -> dict[str, Any]:
    """The policies in force (defaults spelled out), with their version; version 0: none applied."""
    policies = found.policies if found is not None else EMPTY
    return {
        "version": found.version if found is not None else 0,
        "updated_at": iso(found.created_at_ms, milliseconds=False) if found is not None else None,
        "updated_by": found.created_by if found is not None else None,
        "policies": policies.model_dump(mode="json", by_alias=True, exclude={"schema_"}),
    }


def _author(request: Request) -> str:
    """Who applied a version: the admin token, by its hint (its first 8 characters, as
    `workspace keys list` shows them), never the token; or the console user's email (the
    caller as admin_workspace named it, web/access.py)."""
    actor = getattr(request.state, "actor", None)
    if isinstance(actor, str) and actor:
        return f"api ({actor})"
    token = bearer_token(request.headers.get("authorization")) or ""
    return f"api (admin token {token[:8]}…)"


def _read(state: AppState, workspace_id: str, version: int | None = None) -> store.StoredPolicies | None:
    with state.engine.connect() as conn:
        return store.get(conn, workspace_id, version)


def _checked(text: str, kind: Literal["yaml", "json"]) -> tuple[Policies | None, list[Problem]]:
    """The document's policies, or None and its problems."""
    try:
        documents = load_text(text, kind)
    except DocumentError as exc:
        return None, [Problem("", str(exc), line=exc.line)]
    for _index, doc in documents:
        found = nul_path(doc)
        if found is not None:  # PostgreSQL text cannot hold a NUL character
            return None, [Problem(found, NUL_MESSAGE)]
    return check_policies_documents(documents)


def policies_router() -> APIRouter:
    router = APIRouter(prefix="/api/policies", tags=["policies"])

    @router.get("/schema", summary="The JSON Schema of policies.yaml")
    def schema(workspace_id: Workspace) -> dict[str, Any]:
        return policies_json_schema()

    @router.get("/history", summary="The versions of the workspace's policies, newest first")
    def history(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            versions = store.history(conn, workspace_id)
        return {
            "versions": [
                {
                    "version": v["version"],
                    "updated_at": iso(v["created_at_ms"], milliseconds=False),
                    "updated_by": v["created_by"],
                }
                for v in versions
            ]
        }

    @router.get("/versions/{version}", summary="One version of the workspace's policies")
    def get_version(state: State, version: Annotated[int, Path(ge=1, le=INT32_MAX)], workspace_id: Workspace) -> Any:
        found = _read(state, workspace_id, version)
        if found is None:
            return JSONResponse({"detail": f"no version {version} of the workspace's policies"}, 404)
        return {**_view(found), "source": found.source}

    @router.get("", summary="The send policies in force: document, version, when and by whom")
    def get_policies(state: State, workspace_id: Workspace) -> dict[str, Any]:
        """`version` 0 (and no `updated_at`) when none were ever applied: nothing is capped,
        deferred or dropped. `source` is the document as it was sent."""
        found = _read(state, workspace_id)
        return {**_view(found), "source": found.source if found is not None else None}

    @router.put("", summary="Replace the send policies (JSON, or YAML with Content-Type: application/yaml)")
    async def put_policies(request: Request, state: State, workspace_id: Workspace) -> Any:
        """200 with the new `version` (`changed` true), or the one in force when the document
        means the same (`changed` false); 422 with `problems` when it has errors (nothing is
        stored)."""
        body = await request.body()
        if len(body) > MAX_DOCUMENT_BYTES:
            return JSONResponse({"detail": f"a policies document is at most {MAX_DOCUMENT_BYTES} bytes"}, 413)
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        kind: Literal["yaml", "json"] = "yaml" if content_type in YAML_TYPES else "json"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _invalid([Problem("", "the body is not UTF-8 text")])
        if not text.strip():
            return _invalid([Problem("", f"the body is empty: send the policies as {kind.upper()} ({{}} for none)")])
        # In a worker thread: reading and checking a large document takes seconds, which on
        # the event loop every other request (/healthz, ingest) would wait out.
        policies, problems = await run_in_threadpool(_checked, text, kind)
        if policies is None:
            return _invalid(problems)
        now, author = to_ms(state.clock.now()), _author(request)

        def apply(conn: Connection) -> tuple[store.PutResult, store.StoredPolicies | None]:
            done = store.put(conn, workspace_id, policies, text, author, now)
            return done, store.get(conn, workspace_id)

        try:
            done, current = await state.committer.run_job(apply)
        except store.PolicyConflict as exc:
            return JSONResponse({"detail": str(exc)}, 409)
        except WriterStopped:
            return JSONResponse({"detail": "the server is shutting down; try again"}, 503)
        return {"changed": done.changed, **_view(current)}

    return router
