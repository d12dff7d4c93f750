"""/account: a user changes their own password (a viewer too), with the current one; every
session of theirs ends; an admin token's session has no password."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from playwright.sync_api import expect

from nudgeflow.store import audit_log
from tests.console.support import PASSWORD, ConsoleApp, email_of, screenshot, serious_violations, sign_in

NEW = "a brand new passphrase"


def test_a_viewer_changes_their_password(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    viewer = app.sign_in(email_of("viewer"))
    other = app.sign_in(email_of("viewer"))
    assert viewer.post("/account/password", json={"current": "wrong one!", "new": NEW}).status_code == 403
    assert viewer.post("/account/password", json={"current": PASSWORD, "new": "short"}).status_code == 422
    unsigned = viewer.post("/account/password", json={"current": PASSWORD, "new": NEW}, headers={"X-CSRF-Token": ""})
    assert unsigned.status_code == 403
    done = viewer.post("/account/password", json={"current": PASSWORD, "new": NEW})
    assert done.status_code == 200 and done.json() == {"sessions_ended": 2}
    assert viewer.get("/").status_code == 303 and other.get("/").status_code == 303
    with app.client() as client:
        assert sign_in(client, email=email_of("viewer"), password=PASSWORD).status_code == 401
        assert sign_in(client, email=email_of("viewer"), password=NEW).status_code == 303
    with app.state.engine.connect() as conn:
        actions = [(e["actor"], e["action"]) for e in audit_log.entries(conn, app.workspace_id)[0]]
    assert ("viewer@example.com", "change-password") in actions
    assert NEW not in str(actions)
    viewer.close()
    other.close()


def test_wrong_current_passwords_count_as_failed_sign_ins(own_console_app: ConsoleApp) -> None:
    """A session cannot guess its user's password without limit: five wrong current passwords
    (in the sign-in limit's 15 minutes) and the sixth try is a 429, the right one too, and the
    sign-in form is closed to the email as well (it was a 403 every time, unlimited)."""
    app = own_console_app
    viewer = app.sign_in(email_of("viewer"))
    answers = [
        viewer.post("/account/password", json={"current": f"guess number {n}", "new": NEW}).status_code
        for n in range(5)
    ]
    assert answers == [403] * 5
    limited = viewer.post("/account/password", json={"current": PASSWORD, "new": NEW})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0, limited.text
    with app.client() as client:
        assert sign_in(client, email=email_of("viewer"), password=PASSWORD).status_code == 429
    app.clock.advance(timedelta(minutes=15, seconds=1))
    done = viewer.post("/account/password", json={"current": PASSWORD, "new": NEW})
    assert done.status_code == 200, done.text
    viewer.close()


def test_an_admin_token_session_has_no_password(console_app: ConsoleApp) -> None:
    with console_app.client() as client:
        sign_in(client, admin_token=console_app.workspace.admin_token)
        page = client.get("/account")
        assert page.status_code == 200 and "no password to change" in page.text
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        answer = client.post("/account/password", json={"current": "x", "new": NEW}, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 409


def test_the_account_page_changes_the_password_and_signs_in_again(own_console_app: ConsoleApp, browser: Any) -> None:
    app = own_console_app
    app.add_user("kim@example.com", "editor")
    context = browser.new_context(base_url=app.url, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto("/account")
        page.get_by_label("Email").fill("kim@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_test_id("sign-in").click()
        expect(page.get_by_test_id("password-form")).to_be_visible()
        assert serious_violations(page) == []
        screenshot(page, "account")
        page.get_by_test_id("current-password").fill(PASSWORD)
        page.get_by_test_id("new-password").fill(NEW)
        page.get_by_test_id("again-password").fill(NEW + "x")
        page.get_by_test_id("change-password").click()
        expect(page.locator("#nf-status")).to_contain_text("differ")
        page.get_by_test_id("again-password").fill(NEW)
        page.get_by_test_id("change-password").click()
        page.wait_for_url("**/sign-in?next=%2Faccount")
        page.get_by_label("Email").fill("kim@example.com")
        page.get_by_label("Password").fill(NEW)
        page.get_by_test_id("sign-in").click()
        page.wait_for_url("**/account")
    finally:
        context.close()


def test_the_email_in_the_top_bar_leads_to_the_account(console_page: Callable[[str], Any]) -> None:
    page = console_page("viewer")
    page.goto("/account")
    expect(page.get_by_test_id("signed-in-as")).to_have_attribute("href", "/account")
