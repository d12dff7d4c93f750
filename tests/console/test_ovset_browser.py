"""The overview, a journey's report and the settings pages in headless Chromium: each renders
with no script error and no serious or critical axe-core violation; the policies editor shows
the server's validation error for a bad document and applies a good one; the email and APNs
forms save and show their secrets masked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from nudgeflow.core.clock import to_ms
from nudgeflow.model.smtp_config import MASK
from nudgeflow.store import rollups
from tests.channels.push_servers import p8_pem
from tests.console.ovset_support import JOURNEY, publish, serious_violations, write_rollups

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"

SETTINGS = ("/settings/email", "/settings/push", "/settings/workspace", "/settings/policies", "/settings/keys")


@pytest.fixture(scope="module")
def journey(console_app: Any) -> str:
    """A published journey with a month of counts: something for the charts to draw."""
    jid = "browser-report"
    with console_app.admin() as admin:
        publish(admin, {**JOURNEY, "id": jid})
    today = rollups.day_of(to_ms(console_app.clock.now()))
    rows: list[tuple[rollups.Dims, dict[str, float]]] = []
    for back in range(30):
        day, wave = today - back, 1 + (back * 7) % 5
        ws = console_app.workspace_id
        rows += [
            ((ws, jid, 1, "", "", "", day), {"entered": 40 * wave, "conversions": 3 * wave, "revenue": 45.0 * wave}),
            ((ws, jid, 1, "offer", "a", "email", day), {"sent": 20 * wave, "delivered": 19 * wave, "opens": 6 * wave}),
            ((ws, jid, 1, "offer", "b", "email", day), {"sent": 20 * wave, "delivered": 18 * wave, "opens": 5 * wave}),
            ((ws, jid, 1, "nudge", "", "push", day), {"sent": 15 * wave, "delivered": 14 * wave, "opens": 2 * wave}),
            ((ws, jid, 1, "offer", "a", "", day), {"arm_runs": 20 * wave, "arm_conversions": 2 * wave}),
            ((ws, jid, 1, "offer", "b", "", day), {"arm_runs": 20 * wave, "arm_conversions": wave}),
        ]
    write_rollups(console_app.state, rows)
    return jid


def screenshot(page: Any, name: str) -> None:
    """docs/console/<name>.png, when NUDGEFLOW_CONSOLE_SCREENSHOTS=1 (docs/console.md shows them)."""
    if os.environ.get("NUDGEFLOW_CONSOLE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def watch_errors(page: Any) -> list[str]:
    """Script errors and failed loads the page reports (the browser's own /favicon.ico aside)."""
    errors: list[str] = []

    def console(msg: Any) -> None:
        if msg.type == "error" and not str(msg.location.get("url", "")).endswith("/favicon.ico"):
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", console)
    return errors


def test_each_page_renders(console_page: Any, journey: str) -> None:
    page = console_page("viewer")
    errors = watch_errors(page)
    shots = {"/": "overview", f"/journeys/{journey}/report": "journey-report"}
    shots |= {"/settings/email": "settings-email", "/settings/policies": "settings-policies"}
    for url, heading in [
        ("/?days=90", "Overview"),
        ("/", "Overview"),
        (f"/journeys/{journey}/report", f"Report: {journey}"),
        *((url, "Settings") for url in SETTINGS),
    ]:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        assert page.locator("h1").first.inner_text() == heading, url
        assert serious_violations(page) == [], url
        if url in shots:
            screenshot(page, shots[url])
    page.goto("/")
    assert page.get_by_test_id("overview-channels").is_visible()
    assert page.locator("svg polyline").count() >= 6  # the charts drew lines
    assert errors == []


def test_the_policies_editor_shows_the_servers_validation_error(console_page: Any) -> None:
    page = console_page("editor")
    page.goto("/settings/policies")
    source = page.get_by_test_id("policies-source")
    source.fill("frequency_caps:\n  - id: daily\n    channel: email\n    limit: -1\n")
    page.get_by_test_id("policies-apply").click()
    result = page.get_by_test_id("policies-result")
    result.filter(has_text="Not saved").wait_for()
    problems = page.get_by_test_id("policies-problems").locator("li")
    assert problems.count() >= 1 and "limit" in problems.first.inner_text()
    source.fill("frequency_caps:\n  - id: browser-daily\n    channel: email\n    limit: 3\n    calendar: day\n")
    page.get_by_test_id("policies-apply").click()
    result.filter(has_text="Applied: version").wait_for()
    assert problems.count() == 0
    page.reload()
    assert "browser-daily" in page.get_by_test_id("policies-source").input_value()


def test_the_email_form_saves_and_shows_the_password_masked(console_page: Any) -> None:
    page = console_page("admin")
    page.goto("/settings/email")
    form = page.get_by_test_id("smtp-form")
    form.locator('input[name="url"]').fill("smtp://mailer:browser-Secret-77@smtp.example.org:2525")
    form.locator('input[name="from_address"]').fill("browser@example.org")
    page.get_by_test_id("smtp-save").click()
    form.locator(".nf-result").filter(has_text="Saved.").wait_for()
    page.reload()
    url = page.get_by_test_id("smtp-form").locator('input[name="url"]').input_value()
    assert url == f"smtp://mailer:{MASK}@smtp.example.org:2525"
    assert "browser-Secret-77" not in page.content()


def test_the_apns_form_saves_and_keeps_the_key_masked(console_page: Any) -> None:
    pem = p8_pem(ec.generate_private_key(ec.SECP256R1()))
    page = console_page("admin")
    page.goto("/settings/push")
    form = page.get_by_test_id("apns-form")
    form.locator('input[name="team_id"]').fill("TEAM123456")
    form.locator('input[name="key_id"]').fill("KEY7654321")
    form.locator('textarea[name="private_key"]').fill(pem)
    form.locator('input[name="topic"]').fill("com.example.shop")
    form.locator('input[name="sandbox"]').check()
    form.locator("button[type=submit]").click()
    form.locator(".nf-result").filter(has_text="Saved.").wait_for()
    page.reload()
    assert page.get_by_test_id("apns-source").inner_text().startswith("The workspace's own credentials")
    form = page.get_by_test_id("apns-form")
    assert form.locator('textarea[name="private_key"]').input_value() == MASK
    assert form.locator('input[name="sandbox"]').is_checked()
    assert pem.splitlines()[1] not in page.content()
    # Saved again as shown (the mask in the key's field): the stored key stays.
    form.locator('input[name="topic"]').fill("com.example.app")
    form.locator("button[type=submit]").click()
    form.locator(".nf-result").filter(has_text="Saved.").wait_for()
    page.reload()
    assert "com.example.app" in page.get_by_test_id("apns-settings").inner_text()


def test_a_new_write_key_is_shown_once_and_listed_by_its_hint(console_page: Any) -> None:
    page = console_page("admin")
    page.goto("/settings/keys")
    form = page.get_by_test_id("key-create")
    form.locator('select[name="kind"]').select_option("server")
    form.locator("button[type=submit]").click()
    result = form.locator(".nf-result")
    result.filter(has_text="shown this once").wait_for()
    key = result.inner_text().rsplit(" ", 1)[1]
    page.reload()
    assert page.locator(f'tr[data-hint="{key[:8]}"]').is_visible()
    assert key not in page.content()
