"""The People pages in Debian's Chromium, driven by Playwright: search finds a person, their
timeline shows a suppressed message with its reason, and erasing asks for confirmation
(typing the profile id) before the admin API erases them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.console.people_support import add_plain_person, seed_console_person
from tests.console.support import ConsoleApp
from tests.store.person_seed import Seeded

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as loaded (evaluated through
    the DevTools protocol, which the page's Content-Security-Policy does not govern)."""
    page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']}: {v['help']}" for v in found if v["impact"] in ("serious", "critical")]


def screenshot(page: Any, name: str) -> None:
    """docs/console.md's pictures, taken only when asked (NUDGEFLOW_CONSOLE_SCREENSHOTS=1)."""
    if os.environ.get("NUDGEFLOW_CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.fixture(scope="module")
def ada(console_app: ConsoleApp) -> Seeded:
    return seed_console_person(console_app)


def test_search_finds_a_person_and_their_timeline_shows_a_suppressed_message_with_its_reason(
    ada: Seeded, console_page: Callable[[str], Any]
) -> None:
    page = console_page("viewer")
    page.goto("/people")
    page.get_by_test_id("people-search").fill("ada@EXAMPLE")
    page.get_by_test_id("people-search").press("Enter")
    results = page.get_by_test_id("people-results")
    expect(results).to_contain_text("email ada@example.com")
    assert serious_violations(page) == []
    screenshot(page, "people-search.png")
    page.get_by_test_id("person-link").click()
    expect(page.get_by_test_id("person-id")).to_have_text(ada.pid)
    row = page.locator("tr[data-kind=message]", has_text="welcome-letter")
    expect(row.get_by_test_id("timeline-status")).to_have_text("suppressed")
    expect(row.get_by_test_id("timeline-reason")).to_have_text("unsubscribed:*")
    assert serious_violations(page) == []
    screenshot(page, "people-person.png")


def test_erase_asks_for_confirmation_then_erases(console_app: ConsoleApp, console_page: Callable[[str], Any]) -> None:
    pid = add_plain_person(console_app, "erase-in-browser")
    page = console_page("admin")
    page.goto(f"/people/{pid}")
    page.get_by_test_id("erase-person").click()
    dialog = page.get_by_test_id("erase-dialog")
    expect(dialog).to_be_visible()
    confirm = page.get_by_test_id("erase-confirm")
    expect(confirm).to_be_disabled()
    page.get_by_test_id("erase-check").fill("not the id")
    expect(confirm).to_be_disabled()
    page.get_by_test_id("erase-cancel").click()
    expect(dialog).to_be_hidden()
    with console_app.admin() as api:
        assert api.get(f"/api/profiles/{pid}").status_code == 200  # cancelled: nothing erased

    page.get_by_test_id("erase-person").click()
    page.get_by_test_id("erase-check").fill(pid)
    expect(confirm).to_be_enabled()
    confirm.click()
    expect(page.get_by_test_id("people-erased")).to_contain_text(pid)
    with console_app.admin() as api:
        assert api.get(f"/api/profiles/{pid}").status_code == 404


def test_export_asks_first_then_downloads_what_the_api_exports(
    ada: Seeded, console_app: ConsoleApp, console_page: Callable[[str], Any]
) -> None:
    """Every role may export (a viewer already sees it all on the page): cancelled, nothing is
    downloaded; confirmed, the file is GET /api/profiles/{ref}/export's answer."""
    page = console_page("viewer")
    page.goto(f"/people/{ada.pid}")
    page.get_by_test_id("export-person").click()
    dialog = page.get_by_test_id("export-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("[data-close]").click()
    expect(dialog).to_be_hidden()
    page.get_by_test_id("export-person").click()
    with page.expect_download() as download:
        page.get_by_test_id("export-confirm").click()
    expect(dialog).to_be_hidden()
    assert download.value.suggested_filename == f"person-{ada.pid}.json"
    exported = json.loads(Path(download.value.path()).read_text())
    with console_app.admin() as api:
        assert exported == api.get(f"/api/profiles/{ada.pid}/export").json()
    assert exported["id"] == ada.pid
