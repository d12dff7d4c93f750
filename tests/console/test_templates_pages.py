"""The console's template pages over HTTP: the list (paged), the editor page, a version diff;
what a viewer and an editor may do; and the preview API a viewer's page calls."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import orjson

from nudgeflow.content.templates import parse_source
from nudgeflow.core.clock import to_ms
from nudgeflow.store import templates as store
from tests.console.support import ConsoleApp

WELCOME = {
    "subject": "Welcome, {{ profile.first_name | default: 'friend' }}",
    "body": "<mjml><mj-body><mj-section><mj-column><mj-text>Hi</mj-text></mj-column></mj-section></mj-body></mjml>",
}


def _data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="template-data">(.*?)</script>', html, re.S)
    assert found, html[:500]
    return orjson.loads(found.group(1))


def test_the_list_is_paged_and_the_editor_shows_a_version(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    now = to_ms(console_app.clock.now())
    # 1,000 templates straight into the store (compiling each would only slow the test).
    text = parse_source(WELCOME).canonical_json()
    with console_app.state.engine.begin() as conn:
        for n in range(1000):
            store.store_version(conn, console_app.workspace_id, f"bulk-{n:04d}", "email", text, None, now)
    viewer = signed_in("viewer")
    first = viewer.get("/templates")
    assert first.status_code == 200, first.text
    assert "1000 templates" in first.text
    assert first.text.count("<tr data-template=") == 50
    assert 'href="/templates?after=bulk-0049&amp;limit=50"' in first.text
    second = viewer.get("/templates", params={"after": "bulk-0049"})
    names = re.findall(r'<tr data-template="([^"]+)"', second.text)
    assert names[0] == "bulk-0050" and len(names) == 50
    last = viewer.get("/templates", params={"after": "bulk-0990"})
    assert last.text.count("<tr data-template=") == 9 and "templates-next" not in last.text

    page = viewer.get("/templates/bulk-0001")
    assert page.status_code == 200
    data = _data(page.text)
    assert data["name"] == "bulk-0001" and data["channel"] == "email" and data["version"] == 1
    assert data["can_edit"] is False and 'data-testid="template-save"' not in page.text
    assert 'data-testid="test-send-form"' not in page.text
    assert 'sandbox=""' in page.text  # previews never run the email's scripts
    assert viewer.get("/templates/nope!").status_code == 404
    assert viewer.get("/templates/bulk-0001", params={"version": 7}).status_code == 404
    assert viewer.get("/templates", params={"limit": 0}).status_code == 422
    # The "open or start" form: to the editor of that name, new or not; a bad name is said.
    opened = viewer.get("/templates", params={"open": "spring sale", "channel": "push"})
    assert opened.status_code == 422 and "template name" in opened.text
    opened = viewer.get("/templates", params={"open": "spring-sale", "channel": "push"})
    assert opened.status_code == 303 and opened.headers["location"] == "/templates/spring-sale?channel=push"
    assert _data(viewer.get(opened.headers["location"]).text)["channel"] == "push"


def test_an_editor_saves_through_the_api_and_compares_versions(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    editor = signed_in("editor")
    new = editor.get("/templates/welcome-diff")
    assert new.status_code == 200 and "nothing is stored until you save" in new.text
    assert _data(new.text)["exists"] is False and 'data-testid="template-save"' in new.text
    assert editor.put("/api/templates/welcome-diff", json=WELCOME).status_code == 201
    hostile = {**WELCOME, "subject": "Hello </script><script>alert(1)</script>", "preheader": "new line"}
    assert editor.put("/api/templates/welcome-diff", json=hostile).status_code == 200
    page = editor.get("/templates/welcome-diff", params={"from": 1, "to": 2})
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text  # escaped in the fields, the data block and the diff
    assert _data(page.text)["source"]["subject"] == hostile["subject"]
    rows = re.findall(r'<tr class="nf-diff-(add|del|same)">.*?<code>(.*?)</code>', page.text, re.S)
    assert any(kind == "del" and text.startswith("subject:") and "Welcome" in text for kind, text in rows)
    assert any(kind == "add" and text.startswith("subject:") and "Hello &lt;/script&gt;" in text for kind, text in rows)
    assert ("add", "preheader: new line") in rows
    assert any(kind == "same" and text.startswith("body:") for kind, text in rows)
    assert 'data-testid="test-send-form" data-version="2"' in page.text
    old = editor.get("/templates/welcome-diff", params={"version": 1})
    assert "Version 1 of 2" in old.text and _data(old.text)["source"]["subject"] == WELCOME["subject"]
    # A push template's test goes to a person's devices: the form offers a person only.
    push = {"channel": "push", "title": "Hi", "body": "there"}
    assert editor.put("/api/templates/ping-page", json=push).status_code == 201
    form = editor.get("/templates/ping-page").text
    assert 'data-testid="test-send-form" data-version="1"' in form
    assert '<option value="profile">a person, with their context, to their devices</option>' in form
    assert '<option value="to">' not in form


def test_a_viewer_may_preview_but_not_save_or_send(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    viewer = signed_in("viewer")
    preview = viewer.post("/api/templates/anything/preview", json={"source": WELCOME, "sample": True})
    assert preview.status_code == 200, preview.text
    assert preview.json()["subject"].startswith("Welcome, ")
    assert viewer.put("/api/templates/anything", json=WELCOME).status_code == 403
    assert viewer.post("/api/templates/anything/test-send", json={"to": "qa@example.com"}).status_code == 403
