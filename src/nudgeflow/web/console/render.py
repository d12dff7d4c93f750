"""Rendering a console page: a Jinja2 template (autoescaped) extending base.html, with the
navigation, the user, the CSRF token and security headers.

Pages allow scripts from the server only (Content-Security-Policy script-src 'self'): a
page's JavaScript lives in static/ files; data for it goes in data-* attributes or a
`<script type="application/json">` block. A script that must be inline carries
`nonce="{{ csp_nonce }}"`.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from importlib import resources
from typing import Any

from fastapi import HTTPException, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from nudgeflow.store.console_users import ADMIN, EDITOR, VIEWER
from nudgeflow.web.access import ConsoleUser

# (label, path, the role that sees the link). Pages check the role themselves; hiding a
# link is only tidiness.
NAV: tuple[tuple[str, str, str], ...] = (
    ("Overview", "/", VIEWER),
    ("Journeys", "/journeys", VIEWER),
    ("Templates", "/templates", VIEWER),
    ("Segments", "/segments", VIEWER),
    ("People", "/people", VIEWER),
    ("Settings", "/settings", VIEWER),
    ("Users", "/users", ADMIN),
    ("Audit", "/audit", EDITOR),
)


def security_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'self'; object-src 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@functools.cache
def static_version(path: str) -> str:
    """A short digest of a static file, appended to its URL so a new release is fetched anew."""
    try:
        data = resources.files("nudgeflow.web.console").joinpath("static", *path.split("/")).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "0"
    return hashlib.sha256(data).hexdigest()[:10]


def static_url(path: str) -> str:
    return f"/console/static/{path}?v={static_version(path)}"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("nudgeflow.web.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    return env


def nav_for(user: ConsoleUser | None, path: str) -> list[dict[str, Any]]:
    if user is None:
        return []
    return [
        {
            "label": label,
            "href": href,
            "current": path == href if href == "/" else path == href or path.startswith(href + "/"),
        }
        for label, href, role in NAV
        if user.may(role)
    ]


def page(
    request: Request, user: ConsoleUser | None, template: str, *, title: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page `template` (under web/console/templates/) for this user."""
    nonce = secrets.token_urlsafe(16)
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            user=user,
            title=title,
            nav=nav_for(user, request.url.path),
            csrf_token=user.csrf_token if user else "",
            csp_nonce=nonce,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=security_headers(nonce))


ERROR_TITLES = {400: "Bad request", 404: "Not found"}


def error_page(request: Request, user: ConsoleUser, exc: HTTPException, *, back: tuple[str, str]) -> HTMLResponse:
    """A page route's refusal (a journey that is not there, a bad query) as a page with the
    navigation, not the admin API's JSON: a browser follows links to these. `back` is the
    (href, label) of the list to go back to."""
    return page(
        request,
        user,
        "error.html",
        title=ERROR_TITLES.get(exc.status_code, "Not available"),
        status_code=exc.status_code,
        detail=str(exc.detail),
        back_href=back[0],
        back_label=back[1],
    )
