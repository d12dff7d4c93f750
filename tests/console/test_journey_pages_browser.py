"""The journey pages in Chromium: the canvas of a journey with its counts on the nodes, a node
selected by mouse and by keyboard alone, publish / pause / resume / archive with their
confirmations, two versions side by side, axe-core on each page, and a 50-step journey's
canvas laid out within 200 ms in the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from tests.browser.large_journey import LAYOUT_BUDGET_MS, fifty_steps
from tests.console.journey_support import plant_counts, plant_runs, save_example, save_templates
from tests.console.support import ConsoleApp, screenshot, serious_violations

Page = Callable[[str], Any]


@pytest.fixture(scope="module")
def seeded(console_app: ConsoleApp) -> ConsoleApp:
    save_example(console_app, "cart-abandonment", publish=True)
    plant_counts(
        console_app,
        "cart-abandonment",
        {
            ("", "", ""): {"entered": 90, "held_out": 10, "conversions": 18},
            ("reminder-1h", "", "email"): {"sent": 85, "opens": 40},
        },
    )
    plant_runs(console_app, "cart-abandonment", {"wait-23h": 4})
    return console_app


def _open(page: Any, path: str) -> Any:
    page.goto(path)
    page.wait_for_selector('svg [data-step-id="@trigger"]')
    return page


def test_the_canvas_shows_each_step_with_its_counts(seeded: ConsoleApp, console_page: Page) -> None:
    page = _open(console_page("viewer"), "/journeys/cart-abandonment")
    drawn = page.eval_on_selector_all("svg [data-step-id]", "nodes => nodes.map(n => n.dataset.stepId)")
    assert {"reminder-1h", "wait-23h", "objections-24h", "wait-48h", "offer-72h", "@trigger", "@goal"} <= set(drawn)
    node = page.locator('[data-step-id="reminder-1h"]')
    # The counts and the panel fill in after the canvas is drawn: waited for, not read at once.
    expect(node.get_by_test_id("node-counts")).to_have_text("85 sent · 40 opened · 0 here now")
    expect(page.locator('[data-step-id="wait-23h"]').get_by_test_id("node-counts")).to_have_text("4 here now")
    # Selecting a node: its settings, template preview links and metrics.
    page.locator('[data-step-id="offer-72h"]').click()
    expect(page.locator("#panel-title")).to_have_text("Send email: offer-72h")
    settings = page.get_by_test_id("panel-settings").text_content()
    assert "variant ten-percent" in settings and "cart-72h-offer-10 (50%)" in settings
    links = page.get_by_test_id("template-link")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
        "/templates/cart-72h-offer-10",
        "/templates/cart-72h-offer-shipping",
    ]
    # ...each rendered on the server with the sample context, the HTML in a frame that runs no script.
    page.wait_for_function("document.querySelectorAll('[data-testid=preview-subject]').length === 2")
    subjects = page.get_by_test_id("preview-subject")
    assert subjects.nth(0).text_content() == "Subject: Hi"  # journey_support's stand-in templates
    frames = page.locator(".nf-node-preview iframe")
    assert frames.count() == 2 and frames.nth(0).get_attribute("sandbox") == ""
    body = frames.nth(0).get_attribute("srcdoc") or ""
    assert "Hello" in body and "{{" not in body  # rendered, with the sample context
    screenshot(page, "journey-canvas")
    page.locator('[data-step-id="@trigger"]').click()
    expect(page.get_by_test_id("panel-metrics")).to_contain_text("entered90held out10")
    assert serious_violations(page) == []


def test_the_canvas_by_keyboard_alone(seeded: ConsoleApp, console_page: Page) -> None:
    page = _open(console_page("viewer"), "/journeys/cart-abandonment")
    focused = lambda: page.evaluate("document.activeElement.dataset.stepId || document.activeElement.tagName")  # noqa: E731
    for _ in range(40):  # Tab from the top of the page until the canvas takes the focus
        page.keyboard.press("Tab")
        if focused() == "@trigger":
            break
    assert focused() == "@trigger"
    page.keyboard.press("ArrowDown")
    assert focused() == "reminder-1h"
    page.keyboard.press("ArrowDown")
    assert focused() == "wait-23h"
    page.keyboard.press("Enter")
    expect(page.locator("#panel-title")).to_have_text("Wait: wait-23h")
    expect(page.get_by_test_id("panel-metrics")).to_contain_text("here now4")
    page.keyboard.press("ArrowUp")
    page.keyboard.press(" ")
    assert page.locator("#panel-title").text_content() == "Send email: reminder-1h"
    # One Tab leaves the canvas: it is one stop, not one per node.
    page.keyboard.press("Tab")
    assert not str(focused()).startswith(("@", "reminder", "wait", "offer", "objections"))


def test_publish_pause_resume_archive_with_confirmations(console_app: ConsoleApp, console_page: Page) -> None:
    doc = save_example(console_app, "browse-abandonment")
    page = _open(console_page("editor"), f"/journeys/{doc['id']}")
    assert page.get_by_test_id("journey-status").text_content() == "draft"

    def confirm(action: str, *words: str) -> None:
        page.get_by_test_id(action).click()
        dialog = page.get_by_test_id("confirm-dialog")
        dialog.wait_for(state="visible")
        text = page.get_by_test_id("confirm-text").text_content()
        for word in words:
            assert word in text, text
        with page.expect_navigation():
            page.get_by_test_id("confirm-yes").click()
        page.wait_for_selector('svg [data-step-id="@trigger"]')

    # Cancel changes nothing.
    page.get_by_test_id("archive").click()
    page.get_by_test_id("confirm-no").click()
    assert page.get_by_test_id("journey-status").text_content() == "draft"

    confirm("publish", "version 1", "0 people would enter at once (of 0 profiles looked at)")
    assert page.get_by_test_id("journey-status").text_content() == "live"
    confirm("pause", "Nobody new enters", "0 people in the journey now are held")
    assert page.get_by_test_id("journey-status").text_content() == "paused"
    confirm("resume", "People enter again")
    assert page.get_by_test_id("journey-status").text_content() == "live"
    confirm("archive", "Final", "can no longer be changed")
    assert page.get_by_test_id("journey-status").text_content() == "archived"
    assert page.get_by_test_id("publish").count() == 0


def test_two_versions_side_by_side(seeded: ConsoleApp, console_page: Page) -> None:
    import yaml

    from tests.console.journey_support import EXAMPLES

    doc = yaml.safe_load((EXAMPLES / "cart-abandonment.yaml").read_text())
    doc["steps"]["wait-48h"]["duration"] = "47h"
    with seeded.admin() as api:
        assert api.put("/api/journeys/cart-abandonment", json=doc).status_code == 200
    page = console_page("viewer")
    page.goto("/journeys/cart-abandonment/versions?a=1&b=draft")
    page.wait_for_selector("#diff .cm-mergeView")
    assert page.locator("#diff .cm-changedLine").count() == 2  # the line on each side
    assert "duration: 47h" in page.locator("#diff").text_content()
    screenshot(page, "journey-versions")
    assert serious_violations(page) == []
    page.goto("/journeys")
    assert page.get_by_test_id("journey-list").is_visible()
    screenshot(page, "journeys")
    assert serious_violations(page) == []


def test_a_fifty_step_canvas_lays_out_within_budget(console_app: ConsoleApp, console_page: Page) -> None:
    doc = fifty_steps()
    with console_app.admin() as api:
        save_templates(api, doc)
        assert api.put("/api/journeys/fifty", json=doc).status_code == 201
    page = _open(console_page("viewer"), "/journeys/fifty")
    assert page.locator("svg [data-step-id]").count() == 52  # 50 steps, the trigger and the goal
    first = float(page.get_attribute("#canvas", "data-layout-ms"))  # the page's own draw, cold
    redraws = page.evaluate(
        """() => [1, 2, 3, 4].map(() => {
          const box = document.getElementById("canvas");
          const started = performance.now();
          NFCanvas.render(box, NFJourney.data.graph, { counts: NFJourney.data.counts });
          box.querySelector("svg").getBoundingClientRect();
          return performance.now() - started;
        })"""
    )
    timings = sorted([first, *redraws])
    print(f"canvas of 50 steps in the journey page: first {first:.1f} ms, redraws {redraws}")
    # The median of the five: one slow draw on a machine shared with other work is noise.
    assert timings[2] <= LAYOUT_BUDGET_MS, timings


def test_add_move_and_remove_a_step_on_the_canvas(console_app: ConsoleApp, console_page: Page) -> None:
    save_example(console_app, "win-back")
    page = _open(console_page("editor"), "/journeys/win-back")
    start = lambda: page.evaluate("NFJourney.data.graph.start")  # noqa: E731
    text = lambda: page.evaluate("NFJourney.editor.state.doc.toString()")  # noqa: E731

    # A wait after the first step: drawn, selected, written into the document.
    page.locator('[data-step-id="incentive"]').click()
    page.get_by_test_id("edit-kind").select_option("wait")
    page.get_by_test_id("edit-slot").select_option("next")
    page.get_by_test_id("add-step").click()
    page.wait_for_selector('svg [data-step-id="wait-1"].selected')
    assert "  wait-1:\n    type: wait\n    duration: 1d\n    next: wait-7d\n" in text()
    assert page.get_by_test_id("edit-state").text_content().startswith("Checked: no errors")

    # Moved up: the run now starts with it.
    page.get_by_test_id("move-up").click()
    page.wait_for_function("() => NFJourney.data.graph.start === 'wait-1'")
    assert start() == "wait-1"
    # A step that cannot move says why.
    page.get_by_test_id("move-up").click()
    page.wait_for_selector("#nf-status:not([hidden])")
    assert "cannot move up" in page.locator("#nf-status").text_content()

    # Its settings edited in place: a wait of 2 hours.
    part = page.get_by_test_id("edit-part")
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('duration')")
    assert part.input_value() == "type: wait\nduration: 1d\nnext: incentive\n"
    part.fill("type: wait\nduration: 2h\nnext: incentive\n")
    page.get_by_test_id("apply-part").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('duration: 2h')")
    page.wait_for_selector('svg [data-step-id="wait-1"]')
    page.wait_for_function("() => NFJourney.data.graph.nodes.some((n) => n.id === 'wait-1' && n.summary === '2h')")

    # Removed: the trigger leads to the step that followed it again.
    page.locator('[data-step-id="wait-1"]').click()
    page.get_by_test_id("remove-step").click()
    page.wait_for_function("() => !NFJourney.data.graph.nodes.some((n) => n.id === 'wait-1')")
    assert start() == "incentive"
    assert "wait-1" not in text()
    assert page.locator('svg [data-step-id="wait-1"]').count() == 0


def test_the_canvas_edits_by_keyboard_alone(console_app: ConsoleApp, console_page: Page) -> None:
    save_example(console_app, "push-streak-7")
    page = _open(console_page("editor"), "/journeys/push-streak-7")
    testid = lambda: page.evaluate("document.activeElement.dataset.testid || document.activeElement.dataset.stepId")  # noqa: E731

    def tab_to(wanted: str) -> None:
        for _ in range(60):
            page.keyboard.press("Tab")
            if testid() == wanted:
                return
        raise AssertionError(f"Tab never reached {wanted}")

    tab_to("@trigger")
    page.keyboard.press("Enter")  # the trigger selected: its panel offers a step on its link
    tab_to("edit-kind")
    page.keyboard.type("wait")  # a closed select takes the option typed
    tab_to("add-step")
    page.keyboard.press("Enter")
    page.wait_for_selector('svg [data-step-id="wait-1"].selected')
    assert testid() == "wait-1"  # the new step has the focus, on the canvas
    assert page.evaluate("NFJourney.data.graph.start") == "wait-1"
    # Its settings, typed: a wait of 2 hours.
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('duration')")
    tab_to("edit-part")
    page.keyboard.press("Control+A")
    page.keyboard.type("type: wait\nduration: 2h\nnext: celebrate\n")
    tab_to("apply-part")
    page.keyboard.press("Enter")
    page.wait_for_function("() => NFJourney.data.graph.nodes.some((n) => n.id === 'wait-1' && n.summary === '2h')")
    # Moved down: the step it led to comes first.
    tab_to("move-down")
    page.keyboard.press("Enter")
    page.wait_for_function("() => NFJourney.data.graph.start === 'celebrate'")
    tab_to("remove-step")
    page.keyboard.press("Enter")
    page.wait_for_function("() => !NFJourney.data.graph.nodes.some((n) => n.id === 'wait-1')")
    assert "wait-1" not in page.evaluate("NFJourney.editor.state.doc.toString()")


def test_the_goal_and_the_exit_rules_are_edited_on_the_canvas(console_app: ConsoleApp, console_page: Page) -> None:
    """Their nodes offer their settings as YAML too (the trigger and the steps have theirs): the
    goal's window and the exit rules, written back into the same document."""
    doc = save_example(console_app, "win-back")
    page = _open(console_page("editor"), f"/journeys/{doc['id']}")
    text = lambda: page.evaluate("NFJourney.editor.state.doc.toString()")  # noqa: E731
    part = page.get_by_test_id("edit-part")

    page.locator('svg [data-step-id="@goal"]').click()
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('within: 14d')")
    assert page.get_by_test_id("add-step").count() == 0  # nothing leads on from the goal
    part.fill(part.input_value().replace("within: 14d", "within: 10d"))
    page.get_by_test_id("apply-part").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('within: 10d')")
    drawn = "t => document.querySelector('svg [data-step-id=\"' + t[0] + '\"] desc').textContent.includes(t[1])"
    page.wait_for_function(drawn, arg=["@goal", "10d"])  # checked and drawn again from the text

    page.locator('svg [data-step-id="@exit"]').click()
    page.wait_for_function("() => document.getElementById('edit-part').value.includes('Order Completed')")
    part.fill("events:\n- event: Order Completed\n- event: Unsubscribed\n")
    page.get_by_test_id("apply-part").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('Unsubscribed')")
    page.wait_for_function(drawn, arg=["@exit", "Unsubscribed"])
    assert page.get_by_test_id("edit-state").text_content().startswith("Checked: no errors")
    written = yaml.safe_load(text())
    assert written["goal"]["within"] == "10d"
    assert [rule["event"] for rule in written["exit"]["events"]] == ["Order Completed", "Unsubscribed"]


def test_the_entry_rules_are_edited_on_the_canvas(console_app: ConsoleApp, console_page: Page) -> None:
    """The entry rules (filter, re-entry, period) have no node of their own: the trigger's node
    shows them and edits them beside the trigger's settings, into the same document."""
    doc = save_example(console_app, "win-back")
    page = _open(console_page("editor"), f"/journeys/{doc['id']}")
    page.locator('svg [data-step-id="@trigger"]').click()
    entry = page.get_by_test_id("edit-entry")
    page.wait_for_function("() => document.getElementById('edit-entry').value.includes('period: 90d')")
    entry.fill("filter:\n- {trait: email, op: exists}\n- {trait: plan, value: free}\nreentry: once\n")
    page.get_by_test_id("apply-entry").click()
    page.wait_for_function("() => NFJourney.editor.state.doc.toString().includes('reentry: once\\n')")
    # Checked and drawn again from the text, the trigger selected again with its new rules.
    page.wait_for_function(
        "() => { const s = document.querySelector('[data-testid=panel-settings]');"
        " return s && s.textContent.includes('re-entryonce') && !s.textContent.includes('90d'); }"
    )
    settings = page.get_by_test_id("panel-settings").text_content()
    assert "plan = free" in settings, settings
    assert page.get_by_test_id("edit-state").text_content().startswith("Checked: no errors")
    written = yaml.safe_load(page.evaluate("NFJourney.editor.state.doc.toString()"))
    filters = [{"trait": "email", "op": "exists"}, {"trait": "plan", "value": "free"}]
    assert written["entry"] == {"filter": filters, "reentry": "once"}
    assert written["trigger"] == doc["trigger"] and written["steps"].keys() == doc["steps"].keys()

    # Rules that do not hold together are written as asked and refused by the checks, by name.
    page.locator('svg [data-step-id="@trigger"]').click()
    page.wait_for_function("() => document.getElementById('edit-entry').value.includes('reentry: once')")
    entry.fill("reentry: once_per_period\n")
    page.get_by_test_id("apply-entry").click()
    page.wait_for_function("() => document.querySelector('[data-testid=edit-state]').dataset.valid === 'false'")
    assert "period" in page.get_by_test_id("edit-problems").text_content()


def test_the_confirmation_counts_the_people_in_flight(seeded: ConsoleApp, console_page: Page) -> None:
    """The 4 runs at the wait (the seeded journey's) are named in pausing's and archiving's
    confirmations; cancelled, nothing changes."""
    page = _open(console_page("editor"), "/journeys/cart-abandonment")
    for action, words in (
        ("pause", "The 4 people in the journey now are held"),
        ("archive", "The 4 people in the journey now end their runs when they next move"),
    ):
        page.get_by_test_id(action).click()
        page.get_by_test_id("confirm-dialog").wait_for(state="visible")
        assert words in page.get_by_test_id("confirm-text").text_content()
        page.get_by_test_id("confirm-no").click()
        page.get_by_test_id("confirm-dialog").wait_for(state="hidden")
    page.reload()
    page.wait_for_selector('svg [data-step-id="@trigger"]')
    assert page.get_by_test_id("journey-status").text_content() == "live"


def test_a_save_on_a_draft_someone_changed_since_is_refused_not_overwriting(
    console_app: ConsoleApp, console_page: Page
) -> None:
    """The editor's save carries the draft's revision the page was loaded with: when another
    editor saved in between, the page says so and their draft stays, rather than the last
    save silently winning."""
    draft = {
        "id": "two-editors",
        "name": "Two editors",
        "trigger": {"type": "event", "event": "Signed Up"},
        "steps": {"done": {"type": "exit"}},
    }
    with console_app.admin() as api:
        assert api.put("/api/journeys/two-editors", json=draft).status_code == 201
    page = _open(console_page("editor"), "/journeys/two-editors")
    assert page.evaluate("NFJourney.data.journey.draft_revision") == 1
    with console_app.admin() as api:  # someone else saves a change meanwhile
        theirs = api.put("/api/journeys/two-editors", json={**draft, "name": "Theirs"}, headers={"If-Match": '"1"'})
        assert theirs.status_code == 200 and theirs.headers["etag"] == '"2"'

    text = page.evaluate("NFJourney.editor.state.doc.toString()")
    page.evaluate(
        "(t) => NFJourney.editor.dispatch({changes: {from: 0, to: NFJourney.editor.state.doc.length, insert: t}})",
        text.replace("name: Two editors", "name: Mine"),
    )
    page.wait_for_selector('[data-testid="edit-state"][data-valid="true"]')
    page.get_by_test_id("save-draft").click()
    page.wait_for_selector("#nf-status:not([hidden])")
    said = page.locator("#nf-status").text_content()
    assert "someone else saved this draft since you opened it" in said and "revision 2" in said
    assert "the draft changed since this page was loaded" in page.get_by_test_id("edit-state").text_content()
    assert "name: Mine" in page.evaluate("NFJourney.editor.state.doc.toString()")  # the text is kept
    with console_app.admin() as api:
        assert api.get("/api/journeys/two-editors").json()["name"] == "Theirs"


def test_a_new_journey_on_a_taken_id_is_refused_not_overwriting(console_app: ConsoleApp, console_page: Page) -> None:
    draft = {"id": "taken", "name": "Taken", "trigger": {"type": "event", "event": "Signed Up"}}
    draft["steps"] = {"done": {"type": "exit"}}
    with console_app.admin() as api:
        assert api.put("/api/journeys/taken", json=draft).status_code == 201
    page = console_page("editor")
    page.goto("/journeys")
    page.get_by_test_id("new-journey-id").fill("taken")
    page.get_by_test_id("new-journey-name").fill("Mine")
    page.get_by_test_id("create-journey").click()
    page.wait_for_selector("#nf-status:not([hidden])")
    assert "There is a journey taken already" in page.locator("#nf-status").text_content()
    with console_app.admin() as api:
        assert api.get("/api/journeys/taken").json()["name"] == "Taken"
