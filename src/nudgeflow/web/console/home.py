"""`/` until the overview page module (which serves "/") is installed: the workspace and
the console's areas."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from nudgeflow.web.console.auth import Viewer
from nudgeflow.web.console.render import nav_for, page


def home_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def home(request: Request, user: Viewer) -> HTMLResponse:
        areas = [item for item in nav_for(user, "/") if item["href"] != "/"]
        return page(request, user, "home.html", title="Overview", areas=areas)

    return router
