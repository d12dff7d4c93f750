"""The journey pages over HTTP (web/console/journeys.py): the list with its counts and lift, the
canvas page's data, the YAML download that `journeys apply` takes (a journey written as code
comes back the same journey), versions side by side, and no journey of another workspace."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nudgeflow.model.journey_checks import validate_files
from nudgeflow.model.journeys import Journey
from tests.console.journey_support import EXAMPLES, plant_counts, plant_runs, save_example, save_templates
from tests.console.support import ConsoleApp

SignedIn = Callable[[str], httpx.Client]


@pytest.fixture(scope="module")
def seeded(console_app: ConsoleApp) -> ConsoleApp:
    save_example(console_app, "cart-abandonment", publish=True)
    save_example(console_app, "welcome")  # a draft, never published
    plant_counts(
        console_app,
        "cart-abandonment",
        {
            ("", "", ""): {"entered": 90, "held_out": 10, "conversions": 18, "conversions_held_out": 1},
            ("reminder-1h", "", "email"): {"sent": 85, "step_recipients": 85, "opens": 40, "clicks": 12},
        },
    )
    plant_runs(console_app, "cart-abandonment", {"wait-23h": 4, "wait-48h": 2})
    return console_app


def page_data(html: str, block: str = "journey-data") -> Any:
    found = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', html, re.DOTALL)
    assert found, html[:2000]
    return json.loads(found.group(1))


def test_the_list_shows_status_counts_and_lift(seeded: ConsoleApp, signed_in: SignedIn) -> None:
    client = signed_in("viewer")
    answer = client.get("/journeys")
    assert answer.status_code == 200, answer.text
    html = answer.text
    row = re.search(r'<tr data-journey-id="cart-abandonment">(.*?)</tr>', html, re.DOTALL)
    assert row, html
    cells = row.group(1)
    assert 'data-testid="journey-status">live<' in cells
    assert 'data-testid="in-flight">6<' in cells
    assert 'data-testid="sent">85<' in cells
    assert 'data-testid="conversions">18<' in cells
    # 18/90 against 1/10: +10 points, with its interval.
    lift = re.search(r'data-testid="lift">([^<]*)<', cells)
    assert lift and re.fullmatch(r"\+10\.0 pp \([-+][\d.]+ to \+[\d.]+\)", lift.group(1)), lift
    welcome = re.search(r'<tr data-journey-id="welcome">(.*?)</tr>', html, re.DOTALL)
    assert welcome and 'data-testid="journey-status">draft<' in welcome.group(1)
    assert "no holdout" in welcome.group(1)


def test_the_list_is_paged(own_console_app: ConsoleApp) -> None:
    app = own_console_app
    with app.admin() as api:
        save_templates(api, {"steps": {"s": {"type": "send", "channel": "email", "template": "t"}}})
        for i in range(27):
            doc = {
                "name": f"Journey {i:02d}",
                "trigger": {"type": "event", "event": "E"},
                "steps": {"s": {"type": "send", "channel": "email", "template": "t"}},
            }
            assert api.put(f"/api/journeys/j{i:02d}", json=doc).status_code == 201
    client = app.sign_in("viewer@example.com")
    first, second = client.get("/journeys").text, client.get("/journeys?page=2").text
    beyond = client.get("/journeys?page=99").text  # past the end: the last page
    assert client.get("/journeys?page=0").status_code == 422
    client.close()
    ids = lambda html: re.findall(r'<tr data-journey-id="([^"]+)"', html)  # noqa: E731
    assert ids(first) == [f"j{i:02d}" for i in range(25)]
    assert ids(second) == ["j25", "j26"] == ids(beyond)
    assert "Page 1 of 2 (27 journeys)" in first and 'data-testid="next-page"' in first


def test_the_canvas_page_carries_the_graph_and_counts(seeded: ConsoleApp, signed_in: SignedIn) -> None:
    client = signed_in("viewer")
    answer = client.get("/journeys/cart-abandonment")
    assert answer.status_code == 200, answer.text
    data = page_data(answer.text)
    ids = {node["id"] for node in data["graph"]["nodes"]}
    assert {"@trigger", "reminder-1h", "wait-23h", "objections-24h", "wait-48h", "offer-72h", "@goal"} <= ids
    counts = data["counts"]
    assert counts["@trigger"] == [["entered", 90], ["held out", 10]]
    assert counts["reminder-1h"] == [["sent", 85], ["opened", 40], ["clicked", 12], ["here now", 0]]
    assert counts["wait-23h"] == [["here now", 4]]
    assert counts["@goal"] == [["converted", 18]]
    assert data["journey"]["in_flight"] == 6 and data["journey"]["status"] == "live"
    assert data["can_edit"] is False
    # A viewer gets no buttons that change anything (the API refuses them anyway).
    assert 'data-action="publish"' not in answer.text
    # The journey's report is one link away, and answers.
    assert 'href="/journeys/cart-abandonment/report" data-testid="report-link"' in answer.text
    assert client.get("/journeys/cart-abandonment/report").status_code == 200
    client = signed_in("editor")
    html = client.get("/journeys/cart-abandonment").text
    assert 'data-action="publish"' in html and 'data-action="pause"' in html and 'data-action="resume"' not in html
    assert page_data(html)["can_edit"] is True


def test_the_page_data_cannot_close_its_script_block(console_app: ConsoleApp, signed_in: SignedIn) -> None:
    doc = {
        "name": "</script><script>alert(1)</script>",
        "trigger": {"type": "event", "event": "</script><b>"},
        "steps": {"bye": {"type": "exit"}},
    }
    with console_app.admin() as api:
        assert api.put("/api/journeys/sneaky", json=doc).status_code == 201
    client = signed_in("viewer")
    html = client.get("/journeys/sneaky").text
    assert "<script>alert(1)" not in html and "</script><b>" not in html
    assert page_data(html)["graph"]["nodes"][0]["summary"] == "</script><b>"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.yaml")))
def test_the_yaml_download_is_the_same_journey(
    console_app: ConsoleApp, signed_in: SignedIn, tmp_path: Path, name: str
) -> None:
    """A journey written as code opens unchanged: saved as written, downloaded with no edit, it
    reads as the same journey, and the file passes the checks `journeys apply` runs."""
    doc = save_example(console_app, name)
    client = signed_in("viewer")
    answer = client.get(f"/journeys/{doc['id']}/definition.yaml")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == f'attachment; filename="{doc["id"]}.yaml"'
    downloaded = yaml.safe_load(answer.text)
    assert Journey.model_validate(downloaded) == Journey.model_validate(doc)
    path = tmp_path / f"{name}.yaml"
    path.write_text(answer.text)
    assert [p for p in validate_files([path]) if p.problem.severity == "error"] == []
    # And saved back through the API, it is no change at all.
    with console_app.admin() as api:
        again = api.put(f"/api/journeys/{doc['id']}", content=answer.text, headers={"Content-Type": "application/yaml"})
        assert again.status_code == 200, again.text
        assert api.get(f"/api/journeys/{doc['id']}").json()["draft"] == Journey.model_validate(doc).model_dump(
            mode="json", by_alias=True
        )


def test_versions_side_by_side(seeded: ConsoleApp, signed_in: SignedIn) -> None:
    doc = yaml.safe_load((EXAMPLES / "cart-abandonment.yaml").read_text())
    doc["steps"]["wait-23h"]["duration"] = "20h"
    with seeded.admin() as api:
        assert api.put("/api/journeys/cart-abandonment", json=doc).status_code == 200
    client = signed_in("viewer")
    answer = client.get("/journeys/cart-abandonment/versions")
    same = client.get("/journeys/cart-abandonment/versions?a=1&b=1").text
    missing = client.get("/journeys/cart-abandonment/versions?a=7")
    canvas = client.get("/journeys/cart-abandonment?version=1")
    assert answer.status_code == 200, answer.text
    assert 'data-version="1"' in answer.text
    assert "Version 1 against the draft: 1 changed line." in re.sub(r"\s+", " ", answer.text)
    data = page_data(answer.text, "diff-data")
    assert "duration: 23h" in data["left"]["text"] and "duration: 20h" in data["right"]["text"]
    assert "the same definition" in same
    assert missing.status_code == 404
    # The published version is drawn as published: 23 hours.
    nodes = {n["id"]: n for n in page_data(canvas.text)["graph"]["nodes"]}
    assert nodes["wait-23h"]["summary"] == "23h"


def test_no_journey_of_another_workspace(seeded: ConsoleApp, signed_in: SignedIn) -> None:
    other = seeded.server.workspace("elsewhere")
    with seeded.server.admin(other.admin_token) as api:
        doc = {"name": "Theirs", "trigger": {"type": "event", "event": "E"}, "steps": {"bye": {"type": "exit"}}}
        assert api.put("/api/journeys/theirs", json=doc).status_code == 201
    plant_runs(seeded, "theirs", {"bye": 3}, workspace_id=other.workspace_id)
    client = signed_in("admin")
    for path in (
        "/journeys/theirs",
        "/journeys/theirs/versions",
        "/journeys/theirs/definition.yaml",
        "/journeys/cart-abandonment?version=99",
    ):
        assert client.get(path).status_code == 404, path
    # A page says so as a page (its navigation, a way back), not as the admin API's JSON.
    for path in ("/journeys/theirs", "/journeys/theirs/versions", "/journeys/cart-abandonment/versions?a=99"):
        answer = client.get(path)
        assert answer.headers["content-type"].startswith("text/html"), path
        assert "<h1>Not found</h1>" in answer.text and 'href="/journeys"' in answer.text, path
    assert 'data-journey-id="theirs"' not in client.get("/journeys").text


def test_pages_need_a_session(console_app: ConsoleApp) -> None:
    client = console_app.client()
    for path in ("/journeys", "/journeys/cart-abandonment", "/journeys/x/definition.yaml"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in"), path
    client.close()


def test_the_graph_of_a_text_being_edited(console_app: ConsoleApp, signed_in: SignedIn) -> None:
    text = (EXAMPLES / "welcome.yaml").read_text()
    client = signed_in("viewer")
    answer = client.post("/journeys/graph", content=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 200, answer.text
    steps = yaml.safe_load(text)["steps"]
    assert set(steps) <= {n["id"] for n in answer.json()["graph"]["nodes"]}
    # Not yet a journey (mid-typing): no graph, and no error either.
    for unfinished in ("id: x\nname: [", "id: x\n", "a: 1\n---\nb: 2\n", "\xff"):
        got = client.post("/journeys/graph", content=unfinished.encode("latin-1"))
        assert got.status_code == 200 and got.json() == {"graph": None}, unfinished
    assert client.post("/journeys/graph", content=b"#" * ((1 << 20) + 1)).status_code == 413
    # Without the session's CSRF header, or without a session: refused.
    no_csrf = client.post("/journeys/graph", content=text, headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403
    anonymous = console_app.client()
    assert anonymous.post("/journeys/graph", content=text).status_code == 401
    anonymous.close()


ALIAS_BOMB = "\n".join(
    ["a0: &a0 [" + ", ".join(["x"] * 20) + "]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 20) + "]" for i in range(1, 5)]
    + ["id: *a4"]
)


def test_structural_edits_of_a_text(console_app: ConsoleApp, signed_in: SignedIn) -> None:
    text = (EXAMPLES / "cart-abandonment.yaml").read_text()
    client = signed_in("viewer")  # it reads and changes nothing: any role may
    added = client.post(
        "/journeys/edit", json={"yaml": text, "op": "add", "step": "@trigger", "slot": "start", "kind": "wait"}
    )
    assert added.status_code == 200, added.text
    doc = yaml.safe_load(added.json()["yaml"])
    assert added.json()["step"] == "wait-1" and doc["start"] == "wait-1"
    assert doc["steps"]["wait-1"] == {"type": "wait", "duration": "1d", "next": "reminder-1h"}
    assert Journey.model_validate(doc).steps.keys() >= {"wait-1", "reminder-1h"}
    moved = client.post(
        "/journeys/edit", json={"yaml": added.json()["yaml"], "op": "move", "step": "wait-1", "direction": "down"}
    )
    assert yaml.safe_load(moved.json()["yaml"])["start"] == "reminder-1h"
    part = client.post("/journeys/edit", json={"yaml": text, "op": "part", "step": "wait-23h"})
    assert part.json()["yaml"] == "type: wait\nduration: 23h\nnext: objections-24h\n"
    changed = client.post(
        "/journeys/edit", json={"yaml": text, "op": "set", "step": "wait-23h", "part": "type: wait\nduration: 20h\n"}
    )
    assert yaml.safe_load(changed.json()["yaml"])["steps"]["wait-23h"] == {"type": "wait", "duration": "20h"}
    for asked, detail in (
        ({"yaml": text, "op": "set", "step": "wait-23h", "part": "a: ["}, "the settings are not YAML"),
        # Aliases standing for 160,000 values: refused at once, as PUT /api/journeys refuses them.
        ({"yaml": text, "op": "set", "step": "wait-23h", "part": ALIAS_BOMB}, "aliases expand"),
        ({"yaml": ALIAS_BOMB, "op": "remove", "step": "x"}, "aliases expand"),
        ({"yaml": text, "op": "remove", "step": "ghost"}, "no step 'ghost'"),
        ({"yaml": text, "op": "move", "step": "reminder-1h", "direction": "up"}, "cannot move up"),
        ({"yaml": text, "op": "fly", "step": "reminder-1h"}, "no edit 'fly'"),
        ({"yaml": "id: [", "op": "remove", "step": "x"}, "expected JSON with yaml"),
        ({"yaml": "just text", "op": "remove", "step": "x"}, "not a journey document yet"),
        ({"op": "remove"}, "expected JSON with yaml"),
    ):
        answer = client.post("/journeys/edit", json=asked)
        assert answer.status_code == 422 and detail in answer.json()["detail"], (asked, answer.text)
    assert client.post("/journeys/edit", content=b"not json").status_code == 422


def test_the_entry_rules_edited_as_a_part(console_app: ConsoleApp, signed_in: SignedIn) -> None:
    text = (EXAMPLES / "cart-abandonment.yaml").read_text()
    client = signed_in("viewer")
    part = client.post("/journeys/edit", json={"yaml": text, "op": "part", "step": "@entry"})
    assert part.status_code == 200, part.text
    assert yaml.safe_load(part.json()["yaml"]) == {"filter": [{"trait": "email", "op": "exists"}]}
    rules = "filter:\n- {trait: plan, value: free}\nreentry: once_per_period\nperiod: 30d\n"
    changed = client.post("/journeys/edit", json={"yaml": text, "op": "set", "step": "@entry", "part": rules})
    assert changed.status_code == 200, changed.text
    doc = yaml.safe_load(changed.json()["yaml"])
    assert doc["entry"] == yaml.safe_load(rules) and doc["trigger"] == yaml.safe_load(text)["trigger"]
    assert Journey.model_validate(doc).entry.reentry == "once_per_period"
    refused = client.post("/journeys/edit", json={"yaml": text, "op": "set", "step": "@entry", "part": "once"})
    assert refused.status_code == 422 and "a mapping" in refused.json()["detail"]
