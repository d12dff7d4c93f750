"""/sign-in and /sign-out: a console user's email and password, or an admin token, opens a
session (a random token in an HttpOnly, SameSite=Lax cookie, Secure over https).

The sign-in form carries its own CSRF token (a cookie and a hidden field that must match),
so another site cannot sign a browser into an account of its choosing. Failed sign-ins are
limited per email and per client address (SignInLimiter), on the app's clock, counted in the
database (store/sign_in_failures.py) so that the limit holds across serving processes.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlalchemy import Connection, Engine
from starlette.responses import RedirectResponse, Response

from nudgeflow.core.clock import Clock, to_ms
from nudgeflow.store import audit_log, console_sessions, sign_in_failures
from nudgeflow.store import console_users as user_store
from nudgeflow.store.workspaces import ADMIN, key_digest
from nudgeflow.web.access import SESSION_COOKIE, console_session, token_actor
from nudgeflow.web.body_limits import FORM_MAX_FIELDS, FORM_MAX_PART
from nudgeflow.web.console.render import page
from nudgeflow.web.state import AppState, State

SIGN_IN_COOKIE = "nf_sign_in"
WINDOW_MS = 15 * 60 * 1000
PER_EMAIL = 5  # failed sign-ins per email in the window
PER_ADDRESS = 30  # failed sign-ins per client address in the window (token sign-ins included)
# Ended sessions (revoked, or idle past the limit) are kept this long after they could last
# have been used, then deleted when someone signs in: a deleted session cannot open either.
KEEP_ENDED_MS = 7 * 24 * 3_600_000


class SignInLimiter:
    """Failed sign-ins per key (an email, a client address) in a sliding window, kept in the
    database: every process serving the console on it counts the same failures.

    A sign-in counts as failed from the moment it begins (`begin`), and is taken back when it
    is refused or succeeds (`forget`): sign-ins sent at the same moment each see the others,
    and cannot all be checked against a count that none of them has added to yet."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def begin(self, keys: dict[str, int]) -> tuple[list[int], int]:
        """Count a sign-in for these keys (key -> its limit) as failed until told otherwise:
        (its rows, 0), or ([], seconds until one may be tried) when a key is at its limit."""
        now = to_ms(self.clock.now())
        with self.engine.begin() as conn:  # committed before the count: others in flight see it
            rows = sign_in_failures.begin(conn, keys, WINDOW_MS, now)
        with self.engine.connect() as conn:
            wait_ms = sign_in_failures.retry_after_ms(conn, keys, WINDOW_MS, now, own=1)
        if wait_ms:
            self.forget(rows)  # a refused sign-in tried nothing: it does not prolong the wait
            return [], -(-wait_ms // 1000)
        return rows, 0

    def forget(self, rows: list[int]) -> None:
        """The begun sign-in did not fail (it succeeded, or needs the workspace named)."""
        with self.engine.begin() as conn:
            sign_in_failures.forget(conn, rows)


def secure_cookies(request: Request, state: AppState) -> bool:
    """Cookies are Secure when the browser reached us over https (directly, or as the
    server's public URL says, behind a proxy that ends TLS)."""
    return request.url.scheme == "https" or (state.settings.public_url or "").startswith("https://")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never //host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 for c in target):
        return "/"
    return target


def sign_in_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def limiter(state: AppState) -> SignInLimiter:
        return SignInLimiter(state.engine, state.clock)

    def form(
        request: Request,
        state: AppState,
        *,
        error: str = "",
        status_code: int = 200,
        email: str = "",
        ask_workspace: bool = False,
        next_path: str = "/",
        headers: dict[str, str] | None = None,
    ) -> Response:
        token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(24)
        response = page(
            request,
            None,
            "sign_in.html",
            title="Sign in",
            status_code=status_code,
            error=error,
            email=email,
            ask_workspace=ask_workspace,
            next_path=next_path,
            form_token=token,
        )
        response.set_cookie(
            SIGN_IN_COOKIE, token, httponly=True, samesite="lax", secure=secure_cookies(request, state), path="/"
        )
        response.headers.update(headers or {})
        return response

    def replace_session(request: Request, state: AppState, conn: Connection, now: int) -> None:
        """A new session ends the browser's previous one (signing in as someone else), and
        clears out sessions that can never open again."""
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:
            console_sessions.revoke_session(conn, previous, now)
        idle_ms = int(state.settings.console_idle_minutes * 60_000)
        console_sessions.forget_stale_sessions(conn, now, idle_ms + KEEP_ENDED_MS)

    def signed_in(request: Request, state: AppState, new: console_sessions.NewSession, next_path: str) -> Response:
        response = RedirectResponse(safe_next(next_path), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            new.token,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request, state),
            path="/",
        )
        response.delete_cookie(SIGN_IN_COOKIE, path="/")
        return response

    @router.get("/sign-in")
    def sign_in_page(request: Request, state: State, next: str = "/") -> Response:
        if console_session(request, state) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return form(request, state, next_path=safe_next(next))

    # No file, few fields, short ones: the body is bounded before this (web/body_limits.py).
    @router.post(
        "/sign-in", form_limits={"max_files": 0, "max_fields": FORM_MAX_FIELDS, "max_part_size": FORM_MAX_PART}
    )
    def sign_in(
        request: Request,
        state: State,
        form_token: Annotated[str, Form()] = "",
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=user_store.MAX_PASSWORD)] = "",
        workspace: Annotated[str, Form(max_length=40)] = "",
        admin_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        next_path = safe_next(next)
        cookie = request.cookies.get(SIGN_IN_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), form_token.encode()):
            return form(
                request,
                state,
                error="The sign-in form expired. Please try again.",
                status_code=403,
                next_path=next_path,
            )
        address = request.client.host if request.client else "unknown"
        email = email.strip().lower()
        keys = {f"address:{address}": PER_ADDRESS}
        if not admin_token:
            keys[f"email:{email}"] = PER_EMAIL
        limits = limiter(state)
        begun, wait = limits.begin(keys)  # counted as failed until it succeeds
        if wait:
            return form(
                request,
                state,
                error=f"Too many failed sign-ins. Try again in {max(1, wait // 60)} minute(s).",
                status_code=429,
                email=email,
                next_path=next_path,
                headers={"Retry-After": str(wait)},
            )
        now = to_ms(state.clock.now())
        if admin_token:
            workspace_id = state.keys.workspace_sync(ADMIN, admin_token.strip())
            if workspace_id is None:
                return form(request, state, error="Unknown admin token.", status_code=401, next_path=next_path)
            token = admin_token.strip()
            limits.forget(begun)
            with state.engine.begin() as conn:
                replace_session(request, state, conn, now)
                new = console_sessions.open_session(
                    conn, workspace_id, now, admin_key_hash=key_digest(token), admin_key_hint=token[:8]
                )
                audit_log.record(conn, workspace_id, token_actor(token), "sign-in", "/sign-in", None, None, now)
            return signed_in(request, state, new, next_path)
        with state.engine.connect() as conn:
            candidates = user_store.users_by_email(conn, email)
        if workspace.strip():
            candidates = [c for c in candidates if c[0].workspace_id == workspace.strip()]
        if not candidates:
            user_store.burn_a_hash(password)
        matching = [user for user, hashed in candidates if user_store.password_matches(hashed, password)]
        if not matching:
            return form(
                request,
                state,
                error="Wrong email or password.",
                status_code=401,
                email=email,
                ask_workspace=bool(workspace),
                next_path=next_path,
            )
        limits.forget(begun)  # the password was right
        if len(matching) > 1:
            return form(
                request,
                state,
                error="This email signs in to several workspaces: give the workspace id too.",
                status_code=400,
                email=email,
                ask_workspace=True,
                next_path=next_path,
            )
        with state.engine.begin() as conn:
            replace_session(request, state, conn, now)
            new = console_sessions.open_session(conn, matching[0].workspace_id, now, user_id=matching[0].id)
            audit_log.record(conn, matching[0].workspace_id, matching[0].email, "sign-in", "/sign-in", None, None, now)
        return signed_in(request, state, new, next_path)

    @router.get("/sign-out")
    def sign_out_page(request: Request, state: State) -> Response:
        user = console_session(request, state)
        if user is None:
            return RedirectResponse("/sign-in", status_code=303)
        return page(request, user, "sign_out.html", title="Sign out")

    @router.post(
        "/sign-out", form_limits={"max_files": 0, "max_fields": FORM_MAX_FIELDS, "max_part_size": FORM_MAX_PART}
    )
    def sign_out(request: Request, state: State, csrf_token: Annotated[str, Form()] = "") -> Response:
        user = console_session(request, state)
        if user is not None:
            if not hmac.compare_digest(csrf_token.encode(), user.csrf_token.encode()):
                return page(
                    request,
                    user,
                    "sign_out.html",
                    title="Sign out",
                    status_code=403,
                    error="The form expired. Please try again.",
                )
            now = to_ms(state.clock.now())
            with state.engine.begin() as conn:
                console_sessions.revoke_session(conn, request.cookies.get(SESSION_COOKIE, ""), now)
                audit_log.record(conn, user.workspace_id, user.actor, "sign-out", "/sign-out", None, None, now)
        response = RedirectResponse("/sign-in", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router
