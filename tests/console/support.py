"""What the console's tests and their fixtures share: a running console (server, clock,
workspace, one user per role), signing in over HTTP, and the pages' CSRF token."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.store import console_users
from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer

ROLES = ("viewer", "editor", "admin")
PASSWORD = "correct horse battery staple"  # every fixture user's; tests only
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # where a console's virtual clock starts


def email_of(role: str) -> str:
    return f"{role}@example.com"


@dataclass
class ConsoleApp:
    """A live server on loopback with the console, on a virtual clock; a workspace with one
    user per role (viewer@example.com, editor@…, admin@…, password PASSWORD)."""

    server: LiveServer
    clock: VirtualClock
    workspace: NewWorkspace
    users: dict[str, str] = field(default_factory=dict)  # role -> user id

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> Any:
        return self.server.state

    @property
    def workspace_id(self) -> str:
        return self.workspace.workspace_id

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client with no session (follows no redirects: tests look at them)."""
        return self.server.client(**kwargs)

    def admin(self) -> httpx.Client:
        """A client of the admin API with the workspace's admin token."""
        return self.server.admin(self.workspace.admin_token)

    def add_user(self, email: str, role: str, password: str = PASSWORD) -> str:
        with self.state.engine.begin() as conn:
            return console_users.create_user(conn, self.workspace_id, email, role, password, to_ms(self.clock.now())).id

    def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Client:
        """A client signed in as this user, its X-CSRF-Token header set (as console.js sends it)."""
        client = self.client()
        sign_in(client, email=email, password=password)
        client.headers["X-CSRF-Token"] = csrf_of(client)
        return client


def form_token(client: httpx.Client) -> str:
    """The sign-in form's own CSRF token (the GET sets its cookie in the client)."""
    html = client.get("/sign-in").text
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: httpx.Client, **fields: str) -> httpx.Response:
    """Post the sign-in form (email and password, or admin_token) as a browser would."""
    response = client.post("/sign-in", data={"form_token": form_token(client), **fields})
    return response


def csrf_of(client: httpx.Client, path: str = "/sign-out") -> str:
    """The session's CSRF token, as a page carries it (<meta name="csrf-token">)."""
    html = client.get(path).text
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert found and found.group(1), html[:500]
    return found.group(1)


def app_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path template, the route) of every route of the app, included routers too."""
    from fastapi.routing import APIRoute, iter_route_contexts

    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(context.methods or ()):
                found.append((method, str(context.path), route))
    return found


def console_pages(app: Any) -> list[str]:
    """Every console page of the app (a GET route taking Viewer, Editor or Admin), its path
    parameters filled in."""
    pages = []
    for method, path, route in app_routes(app):
        calls = {getattr(dep.call, "__name__", "") for dep in route.dependant.dependencies}
        if method == "GET" and calls & {"console_viewer", "console_editor", "console_admin"}:
            pages.append(re.sub(r"\{[^}]+\}", "x", path))
    return pages


# docs/console.md's pictures: taken by the browser tests only when NUDGEFLOW_CONSOLE_SCREENSHOTS=1
# (`python -m tests.console.screenshots` runs them so).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def screenshot(page: Any, name: str) -> None:
    """Save the page as docs/console/<name>.png, when screenshots are asked for."""
    if os.environ.get("NUDGEFLOW_CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        file = name if name.endswith(".png") else f"{name}.png"
        page.screenshot(path=str(SCREENSHOTS / file), full_page=True)


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as loaded (injected through
    the DevTools protocol, which the page's Content-Security-Policy does not govern)."""
    page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']}: {v['help']}" for v in found if v["impact"] in ("serious", "critical")]
