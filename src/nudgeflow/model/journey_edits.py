"""The canvas's structural edits of a journey document: add a step on a link, remove a step, move
a step up or down a chain. Pure functions over the document as data (the YAML's mapping): each
returns a new document and leaves the given one alone. The result is checked like any other text
(`journeys validate`); these only keep the links whole.

A link is named as on the canvas (model/journey_graph.py): the node it leaves ("@trigger" or a
step id) and its slot (`start`, `next`, `on_event`, `on_timeout`, `cases.N`, `default`, `paths.N`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from nudgeflow.errors import ModelError
from nudgeflow.model import event_names

TRIGGER = "@trigger"
STEP_KINDS = ("send", "wait", "wait_for_event", "branch", "split", "update_profile", "exit")
SINGLE_NEXT = ("send", "wait", "update_profile")  # the kinds with one way out, `next`


class EditError(ModelError, ValueError):
    """An edit that does not apply to this document (no such step or link, a step that cannot move)."""


def _steps(doc: dict[str, Any]) -> dict[str, Any]:
    steps = doc.get("steps")
    if not isinstance(steps, dict) or not all(isinstance(step, dict) for step in steps.values()):
        raise EditError("the document's `steps` is not a mapping of steps: fix it in the text first")
    return steps


def _start(doc: dict[str, Any], steps: dict[str, Any]) -> str | None:
    start = doc.get("start")
    return start if isinstance(start, str) else next(iter(steps), None)


def _get(doc: dict[str, Any], source: str, slot: str) -> tuple[dict[str, Any], str]:
    """(the mapping holding the link, its key)."""
    if source == TRIGGER:
        if slot != "start":
            raise EditError("the trigger's only link is `start`")
        return doc, "start"
    steps = _steps(doc)
    step = steps.get(source)
    if step is None:
        raise EditError(f"no step {source!r}")
    match = re.fullmatch(r"(cases|paths)\.(\d+)", slot)
    if match:
        items = step.get(match.group(1))
        index = int(match.group(2))
        if not isinstance(items, list) or index >= len(items) or not isinstance(items[index], dict):
            raise EditError(f"step {source!r} has no {slot}")
        return items[index], "next"
    allowed: dict[str, tuple[str, ...]] = {
        "send": ("next",),
        "wait": ("next",),
        "update_profile": ("next",),
        "branch": ("default",),
        "wait_for_event": ("on_event", "on_timeout"),
    }
    if slot not in allowed.get(str(step.get("type")), ()):
        raise EditError(f"step {source!r} ({step.get('type')}) has no link {slot!r}")
    return step, slot


def _target(doc: dict[str, Any], source: str, slot: str) -> str | None:
    holder, key = _get(doc, source, slot)
    if source == TRIGGER and key not in holder:
        return _start(doc, _steps(doc))
    value = holder.get(key)
    return value if isinstance(value, str) else None


def _set(doc: dict[str, Any], source: str, slot: str, target: str | None) -> None:
    holder, key = _get(doc, source, slot)
    if target is None and source != TRIGGER:
        holder.pop(key, None)
    else:
        holder[key] = target


def _links(doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(source, slot, target) of every link; the trigger's first."""
    steps = _steps(doc)
    out: list[tuple[str, str, str | None]] = [(TRIGGER, "start", _start(doc, steps))]
    for sid, step in steps.items():
        kind = step.get("type")
        slots: list[str] = []
        if kind in SINGLE_NEXT:
            slots = ["next"]
        elif kind == "wait_for_event":
            slots = ["on_event", "on_timeout"]
        elif kind in ("branch", "split"):
            key = "cases" if kind == "branch" else "paths"
            items = step.get(key)
            slots = [f"{key}.{i}" for i in range(len(items) if isinstance(items, list) else 0)]
            slots += ["default"] if kind == "branch" else []
        for slot in slots:
            out.append((str(sid), slot, _target(doc, str(sid), slot)))
    return out


def _free_id(steps: dict[str, Any], kind: str) -> str:
    base = kind.replace("_", "-")
    n = 1
    while f"{base}-{n}" in steps:
        n += 1
    return f"{base}-{n}"


def new_step(kind: str, then: str | None) -> dict[str, Any]:
    """A step of this kind that reads as a journey, going on to `then`: the values to change
    next are plain (a template named `new-template`, one day); the checks name what is missing."""
    rest: dict[str, Any] = {"next": then} if then is not None else {}
    if kind == "send":
        return {"type": "send", "channel": "email", "template": "new-template", **rest}
    if kind == "wait":
        return {"type": "wait", "duration": "1d", **rest}
    if kind == "update_profile":
        return {"type": "update_profile", "set": {"updated_by_journey": True}, **rest}
    if kind == "wait_for_event":
        return {
            "type": "wait_for_event",
            "event": event_names.EMAIL_OPENED,
            "timeout": "1d",
            "on_event": then,
            "on_timeout": then,
        }
    if kind == "branch":
        return {
            "type": "branch",
            "cases": [{"when": [{"trait": "email", "op": "exists"}], "next": then}],
            "default": then,
        }
    if kind == "split":
        return {
            "type": "split",
            "paths": [{"name": "a", "weight": 1, "next": then}, {"name": "b", "weight": 1, "next": then}],
        }
    if kind == "exit":
        return {"type": "exit"}
    raise EditError(f"no kind of step {kind!r} (one of {', '.join(STEP_KINDS)})")


def add_step(doc: dict[str, Any], source: str, slot: str, kind: str) -> tuple[dict[str, Any], str]:
    """A new step on the link (source, slot): the link leads to it, and it to where the link led.
    Returns the new document and the new step's id."""
    out = copy.deepcopy(doc)
    steps = _steps(out)
    then = _target(out, source, slot)
    step_id = _free_id(steps, kind)
    steps[step_id] = new_step(kind, then)
    _set(out, source, slot, step_id)
    if source == TRIGGER:
        out["start"] = step_id
    return out, step_id


def remove_step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    """The step gone; every link to it leads where it led (a step with several ways out, or
    none, leaves its incoming links ending the run)."""
    out = copy.deepcopy(doc)
    steps = _steps(out)
    step = steps.get(step_id)
    if step is None:
        raise EditError(f"no step {step_id!r}")
    if len(steps) == 1:
        raise EditError("a journey needs at least one step: this is its last")
    then = step.get("next") if step.get("type") in SINGLE_NEXT and isinstance(step.get("next"), str) else None
    was_start = _start(out, steps) == step_id
    for source, slot, target in _links(out):
        if target == step_id and source not in (step_id, TRIGGER):
            _set(out, source, slot, then)
    del steps[step_id]
    if was_start:
        # The run now starts where the removed step led (else at the first step listed).
        out.pop("start", None)
        if then is not None and then in steps and then != next(iter(steps)):
            out["start"] = then
    return out


def move_step(doc: dict[str, Any], step_id: str, direction: str) -> dict[str, Any]:
    """Swap a step with the one before it (`up`) or after it (`down`) on a chain of single links:
    A → B → C becomes B → A → C. Both steps must have one way out (send, wait, update profile)
    and the earlier must be the later's only way in."""
    if direction not in ("up", "down"):
        raise EditError("a step moves up or down")
    steps = _steps(doc)
    if step_id not in steps:
        raise EditError(f"no step {step_id!r}")
    if direction == "down":
        later = steps[step_id].get("next")
        if steps[step_id].get("type") not in SINGLE_NEXT or not isinstance(later, str) or later not in steps:
            raise EditError(f"step {step_id!r} has no single next step to move below")
        return move_step(doc, later, "up")
    into = [(s, slot) for s, slot, t in _links(doc) if t == step_id]
    earlier = [s for s, slot in into if s != TRIGGER and slot == "next"]
    if len(into) != 1 or len(earlier) != 1:
        raise EditError(f"step {step_id!r} is not the only step after a single step: it cannot move up")
    a, b = earlier[0], step_id
    if steps[b].get("type") not in SINGLE_NEXT:
        raise EditError(f"step {b!r} ({steps[b].get('type')}) has several ways out: it cannot move")
    out = copy.deepcopy(doc)
    out_steps = _steps(out)
    c = out_steps[b].get("next")
    for source, slot, target in _links(out):
        if target == a and source != a:
            _set(out, source, slot, b)
    out_steps[b]["next"] = a
    _set(out, a, "next", c if isinstance(c, str) else None)
    if _start(doc, steps) == a:
        out["start"] = b
    return out


# The pieces edited whole from the canvas. "@entry" (the entry rules: filter, re-entry, period) has
# no node of its own: the trigger's node shows them and edits them beside the trigger's settings.
ENTRY = "@entry"
PARTS = {"@trigger": "trigger", ENTRY: "entry", "@goal": "goal", "@exit": "exit"}


def part_of(doc: dict[str, Any], node_id: str) -> Any:
    """The piece of the document a canvas node stands for: the trigger, the entry rules, the goal,
    the exit rules, or a step (what the node's "settings as YAML" shows). Entry rules left out
    are the defaults, shown as an empty mapping to fill in."""
    if node_id in PARTS:
        return doc.get(PARTS[node_id], {} if node_id == ENTRY else None)
    steps = _steps(doc)
    if node_id not in steps:
        raise EditError(f"no step {node_id!r}")
    return steps[node_id]


def replace_part(doc: dict[str, Any], node_id: str, value: Any) -> dict[str, Any]:
    """The document with that piece replaced (a step's links are whatever the new piece says)."""
    if not isinstance(value, dict):
        raise EditError("the settings are a mapping (key: value)")
    out = copy.deepcopy(doc)
    if node_id in PARTS:
        out[PARTS[node_id]] = value
        return out
    steps = _steps(out)
    if node_id not in steps:
        raise EditError(f"no step {node_id!r}")
    if value.get("type") not in STEP_KINDS:
        raise EditError(f"a step's `type` is one of {', '.join(STEP_KINDS)}")
    steps[node_id] = value
    return out
