"""/account (every signed-in user): change your own password, e.g. the one an admin made
for you. It needs the current password; every session of yours ends, this one included.

A wrong current password is a failed sign-in of the email (web/console/sign_in.py's limit, 5
in 15 minutes, shared with the sign-in form): a session is not a way to guess its user's
password at the server's speed (it was unlimited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from nudgeflow.core.clock import to_ms
from nudgeflow.store import audit_log
from nudgeflow.store import console_users as store
from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import page
from nudgeflow.web.console.sign_in import PER_EMAIL, SignInLimiter
from nudgeflow.web.state import State


class PasswordChange(BaseModel):
    current: str = Field(max_length=store.MAX_PASSWORD)
    new: str = Field(max_length=store.MAX_PASSWORD)


def router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/account")
    def account_page(request: Request, user: Viewer) -> HTMLResponse:
        return page(request, user, "account.html", title="Your account", minimum=store.MIN_PASSWORD)

    @router.post("/account/password")
    def change_password(state: State, user: Viewer, body: PasswordChange) -> dict[str, Any]:
        if user.user_id is None:
            raise HTTPException(409, "you signed in with an admin token, which has no password to change")
        limits = SignInLimiter(state.engine, state.clock)
        begun, wait = limits.begin({f"email:{user.email}": PER_EMAIL})  # a failure until it is right
        if wait:
            detail = f"too many wrong passwords: try again in {max(1, wait // 60)} minute(s)"
            raise HTTPException(429, detail, {"Retry-After": str(wait)})
        with state.engine.connect() as conn:
            found = [hashed for u, hashed in store.users_by_email(conn, user.email) if u.id == user.user_id]
        if not found or not store.password_matches(found[0], body.current):
            raise HTTPException(403, "the current password is wrong")
        limits.forget(begun)
        now = to_ms(state.clock.now())
        try:
            with state.engine.begin() as conn:
                ended = store.set_password(conn, user.workspace_id, user.user_id, body.new, now)
                audit_log.record(conn, user.workspace_id, user.actor, "change-password", "/account", None, None, now)
        except store.ConsoleUserError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"sessions_ended": ended}

    return router
