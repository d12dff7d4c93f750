"""The console pages' dependencies: `user: Viewer` (or Editor, Admin) in a page's parameters
gives the signed-in ConsoleUser, having checked the role on the server.

With no live session, a page GET is redirected to /sign-in (and comes back after), anything
else is a 401. Too low a role is a 403. A page route that is not a read also needs the
session's X-CSRF-Token header (pages change things through the admin API, which checks the
same; web/access.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from nudgeflow.errors import WebError
from nudgeflow.store.console_users import ADMIN, EDITOR, VIEWER
from nudgeflow.web.access import CSRF_HEADER, SAFE_METHODS, ConsoleUser, console_session, csrf_ok
from nudgeflow.web.state import State

__all__ = ["Admin", "ConsoleUser", "Editor", "PageRefused", "Viewer", "sign_in_location"]


class PageRefused(HTTPException, WebError):
    """A signed-in user's role is too low for a page: a 403 that a browser shows as a page
    (with the navigation), answered by `refused_page` (create_app registers it)."""

    def __init__(self, user: ConsoleUser, detail: str) -> None:
        super().__init__(403, detail)
        self.user = user


def sign_in_location(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/sign-in" if here == "/" else f"/sign-in?next={quote(here, safe='')}"


def _signed_in(minimum: str) -> Callable[[Request, State], ConsoleUser]:
    def dependency(request: Request, state: State) -> ConsoleUser:
        user = console_session(request, state)
        if user is None:
            if request.method in ("GET", "HEAD"):
                raise HTTPException(303, "sign in first", headers={"Location": sign_in_location(request)})
            raise HTTPException(401, "sign in to the console first")
        if request.method not in SAFE_METHODS and not csrf_ok(request, user):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header: reload the page and try again")
        if not user.may(minimum):
            raise PageRefused(user, f"This page needs the {minimum} role; {user.email} is {user.role}.")
        return user

    dependency.__name__ = f"console_{minimum}"
    return dependency


Viewer = Annotated[ConsoleUser, Depends(_signed_in(VIEWER))]
Editor = Annotated[ConsoleUser, Depends(_signed_in(EDITOR))]
Admin = Annotated[ConsoleUser, Depends(_signed_in(ADMIN))]
