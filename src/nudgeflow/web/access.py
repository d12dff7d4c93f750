"""Who is calling the admin API: an admin token, or a signed-in console session, and what
a session's role lets it do.

The admin API (`Workspace` in web/admin.py) takes either. A bearer admin token acts as an
admin. A console session (the `nf_session` cookie, web/console/) acts with its user's
role, and every request that may change something must carry the session's CSRF token in
the X-CSRF-Token header: a page of another site can make the browser send the cookie, but
cannot read the token. Roles, enforced here on the server, never only by hiding a button:

- viewer: reads (GET and HEAD, and the POSTs that only compute: validate, preview);
- editor: every change except users, keys and secrets (ADMIN_ONLY);
- admin: everything.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request
from starlette.routing import BaseRoute

from nudgeflow.core.clock import to_ms
from nudgeflow.store import console_sessions
from nudgeflow.store.console_users import ADMIN, EDITOR, VIEWER, role_rank
from nudgeflow.web.state import AppState

SESSION_COOKIE = "nf_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# POSTs that change nothing: they check or render what they are sent. A viewer may call them.
READ_ONLY = frozenset(
    {
        ("POST", "/api/journeys/validate"),
        ("POST", "/api/segments/validate"),
        ("POST", "/api/templates/{name}/render"),
        ("POST", "/api/templates/{name}/preview"),
    }
)

# Changes only an admin may make: users, keys and secrets (SMTP and DKIM, push credentials,
# webhook destinations and their signing secret, identity-verification secrets). A route is
# named by its method and path template; tests/console/test_roles.py checks each exists.
ADMIN_ONLY = frozenset(
    {
        ("POST", "/api/keys"),
        ("DELETE", "/api/keys/{hint}"),
        ("POST", "/api/identity/enable"),
        ("POST", "/api/identity/disable"),
        ("POST", "/api/identity/rotate"),
        ("POST", "/api/identity/finish-rotation"),
        ("PUT", "/api/settings/smtp"),
        ("DELETE", "/api/settings/smtp"),
        ("PUT", "/api/settings/webpush"),
        ("POST", "/api/settings/webpush/rotate"),
        ("PUT", "/api/settings/fcm"),
        ("DELETE", "/api/settings/fcm"),
        ("PUT", "/api/settings/apns"),
        ("DELETE", "/api/settings/apns"),
        ("PUT", "/api/settings/webhooks/destinations/{name}"),
        ("DELETE", "/api/settings/webhooks/destinations/{name}"),
        ("POST", "/api/settings/webhooks/secret"),
        # Erasing a person cannot be undone (docs/console.md, People).
        ("DELETE", "/api/profiles/{ref:path}"),
    }
)
# Every route under these prefixes needs an admin, reads included (the users' list).
ADMIN_ONLY_PREFIXES = ("/api/console/users",)


@dataclass(frozen=True)
class ConsoleUser:
    """Who a console session is: a user, or someone who signed in with an admin token
    (user_id None, role admin)."""

    user_id: str | None
    email: str  # the user's email; for an admin token, "admin token nfa_xxxx…"
    workspace_id: str
    role: str  # viewer | editor | admin
    csrf_token: str

    @property
    def actor(self) -> str:
        """How the audit log names them."""
        return self.email

    def may(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)


def token_actor(token: str) -> str:
    """How the audit log names a caller with an admin token: its hint, never the token."""
    return f"admin token {token[:8]}…"


def route_template(request: Request) -> str:
    route = request.scope.get("route")
    return route.path if isinstance(route, BaseRoute) and hasattr(route, "path") else request.url.path


def required_role(method: str, template: str) -> str:
    """The role a session needs to call this route of the admin API."""
    if template.startswith(ADMIN_ONLY_PREFIXES):
        return ADMIN
    if method in SAFE_METHODS or (method, template) in READ_ONLY:
        return VIEWER
    if (method, template) in ADMIN_ONLY:
        return ADMIN
    return EDITOR


def console_session(request: Request, state: AppState) -> ConsoleUser | None:
    """The signed-in console user of this request (its cookie), or None; once per request."""
    if hasattr(request.state, "console_user"):
        found: ConsoleUser | None = request.state.console_user
        return found
    user = None
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) < 200:
        now = to_ms(state.clock.now())
        idle_ms = int(state.settings.console_idle_minutes * 60_000)
        with state.engine.connect() as conn:
            live = console_sessions.live_session(conn, token, now, idle_ms)
        if live is not None:
            if now - live.last_seen_ms >= console_sessions.TOUCH_EVERY_MS:
                with state.engine.begin() as conn:
                    console_sessions.touch(conn, live.session_id, now)
            email = live.email or token_actor(live.admin_key_hint or "")
            user = ConsoleUser(live.user_id, email, live.workspace_id, live.role, live.csrf_token)
    request.state.console_user = user
    return user


def csrf_ok(request: Request, user: ConsoleUser) -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(sent) and hmac.compare_digest(sent.encode(), user.csrf_token.encode())


def check_session_request(request: Request, user: ConsoleUser) -> None:
    """A session's request to the admin API: the CSRF token for anything but a read, and
    the role the route needs (403 naming what is missing)."""
    method = request.method
    if method not in SAFE_METHODS and not csrf_ok(request, user):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header: reload the console page and try again")
    needed = required_role(method, route_template(request))
    if not user.may(needed):
        raise HTTPException(403, f"this needs the {needed} role; {user.email} is {user.role}")


def require_session_role(request: Request, role: str, what: str) -> None:
    """For a route where what the body asks decides the role needed: a console session's
    user below `role` is refused (403). A bearer admin token acts as an admin."""
    user = getattr(request.state, "console_user", None)
    if isinstance(user, ConsoleUser) and request.headers.get("authorization") is None and not user.may(role):
        raise HTTPException(403, f"{what} needs the {role} role; {user.email} is {user.role}")
