"""axe-core on every console page in Chromium, read from the app's routes: each page a role can
open (and the pages around them: sign-in, sign-out, a page above the role, a page of something
that does not exist) has no serious or critical violation, with the data that fills its tables,
diffs and panels. A page added later without an entry here fails the first test, so it cannot
go unchecked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.console.journey_support import save_example
from tests.console.people_support import seed_console_person
from tests.console.support import ConsoleApp, app_routes, screenshot, serious_violations

Page = Callable[[str], Any]
SEGMENT = {
    "id": "pro-buyers",
    "name": "Pro buyers",
    "when": {"all": [{"trait": "plan", "value": "pro"}, {"performed": "Order Completed", "within": "30d"}]},
}
# docs/console.md's pictures of pages no other browser test shows.
SHOTS = {
    "/templates": "templates",
    "/segments": "segments",
    "/settings/push": "settings-push",
    "/settings/workspace": "settings-workspace",
    "/settings/keys": "settings-keys",
}
# Routes that answer something other than a page (a file to download).
NOT_PAGES = {"/journeys/{journey_id}/definition.yaml"}


@pytest.fixture(scope="module")
def urls(console_app: ConsoleApp) -> dict[str, str]:
    """Each page route's template -> a URL of it showing real data: a template with two
    versions compared, a journey's published version against its changed draft, a segment
    with its why-panel, a person with their timeline and a why-did-they-get-it answer."""
    doc = save_example(console_app, "cart-abandonment", publish=True)
    with console_app.admin() as api:
        first = {
            "subject": "Welcome, {{ profile.first_name }}",
            "body": "<mjml><mj-body><mj-text>Hi</mj-text></mj-body></mjml>",
        }
        assert api.put("/api/templates/welcome", json=first).status_code == 201
        assert api.put("/api/templates/welcome", json={**first, "subject": "Hello"}).status_code == 200
        assert api.put("/api/segments/pro-buyers", json=SEGMENT).status_code == 201
        doc["steps"]["wait-23h"]["duration"] = "20h"
        assert api.put(f"/api/journeys/{doc['id']}", json=doc).status_code == 200
    ada = seed_console_person(console_app)
    journey = doc["id"]
    return {
        "/": "/?days=90",
        "/journeys/{journey_id}/report": f"/journeys/{journey}/report",
        "/settings": "/settings",
        "/settings/email": "/settings/email",
        "/settings/push": "/settings/push",
        "/settings/workspace": "/settings/workspace",
        "/settings/policies": "/settings/policies",
        "/settings/keys": "/settings/keys",
        "/people": "/people?q=ada",
        "/people/{ref:path}": f"/people/{ada.pid}?journey=cart&template=cart-nudge",
        "/templates": "/templates",
        "/templates/{name}": "/templates/welcome?from=1&to=2",
        "/segments": "/segments",
        "/segments/{segment_id}": f"/segments/pro-buyers?person={ada.pid}",
        "/users": "/users",
        "/audit": "/audit",
        "/account": "/account",
        "/journeys": "/journeys",
        "/journeys/{journey_id}": f"/journeys/{journey}",
        "/journeys/{journey_id}/versions": f"/journeys/{journey}/versions?a=1&b=draft",
    }


@pytest.fixture
def check(console_page: Page) -> Iterator[Callable[[Any, str], None]]:
    """check(page, url): opened with no script error, then no serious or critical violation."""
    errors: list[str] = []
    watched: set[int] = set()

    def run(page: Any, url: str) -> None:
        if id(page) not in watched:
            page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
            watched.add(id(page))
        response = page.goto(url)
        assert response is not None and response.status < 500, url
        page.wait_for_load_state("networkidle")  # the scripts' own requests (previews, diffs) done
        assert serious_violations(page) == [], url

    yield run
    assert errors == []


def test_every_page_route_has_a_url_here(console_app: ConsoleApp, urls: dict[str, str]) -> None:
    pages = set()
    for method, path, route in app_routes(console_app.server.running.app):
        calls = {getattr(dep.call, "__name__", "") for dep in route.dependant.dependencies}
        if method == "GET" and calls & {"console_viewer", "console_editor", "console_admin"}:
            pages.add(path)
    assert pages - NOT_PAGES == set(urls), "a console page without a URL in this test: give it one"


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_every_page_has_no_serious_violation(
    urls: dict[str, str], console_page: Page, check: Callable[[Any, str], None], role: str
) -> None:
    """As an admin (every control there) and as a viewer (forms greyed out, pages refused)."""
    page = console_page(role)
    for route, url in urls.items():
        check(page, url)
        if role == "admin" and route in SHOTS:
            screenshot(page, SHOTS[route])
    check(page, "/sign-out")
    for missing in ("/journeys/no-such-journey", "/journeys/no-such-journey/report", "/segments/no-such-segment"):
        check(page, missing)  # a page, with the navigation, saying what is not there
        assert page.locator("h1").first.inner_text() == "Not found", missing


def test_the_pages_around_them(console_app: ConsoleApp, console_page: Page, check: Callable[[Any, str], None]) -> None:
    page = console_page("viewer")
    check(page, "/users")  # above a viewer: the 403 page
    assert page.locator("h1").first.inner_text() == "Not allowed"
    page.context.clear_cookies()
    check(page, "/sign-in")
