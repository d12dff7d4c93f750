"""The admin API: read, export and erase profiles, with a workspace's bearer admin token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from nudgeflow.core.clock import to_ms
from nudgeflow.ingest.auth import bearer_token
from nudgeflow.model.nul import NUL_MESSAGE
from nudgeflow.store import outbox
from nudgeflow.store import profiles as profile_store
from nudgeflow.store.privacy import erase_person, export_chunks, person_ids
from nudgeflow.store.workspaces import ADMIN
from nudgeflow.web import audit
from nudgeflow.web.access import SESSION_COOKIE, check_session_request, console_session, token_actor
from nudgeflow.web.state import AppState, State

# The range of a stored 64-bit integer (event seq, times): a cursor or number beyond it
# could not match anything, and the database driver refuses it rather than answering.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The range of a 32-bit column (journey and template versions).
INT32_MAX = 2**31 - 1


def reject_nul(request: Request) -> None:
    """Path and query values become text compared in SQL, and PostgreSQL text cannot hold
    a NUL character: refuse one as a 422 naming the parameter (as ingest does for ids)."""
    errors = [
        {"loc": (where, name), "msg": NUL_MESSAGE, "type": "value_error", "input": value}
        for where, items in (("path", request.path_params.items()), ("query", request.query_params.multi_items()))
        for name, value in items
        if isinstance(value, str) and "\x00" in value
    ]
    if errors:
        raise RequestValidationError(errors)


def admin_workspace(request: Request, state: State) -> str:
    """The workspace of the caller: a bearer admin token's (acting as an admin), or with no
    Authorization header, a console session's, with its CSRF token and role checked
    (web/access.py). request.state.actor names the caller for the audit log."""
    header = request.headers.get("authorization")
    if header is None and SESSION_COOKIE in request.cookies:
        user = console_session(request, state)
        if user is None:
            raise HTTPException(401, "the console session has ended (signed out or idle): sign in again")
        check_session_request(request, user)
        request.state.actor = user.actor
        reject_nul(request)
        audit.begin(request, state, user.workspace_id, user.actor)
        return user.workspace_id
    token = bearer_token(header)
    if token is None:
        raise HTTPException(401, "missing admin token: send Authorization: Bearer <admin token>")
    workspace_id = state.keys.workspace_sync(ADMIN, token)
    if workspace_id is None:
        raise HTTPException(401, "unknown admin token")
    request.state.actor = token_actor(token)
    reject_nul(request)  # after the token: an unauthenticated caller learns nothing but 401
    audit.begin(request, state, workspace_id, request.state.actor)
    return workspace_id


Workspace = Annotated[str, Depends(admin_workspace)]


class EventsPage(BaseModel):
    events: list[dict[str, Any]]
    next_before: int | None


class MessagesPage(BaseModel):
    messages: list[dict[str, Any]]
    next_before: int | None


class Erased(BaseModel):
    erased: str
    profile_ids: list[str]  # the person's and every profile merged into them (rows in older exports)
    deleted: dict[str, int]  # rows deleted per table
    hashed: dict[str, int]  # rows kept with the person's address replaced by a hash (suppressions)


def resolve_profile(state: AppState, workspace_id: str, ref: str) -> str:
    """The profile a path's `ref` names (a profile id, userId or anonymousId), else 404."""
    with state.engine.connect() as conn:
        profile_id = profile_store.resolve_profile_id(conn, workspace_id, ref)
    if profile_id is None:
        raise HTTPException(404, f"no profile with id, userId or anonymousId {ref!r}")
    return profile_id


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/api", tags=["admin"])

    @router.get("/profiles/{ref:path}/events", response_model=EventsPage, summary="A profile's events, newest first")
    def get_events(
        state: State,
        ref: str,
        workspace_id: Workspace,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[
            int | None, Query(ge=INT64_MIN, le=INT64_MAX, description="the next_before of the previous page")
        ] = None,
    ) -> EventsPage:
        profile_id = resolve_profile(state, workspace_id, ref)
        with state.engine.connect() as conn:
            page, cursor = profile_store.list_events(conn, profile_id, limit=limit, before=before)
        return EventsPage(events=page, next_before=cursor)

    @router.get(
        "/profiles/{ref:path}/messages",
        response_model=MessagesPage,
        summary="A profile's messages, newest first: status, and why one was not sent",
    )
    def get_messages(
        state: State,
        ref: str,
        workspace_id: Workspace,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[
            int | None, Query(ge=INT64_MIN, le=INT64_MAX, description="the next_before of the previous page")
        ] = None,
    ) -> MessagesPage:
        """Every message a journey decided for the person (and for profiles merged into them):
        `status` is pending, sent, logged, failed, suppressed, deferred or dropped; `reason`
        says why one was not sent (`frequency_cap:<rule>`, `quiet_hours`, `collision:<journey>`,
        `unsubscribed:<topic>`, `suppressed:<reason>`, `no_target`… docs/policies.md), `error`
        what went wrong with one that failed, `deferred_until` when a deferred one is decided again."""
        profile_id = resolve_profile(state, workspace_id, ref)
        with state.engine.connect() as conn:
            ids = person_ids(conn, workspace_id, profile_id)
            page, cursor = outbox.profile_messages(conn, workspace_id, ids, limit=limit, before=before)
        return MessagesPage(messages=page, next_before=cursor)

    @router.get(
        "/profiles/{ref:path}/export",
        summary="Everything held about the person, in one document",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    def export(state: State, ref: str, workspace_id: Workspace) -> StreamingResponse:
        """One JSON document (README, "Privacy: export and erasure"), streamed: the events,
        messages and logged messages are read and sent a chunk of rows at a time, so a person
        with years of history costs the server one chunk of memory, not the whole document."""
        profile_id = resolve_profile(state, workspace_id, ref)
        conn = state.engine.connect()  # held while the answer streams, closed at its end
        try:
            chunks = export_chunks(conn, workspace_id, profile_id)
        except BaseException:
            conn.close()
            raise
        if chunks is None:
            conn.close()
            raise HTTPException(404, f"no profile {ref!r}")

        def pieces() -> Iterator[bytes]:
            try:
                yield from chunks
            finally:
                conn.close()

        return StreamingResponse(pieces(), media_type="application/json")

    # `{ref:path}` lets ids contain '/'; the /events, /messages and /export routes are declared first
    # because a path parameter would also match them.
    @router.get("/profiles/{ref:path}", summary="A profile: traits, identities, event count, recent events")
    def get_profile(state: State, ref: str, workspace_id: Workspace) -> dict[str, Any]:
        """`ref` is a profile id, a userId or an anonymousId; a merged-away profile id finds the survivor."""
        profile_id = resolve_profile(state, workspace_id, ref)
        with state.engine.connect() as conn:
            profile = profile_store.get_profile(conn, workspace_id, profile_id)
        if profile is None:
            raise HTTPException(404, f"no profile {ref!r}")
        return profile

    @router.delete(
        "/profiles/{ref:path}",
        response_model=Erased,
        summary="Erase the person and all derived data (suppressions of their addresses are kept hashed)",
    )
    def erase(state: State, ref: str, workspace_id: Workspace) -> Erased:
        profile_id = resolve_profile(state, workspace_id, ref)
        now = to_ms(state.clock.now())
        done = state.committer.submit_job(lambda conn: erase_person(conn, workspace_id, profile_id, now)).result()
        if state.runtime is not None:  # the states this process's engine kept in memory
            state.runtime.forget_people(done.profile_ids)
        return Erased(erased=done.profile_id, profile_ids=done.profile_ids, deleted=done.deleted, hashed=done.hashed)

    @router.get("/stats", summary="What the workspace holds")
    def stats(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return profile_store.count_summary(conn, workspace_id)

    return router
