"""A journey published on its console page, then fed over HTTP (/v1/identify, /v1/track) and
decided by the engine on the virtual clock: the send shows in the canvas's counts and the list.
The cart abandonment of issue 16: Product Added not followed by Order Completed within 1 h,
then an email."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from nudgeflow.core.clock import VirtualClock
from nudgeflow.model.journey_checks import validate_files
from nudgeflow.model.journeys import Journey
from nudgeflow.settings import Settings
from nudgeflow.store import dev_inbox
from tests.console.engine_console import send
from tests.console.journey_support import save_templates
from tests.console.support import ROLES, START, ConsoleApp, email_of, screenshot, serious_violations
from tests.support import free_port, start_server

CART = {
    "id": "cart",
    "name": "Cart abandonment",
    "trigger": {
        "type": "event_not_followed",
        "event": "Product Added",
        "not_followed_by": {"event": "Order Completed", "within": "1h", "match": "cart_id"},
    },
    "entry": {"filter": [{"trait": "email", "op": "exists"}]},
    "steps": {"remind": {"type": "send", "channel": "email", "template": "cart-reminder"}},
}


@pytest.fixture(scope="module")
def console_app() -> Iterator[ConsoleApp]:
    """This module's console runs the engine (overrides the conftest's, which does not), and
    sends email to the dev inbox's SMTP sink (`serve --dev`): without a mail server, email
    would only be logged, and a logged message is no send."""
    directory = Path(tempfile.mkdtemp(prefix="nudgeflow-console-"))
    settings = Settings(
        database_url=f"sqlite:///{directory / 'nudgeflow.db'}",
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        engine_enabled=True,
        dev_mode=True,
        dev_smtp_port=free_port(),
    )
    server = start_server(settings, VirtualClock(START))
    app = ConsoleApp(server, server.state.clock, server.workspace("console"))
    for role in ROLES:
        app.users[role] = app.add_user(email_of(role), role)
    with app.admin() as api:
        save_templates(api, CART)
        assert api.put("/api/journeys/cart", json=CART).status_code == 201
    yield app
    app.server.stop()


def test_publish_then_events_then_the_send_in_the_counts(console_app: ConsoleApp, console_page: Any) -> None:
    app = console_app
    page = console_page("editor")
    page.goto("/journeys/cart")
    page.wait_for_selector('svg [data-step-id="remind"]')
    page.get_by_test_id("publish").click()
    page.get_by_test_id("confirm-dialog").wait_for(state="visible")
    assert "would enter at once" in page.get_by_test_id("confirm-text").text_content()
    with page.expect_navigation():
        page.get_by_test_id("confirm-yes").click()
    page.wait_for_selector('svg [data-step-id="remind"]')
    assert page.get_by_test_id("journey-status").text_content() == "live"
    app.state.runtime.run_until_idle()

    # Ada leaves a cart; Bo orders his within the hour (he never enters).
    send(app, "/v1/identify", {"userId": "ada", "traits": {"email": "ada@example.com"}})
    send(app, "/v1/identify", {"userId": "bo", "traits": {"email": "bo@example.com"}})
    send(app, "/v1/track", {"userId": "ada", "event": "Product Added", "properties": {"cart_id": "a1"}})
    send(app, "/v1/track", {"userId": "bo", "event": "Product Added", "properties": {"cart_id": "b1"}})
    send(app, "/v1/track", {"userId": "bo", "event": "Order Completed", "properties": {"cart_id": "b1"}})
    page.reload()
    page.wait_for_selector('svg [data-step-id="remind"]')
    assert page.locator('[data-step-id="remind"]').get_by_test_id("node-counts").text_content() == "0 sent · 0 here now"

    app.clock.advance(timedelta(hours=1, minutes=1))  # the hour is up: the timer fires, Ada enters
    app.state.runtime.run_until_idle()
    page.reload()
    page.wait_for_selector('svg [data-step-id="remind"]')
    assert page.locator('[data-step-id="@trigger"]').get_by_test_id("node-counts").text_content() == "1 entered"
    assert page.locator('[data-step-id="remind"]').get_by_test_id("node-counts").text_content() == "1 sent · 0 here now"
    page.goto("/journeys")
    row = page.locator('tr[data-journey-id="cart"]')
    assert row.get_by_test_id("sent").text_content() == "1"


CART_YAML = """id: cart-from-nothing
name: Cart abandonment, built in the console
trigger:
  type: event_not_followed
  event: Product Added
  not_followed_by:
    event: Order Completed
    within: 1h
    match: cart_id
entry:
  filter:
    - {trait: email, op: exists}
steps:
  remind:
    type: send
    channel: email
    template: no-such-template
"""


def test_build_a_journey_from_nothing_then_publish_and_send(console_app: ConsoleApp, console_page: Any) -> None:
    """A new draft from the list, its definition typed in the page's YAML editor (checked as typed,
    the problem marked on its node, then fixed), saved, published, and its first send counted."""
    app = console_app
    page = console_page("editor")
    page.goto("/journeys")
    assert serious_violations(page) == []
    page.get_by_test_id("new-journey-id").fill("cart-from-nothing")
    page.get_by_test_id("new-journey-name").fill("Cart abandonment, built in the console")
    with page.expect_navigation():
        page.get_by_test_id("create-journey").click()
    page.wait_for_selector('svg [data-step-id="done"]')

    # The whole document, typed over the skeleton's.
    page.locator("#yaml-editor .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(CART_YAML)
    state = page.get_by_test_id("edit-state")
    page.wait_for_selector('[data-testid="edit-state"][data-valid="false"]')
    assert "1 error" in state.text_content()
    assert "no template 'no-such-template'" in page.get_by_test_id("edit-problems").text_content()
    remind = page.locator('svg [data-step-id="remind"]')
    assert remind.get_attribute("aria-invalid") == "true"
    screenshot(page, "journey-editor-error")
    trigger = page.locator('svg [data-step-id="@trigger"] desc').text_content()
    assert "Product Added not followed by Order Completed (same cart_id) within 1h" in trigger

    # Fixed: the template that exists.
    page.locator("#yaml-editor .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(CART_YAML.replace("no-such-template", "cart-reminder"))
    page.wait_for_selector('[data-testid="edit-state"][data-valid="true"]')
    assert page.locator('svg [data-step-id="remind"]').get_attribute("aria-invalid") is None
    assert serious_violations(page) == []  # the page with its editor
    with page.expect_download() as download:
        page.get_by_test_id("download-edited").click()
    assert Path(download.value.path()).read_text() == CART_YAML.replace("no-such-template", "cart-reminder")

    with page.expect_navigation():
        page.get_by_test_id("save-draft").click()
    page.wait_for_selector('svg [data-step-id="remind"]')
    assert page.locator('svg [data-step-id="done"]').count() == 0
    publish_then_abandon_a_cart(page, app, "remind", "cy")


CART_TRIGGER = """type: event_not_followed
event: Product Added
not_followed_by:
  event: Order Completed
  within: 1h
  match: cart_id
"""


def test_build_the_cart_abandonment_on_the_canvas_then_publish_and_send(
    console_app: ConsoleApp, console_page: Any, tmp_path: Path
) -> None:
    """Issue 16's journey built with the canvas's own controls, no typing in the YAML editor: a new
    draft, its trigger's settings changed on the trigger's node, an email step added on the
    trigger's link and its template set on the step's node; saved, published, and its first send
    counted. The document the canvas wrote is what `journeys apply` takes."""
    app = console_app
    page = console_page("editor")
    page.goto("/journeys")
    page.get_by_test_id("new-journey-id").fill("cart-on-canvas")
    page.get_by_test_id("new-journey-name").fill("Cart abandonment, drawn on the canvas")
    with page.expect_navigation():
        page.get_by_test_id("create-journey").click()
    page.wait_for_selector('svg [data-step-id="done"]')
    text = lambda: page.evaluate("NFJourney.editor.state.doc.toString()")  # noqa: E731

    # The trigger: Product Added not followed by Order Completed (same cart) within 1 h.
    page.locator('svg [data-step-id="@trigger"]').click()
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('Signed Up')")
    page.get_by_test_id("edit-part").fill(CART_TRIGGER)
    page.get_by_test_id("apply-part").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('event_not_followed')")
    page.wait_for_selector('svg [data-step-id="@trigger"].selected')
    trigger = page.locator('svg [data-step-id="@trigger"] desc')
    page.wait_for_function(
        "() => document.querySelector('svg [data-step-id=\"@trigger\"] desc').textContent.includes('Product Added')"
    )
    assert "Product Added not followed by Order Completed (same cart_id) within 1h" in trigger.text_content()

    # Then an email: a send step on the trigger's link, its template chosen in its settings.
    page.get_by_test_id("edit-kind").select_option("send")
    page.get_by_test_id("add-step").click()
    page.wait_for_selector('svg [data-step-id="send-1"].selected')
    assert page.evaluate("NFJourney.data.graph.start") == "send-1"
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('new-template')")
    part = page.get_by_test_id("edit-part")
    part.fill(part.input_value().replace("new-template", "cart-reminder"))
    page.get_by_test_id("apply-part").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('template: cart-reminder')")
    page.wait_for_selector('[data-testid="edit-state"][data-valid="true"]')
    assert page.locator('svg [data-step-id="send-1"]').get_attribute("aria-invalid") is None
    written = text()
    with page.expect_download() as download:
        page.get_by_test_id("download-edited").click()
    path = tmp_path / "cart-on-canvas.yaml"
    path.write_text(Path(download.value.path()).read_text())
    assert path.read_text() == written
    assert [p for p in validate_files([path]) if p.severity == "error"] == []

    with page.expect_navigation():
        page.get_by_test_id("save-draft").click()
    page.wait_for_selector('svg [data-step-id="send-1"]')
    with app.admin() as api:
        stored = api.get("/api/journeys/cart-on-canvas").json()["draft"]
    assert Journey.model_validate(stored) == Journey.model_validate(yaml.safe_load(written))
    publish_then_abandon_a_cart(page, app, "send-1", "dee")


def test_a_test_send_from_the_template_editor(console_app: ConsoleApp, console_page: Any) -> None:
    """The editor's "Send a test" sends the saved version for real (the dev SMTP sink here), to an
    address, with [Test] before the subject; a viewer has no such form."""
    qa = "qa-console@example.com"
    page = console_page("editor")
    page.goto("/templates/cart-reminder")
    page.get_by_test_id("test-send-target").fill(qa)
    page.get_by_test_id("test-send").click()
    expect(page.get_by_test_id("test-send-status")).to_have_text(f"Sent to {qa}.")
    with console_app.state.engine.connect() as conn:
        received = [row for row in dev_inbox.received(conn, "email") if row.rcpt_to == qa]
    assert len(received) == 1 and received[0].subject.startswith("[Test]"), received
    viewer = console_page("viewer")
    viewer.goto("/templates/cart-reminder")
    viewer.get_by_test_id("editor-body").wait_for()
    assert viewer.get_by_test_id("test-send-form").count() == 0  # and the API refuses it (test_templates_pages)


def test_the_publish_confirmation_counts_who_would_enter_at_once(console_app: ConsoleApp, console_page: Any) -> None:
    """A win-back (inactive 7 days) published a week after people were last seen: the
    confirmation says how many would enter at once, the admin API's dry-run count, not 0.
    (Last in this module: it moves the module's clock on by 8 days.)"""
    app = console_app
    send(app, "/v1/track", {"userId": "eve", "event": "Session Started"})
    app.clock.advance(timedelta(days=8))
    winback = {
        "id": "winback",
        "name": "Win back",
        "trigger": {"type": "inactivity", "window": "7d"},
        "steps": {"mark": {"type": "update_profile", "set": {"winback": True}}},
    }
    with app.admin() as api:
        assert api.put("/api/journeys/winback", json=winback).status_code == 201
        counted = api.post("/api/journeys/winback/publish?dry_run=true").json()
    assert counted["would_enter"] >= 1
    page = console_page("editor")
    page.goto("/journeys/winback")
    page.wait_for_selector('svg [data-step-id="mark"]')
    page.get_by_test_id("publish").click()
    page.get_by_test_id("confirm-dialog").wait_for(state="visible")
    said = page.get_by_test_id("confirm-text").text_content()
    people = "person" if counted["would_enter"] == 1 else "people"
    entering, known = counted["would_enter"], counted["profiles"]
    expected = f"{entering:,} {people} would enter at once (of {known:,} profiles looked at)"
    assert expected in said, said
    page.get_by_test_id("confirm-no").click()
    with app.admin() as api:
        assert api.get("/api/journeys/winback").json()["status"] == "draft"  # cancelled: nothing published


def publish_then_abandon_a_cart(page: Any, app: ConsoleApp, step: str, user: str) -> None:
    """Publish the journey on its page (confirmed), then `user` adds to a cart and buys
    nothing for an hour: the canvas's send step `step` counts the one email sent."""
    page.get_by_test_id("publish").click()
    page.get_by_test_id("confirm-dialog").wait_for(state="visible")
    with page.expect_navigation():
        page.get_by_test_id("confirm-yes").click()
    page.wait_for_selector(f'svg [data-step-id="{step}"]')
    assert page.get_by_test_id("journey-status").text_content() == "live"
    app.state.runtime.run_until_idle()

    send(app, "/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.com"}})
    send(app, "/v1/track", {"userId": user, "event": "Product Added", "properties": {"cart_id": f"{user}-1"}})
    app.clock.advance(timedelta(hours=1, minutes=1))
    app.state.runtime.run_until_idle()
    page.reload()
    page.wait_for_selector(f'svg [data-step-id="{step}"]')
    counts = page.locator(f'[data-step-id="{step}"]').get_by_test_id("node-counts")
    assert counts.text_content() == "1 sent · 0 here now"
