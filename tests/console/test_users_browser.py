"""The Users and Audit pages and the sign-in page in Chromium: an admin adds a user and sees
their password once; the audit page shows the change; axe-core finds no serious violation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.console.support import ConsoleApp, screenshot, serious_violations


def test_the_sign_in_page_is_accessible(browser: Any, console_app: ConsoleApp) -> None:
    context = browser.new_context(base_url=console_app.url, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto("/sign-in")
        expect(page.get_by_label("Email")).to_be_visible()
        assert serious_violations(page) == []
        screenshot(page, "sign-in")
    finally:
        context.close()


def test_an_admin_adds_a_user_and_the_audit_page_shows_it(
    console_app: ConsoleApp, console_page: Callable[[str], Any]
) -> None:
    page = console_page("admin")
    page.goto("/users")
    expect(page.get_by_test_id("users")).to_contain_text("viewer@example.com")
    assert serious_violations(page) == []
    page.get_by_test_id("new-email").fill("sam@example.com")
    page.get_by_test_id("new-role").select_option("editor")
    page.get_by_test_id("add-user").click()
    expect(page.get_by_test_id("new-password")).to_be_visible()
    password = page.get_by_test_id("new-password-value").inner_text()
    assert len(password) >= 20
    expect(page.get_by_test_id("users")).to_contain_text("sam@example.com")
    screenshot(page, "users")

    done = page.evaluate("""NF.api("PATCH", "/api/settings", {topics: ["news", "deals"]}).then(() => "ok")""")
    assert done == "ok"
    page.goto("/audit")
    first, second = page.get_by_test_id("audit-entry").nth(0), page.get_by_test_id("audit-entry").nth(1)
    expect(second).to_contain_text("POST /api/console/users")
    expect(second).to_contain_text("admin@example.com")
    expect(first).to_contain_text("PATCH /api/settings")
    first.get_by_text("Before and after").click()
    expect(first.locator("pre").nth(1)).to_contain_text('"deals"')
    assert password not in page.content()
    assert serious_violations(page) == []
    screenshot(page, "audit")


def test_a_role_is_changed_from_the_users_page(console_app: ConsoleApp, console_page: Callable[[str], Any]) -> None:
    console_app.add_user("pat@example.com", "viewer")
    page = console_page("admin")
    page.goto("/users")
    page.get_by_test_id("role-pat@example.com").select_option("editor")
    expect(page.locator("#nf-status")).to_contain_text("pat@example.com is now editor")
    page.reload()
    expect(page.get_by_test_id("role-pat@example.com")).to_have_value("editor")
