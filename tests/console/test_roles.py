"""Roles on the admin API, route by route: a viewer's session is refused every change, an
editor's every change to users, keys and secrets, and a session without the CSRF header
every change, whatever route a future change adds (the routes are read from the app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from nudgeflow.web.access import ADMIN_ONLY, READ_ONLY, SAFE_METHODS, required_role
from nudgeflow.web.admin import admin_workspace
from tests.console.support import ConsoleApp, app_routes


def uses(dependant: Any, call: Any) -> bool:
    return any(dep.call is call or uses(dep, call) for dep in dependant.dependencies)


def admin_api_routes(app: Any) -> list[tuple[str, str]]:
    return sorted((method, path) for method, path, route in app_routes(app) if uses(route.dependant, admin_workspace))


def filled(path: str) -> str:
    return path.replace("{", "x").replace("}", "").replace(":path", "")


def test_the_role_tables_name_routes_that_exist(console_app: ConsoleApp) -> None:
    routes = set(admin_api_routes(console_app.server.running.app))
    assert len(routes) > 40
    for entry in sorted(ADMIN_ONLY | READ_ONLY):
        assert entry in routes, entry


def test_a_viewer_is_refused_every_change(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    changes = [(m, p) for m, p in admin_api_routes(console_app.server.running.app) if required_role(m, p) != "viewer"]
    assert ("PUT", "/api/journeys/{journey_id}") in changes
    for method, path in changes:
        response = viewer.request(method, filled(path), json={})
        assert response.status_code == 403, (method, path, response.status_code, response.text)


def test_every_change_needs_the_csrf_header(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    admin = signed_in("admin")
    del admin.headers["X-CSRF-Token"]
    for method, path in admin_api_routes(console_app.server.running.app):
        if method in SAFE_METHODS:
            continue
        response = admin.request(method, filled(path), json={})
        assert response.status_code == 403, (method, path, response.status_code, response.text)
        assert "X-CSRF-Token" in response.json()["detail"]


def test_an_editor_is_refused_every_admin_only_route(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    editor = signed_in("editor")
    for method, path in admin_api_routes(console_app.server.running.app):
        if required_role(method, path) == "admin":
            response = editor.request(method, filled(path), json={})
            assert response.status_code == 403, (method, path, response.status_code, response.text)


def test_every_change_of_a_console_page_route_needs_the_csrf_header(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    """The console's own routes that are not reads (outside the admin API: /account/password,
    /journeys/graph, /journeys/edit, and whatever comes later) refuse a session without the
    token before doing anything."""
    admin = signed_in("admin")
    del admin.headers["X-CSRF-Token"]
    page_deps = {"console_viewer", "console_editor", "console_admin"}
    changes = [
        (method, path)
        for method, path, route in app_routes(console_app.server.running.app)
        if method not in SAFE_METHODS
        and {getattr(dep.call, "__name__", "") for dep in route.dependant.dependencies} & page_deps
    ]
    assert ("POST", "/account/password") in changes and ("POST", "/journeys/edit") in changes
    for method, path in changes:
        response = admin.request(method, filled(path), json={})
        assert response.status_code == 403, (method, path, response.status_code, response.text)
        assert "X-CSRF-Token" in response.json()["detail"]
