"""The overview, a journey's report and the settings pages in headless Chromium: each renders
with no script error; the policies editor shows the server's validation error for a bad
document and applies a good one; the email form saves and shows the password masked."""

from __future__ import annotations

from typing import Any

import pytest
from tests.console.test_report_page import JOURNEY, publish

from nudgeflow.model.smtp_config import MASK

SETTINGS = ("/settings/email", "/settings/push", "/settings/workspace", "/settings/policies", "/settings/keys")


@pytest.fixture(scope="module")
def journey(console_app: Any) -> str:
    with console_app.admin() as admin:
        publish(admin, {**JOURNEY, "id": "browser-report"})
    return "browser-report"


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
    for url, heading in [
        ("/", "Overview"),
        ("/?days=90", "Overview"),
        (f"/journeys/{journey}/report", f"Report: {journey}"),
        *((url, "Settings") for url in SETTINGS),
    ]:
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        assert page.locator("h1").first.inner_text() == heading, url
    page.goto("/")
    assert page.get_by_test_id("overview-channels").is_visible()
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
