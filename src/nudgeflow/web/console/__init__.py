"""The web console: server-rendered pages (Jinja2, autoescaped) with small scripts, served
by `serve` at `/`. Every change a page makes goes through the admin API (/api/...) with the
session cookie and its CSRF token; pages read through store/.

Each area is a module here with a module-level `router() -> APIRouter`, listed in
PAGE_MODULES; console_router() includes them all, the sign-in pages and /console/static/.
docs/console.md describes the pages.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

# The page modules, by name under nudgeflow.web.console: a helper adding an area adds its line.
PAGE_MODULES: list[str] = [
    "overview",  # /
    "reports",  # /journeys/{id}/report
    "settings",  # /settings/...
    "people",  # /people, /people/{ref}
    "message_templates",  # /templates, /templates/{name}
    "segments",  # /segments, /segments/{id}
    "users",  # /users, /api/console/users
    "audit",  # /audit
    "account",  # /account: your own password
    "journeys",  # /journeys, /journeys/{id}, its versions and YAML
]


def console_router() -> APIRouter:
    from nudgeflow.web.console.sign_in import sign_in_router
    from nudgeflow.web.console.static import static_router

    router = APIRouter(include_in_schema=False)
    router.include_router(static_router())
    router.include_router(sign_in_router())
    for name in PAGE_MODULES:
        module = importlib.import_module(f"nudgeflow.web.console.{name}")
        router.include_router(module.router())
    return router


def refused_page(request: Request, exc: Exception) -> Response:
    """The answer to a page a role may not open (auth.PageRefused): a 403 page for a
    browser, the usual JSON for anything else."""
    from nudgeflow.web.console.auth import PageRefused
    from nudgeflow.web.console.render import page

    assert isinstance(exc, PageRefused)
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return page(request, exc.user, "refused.html", title="Not allowed", status_code=403, message=exc.detail)
    return JSONResponse({"detail": exc.detail}, status_code=403)
