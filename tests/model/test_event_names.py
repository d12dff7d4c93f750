"""The event names Nudgeflow emits and the engine reads are spelled once, in model/event_names.

The engine recognizes engagement by exact string: a name spelled a second time somewhere
could drift and silently break "branch on opened".
"""

from __future__ import annotations

import ast
from pathlib import Path

import nudgeflow
from nudgeflow.core.engine import ENGAGEMENT
from nudgeflow.model import event_names
from nudgeflow.web.push_reports import EVENTS as PUSH_REPORT_EVENTS

PACKAGE = Path(nudgeflow.__file__).parent
HOME = Path(event_names.__file__)
# Calls whose string argument may equal an event name without being one (a page's title).
NOT_EVENTS = {"_page"}


def _spelled_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in NOT_EVENTS:
            skipped.update(id(arg) for arg in node.args)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in event_names.ALL
        and id(node) not in skipped
    ]


def test_no_module_spells_an_event_name_itself() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {name!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != HOME
        for line, name in _spelled_names(path)
    ]
    assert found == [], "import the constant from nudgeflow.model.event_names:\n" + "\n".join(found)


def test_every_name_the_engine_reads_is_a_constant() -> None:
    assert set(ENGAGEMENT) <= event_names.ALL


def test_the_engine_reads_the_engagement_nudgeflow_emits() -> None:
    emitted_and_read = {name: ENGAGEMENT[name] for name in event_names.EMITTED if name in ENGAGEMENT}
    assert emitted_and_read == {
        event_names.MESSAGE_DELIVERED: "delivered",
        event_names.MESSAGE_FAILED: "failed",
        event_names.EMAIL_OPENED: "opened",
        event_names.EMAIL_LINK_CLICKED: "clicked",
        event_names.PUSH_DELIVERED: "delivered",
        event_names.PUSH_CLICKED: "clicked",
    }
    # The push reports the service worker sends are engagement the engine records.
    assert set(PUSH_REPORT_EVENTS.values()) <= set(ENGAGEMENT)


def test_names_are_unique() -> None:
    spelled = [value for name, value in vars(event_names).items() if name.isupper() and isinstance(value, str)]
    assert len(spelled) == len(set(spelled)) == len(event_names.ALL)
