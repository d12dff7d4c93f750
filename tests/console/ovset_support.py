"""What the overview, report and settings pages' tests share: a journey with an experiment
published through the admin API, rollup rows written through the store's own writer, and
numbers read back from a page's cells."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path
from typing import Any

from nudgeflow.store import rollups


def write_rollups(state: Any, rows: list[tuple[rollups.Dims, dict[str, float]]]) -> None:
    rollup = rollups.Rollup()
    for dims, deltas in rows:
        rollup.add(dims, **deltas)
    with state.engine.begin() as conn:
        rollup.write(conn)


def number(text: str) -> float:
    text = text.strip().replace(",", "").replace("\u2009", "")
    return 0.0 if text in ("", "\u2013") else float(text)  # an en dash: no value


def row_html(page: str, attribute: str, value: str) -> str:
    """The <tr> (or element) of `page` whose `attribute` is `value`."""
    found = re.search(rf'<(tr|article|p)[^>]*{attribute}="{re.escape(value)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no element with {attribute}={value!r} in the page"
    return found.group(2)


def metric(fragment: str, name: str) -> float:
    found = re.search(rf'data-metric="{name}"[^>]*>([^<]*)<', fragment)
    assert found, f"no data-metric={name!r} in {fragment[:300]!r}"
    return number(found.group(1))


def text_of(fragment: str) -> str:
    """The text of an HTML fragment, tags removed, entities decoded, spaces folded."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def inside(page: str, testid: str) -> str:
    """The content of the first element whose data-testid is `testid` (up to its closing tag:
    for elements that hold no element of their own name)."""
    found = re.search(rf'<(\w+)[^>]*data-testid="{re.escape(testid)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no element with data-testid={testid!r} in the page"
    return found.group(2)


AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as loaded (evaluated through the
    DevTools protocol, which the page's Content-Security-Policy does not govern)."""
    page.evaluate(AXE.read_text() + "\n;true")
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [f"{v['id']}: {v['help']}" for v in found if v["impact"] in ("serious", "critical")]


JOURNEY = {
    "id": "rep-offer",
    "name": "Offer",
    "trigger": {"type": "event", "event": "Product Added"},
    "holdout": 0.1,
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {
        "offer": {
            "type": "send",
            "channel": "email",
            "variants": [
                {"name": "a", "template": "offer-a", "weight": 1},
                {"name": "b", "template": "offer-b", "weight": 1},
            ],
            "next": "wait",
        },
        "wait": {"type": "wait", "duration": "1d", "next": "nudge"},
        "nudge": {"type": "send", "channel": "push", "template": "nudge"},
    },
}


TEMPLATES = {
    "offer-a": {"channel": "email", "subject": "An offer", "body": "<p>10 % off</p>"},
    "offer-b": {"channel": "email", "subject": "Free shipping", "body": "<p>Free shipping</p>"},
    "nudge": {"channel": "push", "title": "Still thinking?", "body": "Your cart is waiting"},
}


def publish(client: Any, definition: dict[str, Any]) -> None:
    """The journey (and the templates it names) through the admin API, published."""
    for name, source in TEMPLATES.items():
        assert client.put(f"/api/templates/{name}", json=source).is_success
    assert client.put(f"/api/journeys/{definition['id']}", json=definition).is_success
    assert client.post(f"/api/journeys/{definition['id']}/publish").is_success
