"""/users (admins): the workspace's console users; and their API, /api/console/users, which
the page calls (admin only: web/access.py; audited: web/audit.py).

A password an admin sets for someone (a new user, a reset) is made by the server, shown in
that one answer, and never again: the admin hands it over, and the user's sessions end.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from nudgeflow.core.clock import to_ms
from nudgeflow.store import console_users as store
from nudgeflow.web import audit
from nudgeflow.web.admin import Workspace
from nudgeflow.web.console.auth import Admin
from nudgeflow.web.console.render import page
from nudgeflow.web.state import State

Role = Literal["viewer", "editor", "admin"]


class NewUser(BaseModel):
    email: str = Field(max_length=320)
    role: Role = "viewer"


class UserChange(BaseModel):
    role: Role | None = None
    disabled: bool | None = None


def made_password() -> str:
    """A password for someone else to type once: 20 characters from a 64-letter alphabet."""
    return secrets.token_urlsafe(15)


def view(user: store.ConsoleUserRow) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "disabled": user.disabled,
        "created_at_ms": user.created_at_ms,
    }


def _not_yourself(request: Request, user_id: str, what: str) -> None:
    me = getattr(request.state, "console_user", None)
    if me is not None and me.user_id == user_id:
        raise HTTPException(409, f"you cannot {what} yourself: another admin can")


def router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/users")
    def users_page(request: Request, state: State, user: Admin) -> HTMLResponse:
        with state.engine.connect() as conn:
            users = [view(u) for u in store.list_users(conn, user.workspace_id)]
        return page(request, user, "users.html", title="Users", users=users, roles=store.ROLES)

    api = APIRouter(prefix="/api/console/users", tags=["console"])

    @api.get("", summary="The workspace's console users")
    def list_users(state: State, workspace_id: Workspace) -> dict[str, Any]:
        with state.engine.connect() as conn:
            return {"users": [view(u) for u in store.list_users(conn, workspace_id)]}

    @api.post("", status_code=201, summary="Add a console user; their first password is in this answer only")
    def create_user(request: Request, state: State, body: NewUser, workspace_id: Workspace) -> dict[str, Any]:
        password = made_password()
        try:
            with state.engine.begin() as conn:
                made = store.create_user(conn, workspace_id, body.email, body.role, password, to_ms(state.clock.now()))
        except store.ConsoleUserError as exc:
            raise HTTPException(422, str(exc)) from None
        audit.created(request, f"/api/console/users/{made.id}", "/api/console/users/{user_id}", {"user_id": made.id})
        return {**view(made), "password": password}

    def _user(state: Any, workspace_id: str, user_id: str) -> store.ConsoleUserRow:
        with state.engine.connect() as conn:
            found = store.get_user(conn, workspace_id, user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id!r} in this workspace")
        return found

    @api.patch("/{user_id}", summary="Change a user's role, or disable (signing them out) or enable them")
    def change_user(
        request: Request, state: State, user_id: str, body: UserChange, workspace_id: Workspace
    ) -> dict[str, Any]:
        found = _user(state, workspace_id, user_id)
        if body.role is not None and body.role != store.ADMIN:
            _not_yourself(request, user_id, "demote")
        if body.disabled:
            _not_yourself(request, user_id, "disable")
        now = to_ms(state.clock.now())
        with state.engine.begin() as conn:
            if body.role is not None:
                store.set_role(conn, workspace_id, found.id, body.role)
            if body.disabled is not None:
                store.set_disabled(conn, workspace_id, found.id, body.disabled, now)
        return view(_user(state, workspace_id, user_id))

    @api.post(
        "/{user_id}/reset-password",
        summary="A new password for the user, in this answer only; their sessions end",
    )
    def reset_password(state: State, user_id: str, workspace_id: Workspace) -> dict[str, Any]:
        found = _user(state, workspace_id, user_id)
        password = made_password()
        with state.engine.begin() as conn:
            ended = store.set_password(conn, workspace_id, found.id, password, to_ms(state.clock.now()))
        return {**view(found), "password": password, "sessions_ended": ended}

    router.include_router(api)
    return router
