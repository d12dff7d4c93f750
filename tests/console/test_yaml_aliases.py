"""A viewer's YAML body cannot make the server walk billions of values: aliases of aliases
("billion laughs") are refused before anything walks the document (model/yaml_limits.py).

Before, a 313-byte journey sent to POST /api/journeys/validate (a viewer may: it only
checks) held the server's event loop for 5 seconds and each further level of ten aliases
multiplied that by ten; a 460-byte template preview context made the json filter build a
420 MB string."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.console.support import ConsoleApp

YAML = {"Content-Type": "application/yaml"}


def laughs(levels: int) -> str:
    """Anchors a0 … a<levels-1>, each ten aliases of the one before: the last stands for
    10**levels strings, from a few hundred bytes."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_a_journey_whose_aliases_expand_past_the_budget_is_refused(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    viewer = signed_in("viewer")
    body = "id: j\n" + laughs(6) + "z: *a5\n"
    assert len(body) < 400
    answer = viewer.post("/api/journeys/validate", content=body, headers=YAML)
    assert answer.status_code == 422, answer.text
    message = answer.json()["problems"][0]["message"]
    assert message.startswith("not valid YAML: its aliases expand to 2,"), message


def test_a_recursive_anchor_is_refused(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    answer = viewer.post("/api/journeys/validate", content="id: j\nloop: &l [*l]\n", headers=YAML)
    assert answer.status_code == 422, answer.text
    assert "recursive anchor" in answer.json()["problems"][0]["message"]


def test_a_few_aliases_are_still_accepted(console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]) -> None:
    viewer = signed_in("viewer")
    text = (
        "id: anchors\nname: Anchors\ntrigger: {event: Signed Up}\n"
        "steps:\n  first: &wait {wait: 1h, next: second}\n  second: {<<: *wait, next: null}\n"
    )
    answer = viewer.post("/api/journeys/validate", content=text, headers=YAML)
    assert answer.status_code == 200, answer.text
    assert not any("aliases" in p["message"] for p in answer.json()["problems"])


def test_a_template_preview_context_whose_aliases_expand_past_the_budget_is_refused(
    console_app: ConsoleApp, signed_in: Callable[[str], httpx.Client]
) -> None:
    viewer = signed_in("viewer")
    body = laughs(7) + "source: {channel: email, subject: hi, body: '{{ z | json }}'}\ncontext: {z: *a6}\n"
    assert len(body) < 500
    answer = viewer.post("/api/templates/t/preview", content=body, headers=YAML)
    assert answer.status_code == 400, answer.text
    assert "its aliases expand to 2" in answer.json()["detail"], answer.text
