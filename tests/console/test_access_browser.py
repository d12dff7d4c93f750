"""Signing in and out in Chromium, and the server refusing a change the page's own script
did not sign with the CSRF token, or that the role does not allow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.console.support import PASSWORD, ConsoleApp, email_of


def test_sign_in_with_the_form_and_sign_out(browser: Any, console_app: ConsoleApp) -> None:
    context = browser.new_context(base_url=console_app.url)
    page = context.new_page()
    try:
        page.goto("/?from=test")  # not signed in: to the form, and back after
        assert page.url.startswith(console_app.url + "/sign-in")
        page.get_by_label("Email").fill(email_of("editor"))
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_test_id("sign-in").click()
        page.wait_for_url(lambda url: "/sign-in" not in url)
        assert page.url.endswith("/?from=test")
        assert page.get_by_test_id("signed-in-as").inner_text() == email_of("editor")
        session = next(c for c in context.cookies() if c["name"] == "nf_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert page.evaluate("document.cookie").find("nf_session") == -1  # scripts cannot read it
        page.get_by_test_id("sign-out").click()
        page.wait_for_url("**/sign-in")
        page.goto("/")
        assert "/sign-in" in page.url
    finally:
        context.close()


def test_a_post_without_the_csrf_token_is_refused(console_page: Callable[[str], Any]) -> None:
    page = console_page("admin")
    page.goto("/")
    # What another script could do with the cookie alone: the server refuses it.
    status = page.evaluate(
        """fetch("/api/settings", {method: "PATCH", headers: {"Content-Type": "application/json"},
                 body: JSON.stringify({topics: ["x"]})}).then(r => r.status)"""
    )
    assert status == 403
    # The page's own helper sends the token, and the same change is made.
    done = page.evaluate("""NF.api("PATCH", "/api/settings", {topics: ["x"]}).then(() => "ok", e => e.status)""")
    assert done == "ok"


def test_a_viewer_is_refused_on_the_server_and_told(console_page: Callable[[str], Any]) -> None:
    page = console_page("viewer")
    page.goto("/")
    status = page.evaluate("""NF.api("PATCH", "/api/settings", {topics: ["y"]}).then(() => 200, e => e.status)""")
    assert status == 403
    message = page.locator("#nf-status")
    assert message.is_visible()
    assert "viewer" in message.inner_text()
