"""The template editor and a segment's page in Chromium: editing a template and watching the
server-rendered preview change, a Liquid error shown at its line and column in the editor,
a push template's notification previews with the 4 KB check, and a segment's members and
why-panel."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from nudgeflow.content.sample import sample_context
from tests.console.engine_console import send, start_engine_console
from tests.console.support import ConsoleApp

FIRST_NAME = sample_context()["profile"]["first_name"]
WELCOME = {
    "subject": "Welcome, {{ profile.first_name | default: 'friend' }}",
    "body": "<mjml><mj-body><mj-section><mj-column>\n<mj-text>Hi {{ profile.first_name | default: 'you' }}</mj-text>\n"
    "</mj-column></mj-section></mj-body></mjml>",
}
PUSH_BIG = {
    "channel": "push",
    "title": "A very long title for a notification, longer than any platform shows in its collapsed view",
    "body": "Your cart is waiting",
    "data": {"blob": "x" * 3900},
}
SEGMENT = {
    "id": "pro-buyers",
    "name": "Pro buyers",
    "when": {"all": [{"trait": "plan", "value": "pro"}, {"performed": "Order Completed", "within": "30d"}]},
}


@pytest.fixture(scope="module")
def console_app() -> Iterator[ConsoleApp]:
    """This module's console runs the engine (overrides the conftest's, which does not)."""
    app = start_engine_console(Path(tempfile.mkdtemp(prefix="nudgeflow-console-")))
    with app.admin() as api:
        assert api.put("/api/templates/welcome", json=WELCOME).status_code == 201
        assert api.put("/api/templates/push-big", json=PUSH_BIG).status_code == 201
        assert api.put("/api/segments/pro-buyers", json=SEGMENT).status_code == 201
    app.state.runtime.run_until_idle()
    send(app, "/v1/identify", {"userId": "ada", "traits": {"plan": "pro"}})
    send(app, "/v1/track", {"userId": "ada", "event": "Order Completed"})
    send(app, "/v1/identify", {"userId": "bo", "traits": {"plan": "free"}})
    yield app
    app.server.stop()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def _serious(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page, in words. Evaluated through
    Playwright (the DevTools protocol, which the console's CSP does not govern)."""
    page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)"""
    )
    return list(found)


def _screenshot(page: Any, name: str) -> None:
    """docs/console/NAME.png for docs/console.md, only when asked (NUDGEFLOW_CONSOLE_SCREENSHOTS=1)."""
    if os.environ.get("NUDGEFLOW_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def _replace_body(page: Any, text: str) -> None:
    editor = page.get_by_test_id("editor-body").locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    # insert_text: one input, as a paste is (typing "<" would trigger the HTML auto-close).
    page.keyboard.insert_text(text)


def test_editing_a_template_changes_the_preview_and_errors_show_where(console_page: Callable[[str], Any]) -> None:
    page = console_page("editor")
    page.goto("/templates/welcome")
    desktop = page.frame_locator('[data-testid="preview-desktop"]')
    desktop.get_by_text(f"Hi {FIRST_NAME}").wait_for()
    assert page.get_by_test_id("preview-subject").inner_text() == f"Welcome, {FIRST_NAME}"
    assert page.get_by_test_id("editor-body").locator(".cm-content").is_visible()  # CodeMirror, not the textarea

    # A real person's context (ada has no first_name: the template's default shows), then
    # the sample again.
    page.get_by_test_id("preview-person").fill("ada")
    page.get_by_test_id("preview-person-choice").check()
    desktop.get_by_text("Hi you").wait_for()
    # Auto-waiting checks: the person's name and the choice each start a render, so the
    # frame can show the first one's result while the second is still in flight.
    expect(page.get_by_test_id("preview-subject")).to_have_text("Welcome, friend")
    expect(page.get_by_test_id("preview-status")).to_contain_text("the person's context")
    page.get_by_test_id("preview-person").fill("nobody-here")
    page.get_by_test_id("preview-error").get_by_text("no person 'nobody-here' in this workspace").wait_for()
    page.get_by_test_id("preview-sample").check()
    desktop.get_by_text(f"Hi {FIRST_NAME}").wait_for()

    _replace_body(page, "<mjml><mj-body><mj-text>Changed for {{ profile.first_name }}</mj-text></mj-body></mjml>")
    desktop.get_by_text(f"Changed for {FIRST_NAME}").wait_for()
    page.frame_locator('[data-testid="preview-mobile"]').get_by_text(f"Changed for {FIRST_NAME}").wait_for()
    page.wait_for_function(
        "t => document.querySelector('[data-testid=preview-text]').textContent.includes(t)",
        arg=f"Changed for {FIRST_NAME}",
    )
    page.get_by_test_id("field-subject").fill("Hello {{ profile.first_name }}!")
    page.wait_for_function(
        "t => document.querySelector('[data-testid=preview-subject]').textContent === t", arg=f"Hello {FIRST_NAME}!"
    )
    _screenshot(page, "template-editor")
    assert _serious(page) == []

    _replace_body(page, "<mjml><mj-body><mj-text>\nline two {{ profile. }}\n</mj-text></mj-body></mjml>")
    error = page.get_by_test_id("preview-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("body, line 2, column ")
    # The editor marks it: a lint range on line 2 and its gutter marker.
    page.get_by_test_id("editor-body").locator(".cm-lintRange-error").wait_for()
    marked = page.get_by_test_id("editor-body").locator(".cm-line", has=page.locator(".cm-lintRange-error"))
    assert "line two" in marked.inner_text()
    _screenshot(page, "template-error")


def test_push_preview_shows_each_platform_and_the_4kb_check(console_page: Callable[[str], Any]) -> None:
    page = console_page("viewer")
    page.goto("/templates/push-big")
    rows = page.get_by_test_id("payload-check").locator("tbody tr")
    rows.nth(2).wait_for()
    assert [rows.nth(i).get_attribute("data-service") for i in range(3)] == ["Web Push", "FCM", "APNs"]
    for i in range(3):
        assert rows.nth(i).get_attribute("class") == "nf-bad"
        assert "over the service's limit" in rows.nth(i).inner_text()
    titles = {
        device: page.get_by_test_id(f"push-{device}").locator(".nf-push-title").inner_text()
        for device in ("android", "ios", "desktop")
    }
    assert all(t.endswith("…") and t.startswith("A very long title") for t in titles.values()), titles
    assert len(titles["ios"]) <= 50 < len(titles["android"]) <= 65
    assert page.get_by_test_id("push-android").locator(".nf-push-body").inner_text() == "Your cart is waiting"
    _screenshot(page, "template-push")
    assert _serious(page) == []


def test_a_segments_members_and_why_panel(console_page: Callable[[str], Any]) -> None:
    page = console_page("viewer")
    page.goto("/segments/pro-buyers")
    assert page.get_by_test_id("segment-members").locator("tbody tr").count() == 1
    assert "ada" in page.get_by_test_id("segment-members").inner_text()
    page.get_by_test_id("segment-definition-code").locator(".cm-content").wait_for()  # highlighted YAML
    page.get_by_test_id("why-person").fill("bo")
    page.get_by_test_id("why-submit").click()
    panel = page.get_by_test_id("why-panel")
    panel.wait_for()
    assert panel.get_attribute("data-member") == "false"
    assert panel.locator('[data-path="when.all[0]"]').get_attribute("data-holds") == "false"
    assert "is not in this segment" in panel.inner_text()
    _screenshot(page, "segment")
    assert _serious(page) == []
    for path in ("/templates", "/segments"):
        page.goto(path)
        assert _serious(page) == [], path
