"""The console's segment pages over HTTP: the list with sizes, a segment's definition, size
over time, members paged, and why a person is in or out (the engine's own answer)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.store import segments as store
from tests.console.engine_console import send, start_engine_console
from tests.console.support import ConsoleApp

PRO_BUYERS = {
    "id": "pro-buyers",
    "name": "Pro <buyers>",
    "when": {"all": [{"trait": "plan", "value": "pro"}, {"performed": "Order Completed", "within": "30d"}]},
}


@pytest.fixture(scope="module")
def console_app() -> Iterator[ConsoleApp]:
    """This module's console runs the engine (overrides the conftest's, which does not)."""
    app = start_engine_console(Path(tempfile.mkdtemp(prefix="nudgeflow-console-")))
    with app.admin() as api:
        assert api.put("/api/segments/pro-buyers", json=PRO_BUYERS).status_code == 201
    app.state.runtime.run_until_idle()
    send(app, "/v1/identify", {"userId": "ada", "traits": {"plan": "pro"}})
    send(app, "/v1/track", {"userId": "ada", "event": "Order Completed"})
    send(app, "/v1/identify", {"userId": "bo", "traits": {"plan": "free"}})
    send(app, "/v1/track", {"userId": "bo", "event": "Order Completed"})
    yield app
    app.server.stop()


def test_the_list_and_a_segments_page(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    listed = viewer.get("/segments")
    assert listed.status_code == 200
    row = re.search(r'<tr data-segment="pro-buyers">(.*?)</tr>', listed.text, re.S)
    assert row and 'data-testid="segment-size">1<' in row.group(1) and "Pro &lt;buyers&gt;" in row.group(1)

    page = viewer.get("/segments/pro-buyers")
    assert page.status_code == 200
    assert "Pro &lt;buyers&gt;" in page.text and "<buyers>" not in page.text
    definition = re.search(r'data-testid="segment-definition" data-yaml>(.*?)</pre>', page.text, re.S)
    assert definition and "performed: Order Completed" in definition.group(1) and "within: 30d" in definition.group(1)
    assert 'data-testid="segment-size">1<' in page.text
    assert 'data-testid="segment-chart"' in page.text and "<polyline" in page.text
    members = re.findall(r'<tr data-profile="([^"]+)">\s*<td><code>[^<]+</code></td>\s*<td>([^<]+)</td>', page.text)
    assert [user for _, user in members] == ["ada"]
    assert viewer.get("/segments/nope").status_code == 404


def test_why_is_a_person_in_or_out(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    out = viewer.get("/segments/pro-buyers", params={"person": "bo"})
    panel = re.search(r'data-testid="why-panel" data-member="(\w+)"', out.text)
    assert panel and panel.group(1) == "false"
    holds = dict(re.findall(r'data-path="([^"]+)" data-holds="(\w+)"', out.text))
    assert holds == {"when": "false", "when.all[0]": "false", "when.all[1]": "true"}
    assert "is not in" in out.text
    inside = viewer.get("/segments/pro-buyers", params={"person": "ada"})
    assert 'data-member="true"' in inside.text and "is in" in inside.text
    missing = viewer.get("/segments/pro-buyers", params={"person": "nobody"})
    assert 'data-testid="why-error"' in missing.text and "no person" in missing.text


def test_members_are_paged(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    now = to_ms(console_app.clock.now())
    ws = console_app.workspace_id
    with console_app.state.engine.connect() as conn:
        size = store.sizes(conn, ws, "pro-buyers")["pro-buyers"]
    # Members written as the engine writes them (no profile rows: shown as anonymous).
    changes = {(ws, "pro-buyers", f"zz{n:03d}"): (True, now) for n in range(60)}
    with console_app.state.engine.begin() as conn:
        store.write_changes(conn, changes)
    viewer = signed_in("viewer")
    first = viewer.get("/segments/pro-buyers")
    ids = re.findall(r'<tr data-profile="([^"]+)"', first.text)
    assert len(ids) == 50 and f'data-testid="segment-size">{size + 60}<' in first.text
    after = re.search(r'href="/segments/pro-buyers\?after=([^"]+)" data-testid="members-next"', first.text)
    assert after and after.group(1) == ids[-1]
    second = viewer.get("/segments/pro-buyers", params={"after": after.group(1)})
    rest = re.findall(r'<tr data-profile="([^"]+)"', second.text)
    assert len(rest) == size + 60 - 50 and not set(rest) & set(ids)
    assert 'data-testid="members-next"' not in second.text
