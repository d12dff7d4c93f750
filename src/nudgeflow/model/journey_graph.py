"""A journey definition as a graph for the console's canvas: nodes (the trigger, each step, the run's
end, the exit rules and the goal) and labelled edges (a branch's cases, a split's paths, a wait for
an event's two outcomes). Pure: it reads the definition and nothing else.

The canvas is laid out from this graph every time it is drawn; positions are never stored, so the
YAML document stays the only source of truth (issue 16: a journey edited as code opens unchanged).

Node ids: a step's node has the step's own id; the other nodes' ids begin with "@", which no
step id may contain (StepId's pattern), so the two can never meet. Edge ids are "<source>:<slot>",
where the slot names the field of the definition that holds the link (`next`, `on_event`,
`cases.0`, `paths.1`, `default`, `start`), which is where an edit of that link writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nudgeflow.model.journeys import (
    AllCondition,
    AnyCondition,
    AttributeChangeTrigger,
    BranchStep,
    DateRelativeTrigger,
    EventCountCondition,
    EventNotFollowedTrigger,
    EventTrigger,
    ExitStep,
    Filter,
    InactivityTrigger,
    Journey,
    LocationTrigger,
    MessageCondition,
    MilestoneTrigger,
    NotCondition,
    Ref,
    SegmentCondition,
    SegmentTrigger,
    SendStep,
    SplitStep,
    TraitCondition,
    UpdateProfileStep,
    WaitForEventStep,
    WaitStep,
)

TRIGGER = "@trigger"
END = "@end"
EXIT = "@exit"
GOAL = "@goal"

NodeKind = Literal[
    "trigger",
    "send",
    "webhook",
    "wait",
    "wait_for_event",
    "branch",
    "split",
    "update_profile",
    "exit",
    "end",
    "missing",
    "exit_rules",
    "goal",
]

_OPERATORS = {
    "eq": "=",
    "ne": "≠",
    "in": "in",
    "not_in": "not in",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "exists": "exists",
    "not_exists": "does not exist",
    "contains": "contains",
    "not_contains": "does not contain",
}


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    title: str  # the node's first line: what it is ("Send email", "Wait")
    summary: str  # one line of what it does, in words ("cart-1h-your-items", "23h")
    path: str  # where the node lives in the document: problems whose path starts here belong to it
    details: tuple[tuple[str, str], ...] = ()  # (label, value) pairs for the settings panel
    templates: tuple[str, ...] = ()  # the templates a send step renders (one per variant)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "summary": self.summary,
            "path": self.path,
            "details": [list(pair) for pair in self.details],
            "templates": list(self.templates),
        }


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    slot: str  # the field holding the link: next, on_event, on_timeout, cases.N, default, paths.N, start
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.source}:{self.slot}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "target": self.target, "slot": self.slot, "label": self.label}


@dataclass(frozen=True)
class JourneyGraph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    start: str | None  # the first step's id
    steps: tuple[str, ...] = field(default=())  # step ids in the document's order

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": [node.as_dict() for node in self.nodes],
            "edges": [edge.as_dict() for edge in self.edges],
            "start": self.start,
            "steps": list(self.steps),
        }


def journey_graph(journey: Journey) -> JourneyGraph:
    """The canvas's graph of a checked journey definition."""
    nodes: list[Node] = [_trigger_node(journey)]
    edges: list[Edge] = []
    ends = False
    missing: dict[str, str] = {}  # a link to no step (a draft being edited) -> the link's path
    start = journey.first_step
    if start not in journey.steps:
        missing[start] = "start"
    edges.append(Edge(TRIGGER, start, "start"))
    for step_id, step in journey.steps.items():
        nodes.append(_step_node(step_id, step))
        for slot, target, label in _links(step):
            if target is None:
                ends = True
            elif target not in journey.steps:
                missing.setdefault(target, f"steps.{step_id}.{slot}")
            edges.append(Edge(step_id, END if target is None else target, slot, label))
    # The checks refuse such a definition; drawn anyway, the broken link shows where it points.
    nodes += [Node(target, "missing", "No such step", target, path) for target, path in missing.items()]
    if ends:
        nodes.append(Node(END, "end", "End", "the run completes", "steps"))
    exit_rules = _exit_rules(journey)
    if exit_rules:
        nodes.append(
            Node(
                EXIT, "exit_rules", "Exits when", "; ".join(exit_rules), "exit", tuple(("when", r) for r in exit_rules)
            )
        )
    if journey.goal is not None:
        goal = journey.goal
        details = [("event", _event_text(goal.event, goal.where, None)), ("within", goal.within)]
        if goal.revenue:
            details.append(("revenue", goal.revenue))
        details.append(("ends the run", "yes" if goal.exit else "no"))
        summary = f"{_event_text(goal.event, goal.where, None)} within {goal.within}"
        nodes.append(Node(GOAL, "goal", "Goal", summary, "goal", tuple(details)))
    return JourneyGraph(tuple(nodes), tuple(edges), start, tuple(journey.steps))


# --- steps ---------------------------------------------------------------------------------


def _links(step: Any) -> list[tuple[str, str | None, str]]:
    """(slot, target or None for the run's end, label) of each link out of a step."""
    if isinstance(step, (SendStep, WaitStep, UpdateProfileStep)):
        return [("next", step.next, "")]
    if isinstance(step, WaitForEventStep):
        return [
            ("on_event", step.on_event, _event_text(step.event, step.where, step.match)),
            ("on_timeout", step.on_timeout, f"no event in {step.timeout}"),
        ]
    if isinstance(step, BranchStep):
        if len(step.cases) == 1:
            return [("cases.0", step.cases[0].next, "yes"), ("default", step.default, "no")]
        links: list[tuple[str, str | None, str]] = [
            (f"cases.{i}", case.next, _conditions_text(case.when)) for i, case in enumerate(step.cases)
        ]
        return [*links, ("default", step.default, "otherwise")]
    if isinstance(step, SplitStep):
        total = sum(path.weight for path in step.paths)
        return [
            (f"paths.{i}", path.next, f"{path.name} {_share(path.weight, total)}") for i, path in enumerate(step.paths)
        ]
    return []  # an exit step ends the run itself: no link out


def _step_node(step_id: str, step: Any) -> Node:
    path = f"steps.{step_id}"
    if isinstance(step, SendStep):
        return _send_node(step_id, step, path)
    if isinstance(step, WaitStep):
        return Node(step_id, "wait", "Wait", _wait_text(step), path, (("wait", _wait_text(step)),))
    if isinstance(step, WaitForEventStep):
        event = _event_text(step.event, step.where, step.match)
        return Node(
            step_id,
            "wait_for_event",
            "Wait for an event",
            f"{event}, up to {step.timeout}",
            path,
            (("event", event), ("timeout", step.timeout)),
        )
    if isinstance(step, BranchStep):
        details = tuple((f"case {i + 1}", _conditions_text(case.when)) for i, case in enumerate(step.cases))
        summary = _conditions_text(step.cases[0].when) if len(step.cases) == 1 else f"{len(step.cases)} cases"
        return Node(step_id, "branch", "Branch", summary, path, details)
    if isinstance(step, SplitStep):
        total = sum(p.weight for p in step.paths)
        arms = ", ".join(f"{p.name} {_share(p.weight, total)}" for p in step.paths)
        details = tuple((p.name, _share(p.weight, total)) for p in step.paths)
        return Node(step_id, "split", "Split", arms, path, (*details, ("on winner", step.on_winner)))
    if isinstance(step, UpdateProfileStep):
        parts = [f"set {name}" for name in step.set] + [f"unset {name}" for name in step.unset]
        details = tuple((f"set {name}", _value_text(value)) for name, value in step.set.items())
        details += tuple(("unset", name) for name in step.unset)
        return Node(step_id, "update_profile", "Update profile", ", ".join(parts) or "no change", path, details)
    if isinstance(step, ExitStep):
        return Node(step_id, "exit", "Exit", "the run ends here", path)
    raise TypeError(type(step).__name__)  # pragma: no cover - the Step union is closed


def _send_node(step_id: str, step: SendStep, path: str) -> Node:
    details: list[tuple[str, str]] = [("channel", step.channel)]
    if step.webhook is not None:
        target = step.webhook.destination or step.webhook.url or ""
        details.append(("to", target))
        if step.webhook.method:
            details.append(("method", step.webhook.method))
        return Node(step_id, "webhook", "Call a webhook", target, path, tuple(details))
    templates: tuple[str, ...]
    if step.variants:
        total = sum(v.weight for v in step.variants)
        templates = tuple(v.template for v in step.variants)
        summary = f"{len(step.variants)} variants"
        details += [(f"variant {v.name}", f"{v.template} ({_share(v.weight, total)})") for v in step.variants]
        details.append(("on winner", step.on_winner))
    else:
        templates = (step.template,) if step.template else ()
        summary = step.template or ""
        details.append(("template", summary))
    if not step.marketing:
        details.append(("marketing", "no (transactional)"))
    if step.topic:
        details.append(("topic", step.topic))
    if step.send_time is not None:
        details.append(("send time", f"optimized within {step.send_time.within}"))
    return Node(step_id, "send", f"Send {step.channel}", summary, path, tuple(details), templates)


def _wait_text(step: WaitStep) -> str:
    if step.duration is not None:
        return step.duration
    if step.until_time is not None:
        days = f" on {', '.join(step.until_time.weekdays)}" if step.until_time.weekdays else ""
        return f"until {step.until_time.at}{days}"
    if step.until_date is not None:
        date = step.until_date
        offset = "" if date.offset in ("0d", "0") else f" {date.offset}"
        at = f" at {date.at}" if date.at else ""
        return f"until {date.trait}{offset}{at}"
    if step.send_time is not None:
        return f"until the best hour within {step.send_time.within}"
    return "no time"


# --- the trigger, exit rules ---------------------------------------------------------------


def _trigger_node(journey: Journey) -> Node:
    trigger = journey.trigger
    summary = _trigger_text(trigger)
    details: list[tuple[str, str]] = [("type", trigger.type), ("starts when", summary)]
    if trigger.max_lateness:
        details.append(("max lateness", trigger.max_lateness))
    if journey.entry.filter:
        details.append(("entry filter", _conditions_text(journey.entry.filter)))
    reentry = journey.entry.reentry
    details.append(("re-entry", f"{reentry} ({journey.entry.period})" if journey.entry.period else reentry))
    if journey.holdout:
        details.append(("holdout", _share(journey.holdout, 1.0)))
    return Node(TRIGGER, "trigger", "Trigger", summary, "trigger", tuple(details))


def _trigger_text(trigger: Any) -> str:
    if isinstance(trigger, EventTrigger):
        text = _event_text(trigger.event, trigger.where, None)
        if trigger.occurrences is not None:
            text += f" {trigger.occurrences.count} times within {trigger.occurrences.within}"
        return text
    if isinstance(trigger, EventNotFollowedTrigger):
        follow = trigger.not_followed_by
        return (
            f"{_event_text(trigger.event, trigger.where, None)} not followed by "
            f"{_event_text(follow.event, follow.where, follow.match)} within {follow.within}"
        )
    if isinstance(trigger, InactivityTrigger):
        activity = ", ".join(trigger.events) if trigger.events else "any event"
        return f"no {activity} for {trigger.window}"
    if isinstance(trigger, AttributeChangeTrigger):
        text = f"{trigger.trait} changes"
        if trigger.from_ is not None:
            text += f" from {_value_text(trigger.from_)}"
        if trigger.to is not None:
            text += f" to {_value_text(trigger.to)}"
        return text
    if isinstance(trigger, DateRelativeTrigger):
        offset = "" if trigger.offset in ("0d", "0") else f" {trigger.offset}"
        return f"{trigger.trait}{offset} at {trigger.at}" + (", every year" if trigger.yearly else "")
    if isinstance(trigger, MilestoneTrigger):
        event = _event_text(trigger.event, trigger.where, None)
        if trigger.count is not None:
            return f"{event} for the {trigger.count}th time"
        if trigger.sum is not None:
            return f"sum of {event} {trigger.sum.property} reaches {_number(trigger.sum.reaches)}"
        assert trigger.streak is not None
        return f"{event} on {trigger.streak.days} days in a row"
    if isinstance(trigger, LocationTrigger):
        names = [place.name for place in trigger.places]
        if trigger.catalog_places is not None:
            names += trigger.catalog_places.ids + [f"tag {tag}" for tag in trigger.catalog_places.tags]
        return f"within {_number(trigger.radius_m)} m of {', '.join(names)}"
    if isinstance(trigger, SegmentTrigger):
        return f"{'enters' if trigger.on == 'enter' else 'leaves'} segment {trigger.segment}"
    raise TypeError(type(trigger).__name__)  # pragma: no cover - the Trigger union is closed


def _exit_rules(journey: Journey) -> list[str]:
    rules = [_event_text(match.event, match.where, match.match) for match in journey.exit.events]
    if journey.exit.segment:
        rules.append(f"leaves segment {journey.exit.segment}")
    if journey.goal is not None and journey.goal.exit:
        rules.append(f"converts ({journey.goal.event})")
    return rules


# --- words for conditions and values -------------------------------------------------------


def _event_text(event: str, where: list[Filter], match: str | None) -> str:
    text = event
    if where:
        text += " where " + " and ".join(_filter_text(f) for f in where)
    if match:
        text += f" (same {match})"
    return text


def _filter_text(item: Filter) -> str:
    if item.op in ("exists", "not_exists"):
        return f"{item.property} {_OPERATORS[item.op]}"
    return f"{item.property} {_OPERATORS[item.op]} {_value_text(item.value)}"


def _conditions_text(conditions: list[Any]) -> str:
    return " and ".join(_condition_text(c) for c in conditions) or "always"


def _condition_text(condition: Any) -> str:
    if isinstance(condition, TraitCondition):
        if condition.op in ("exists", "not_exists"):
            return f"{condition.trait} {_OPERATORS[condition.op]}"
        return f"{condition.trait} {_OPERATORS[condition.op]} {_value_text(condition.value)}"
    if isinstance(condition, EventCountCondition):
        event = _event_text(condition.event, condition.where, None)
        within = f" within {condition.within}" if condition.within else ""
        if condition.op == "gte" and condition.value == 1:
            return f"did {event}{within}"
        if condition.op == "eq" and condition.value == 0:
            return f"did not do {event}{within}"
        return f"{event} count {_OPERATORS[condition.op]} {condition.value}{within}"
    if isinstance(condition, MessageCondition):
        return f"{condition.message} {'not ' if condition.negate else ''}{condition.status}"
    if isinstance(condition, SegmentCondition):
        return f"{'not ' if condition.negate else ''}in segment {condition.segment}"
    if isinstance(condition, AllCondition):
        return "(" + " and ".join(_condition_text(c) for c in condition.all) + ")"
    if isinstance(condition, AnyCondition):
        return "(" + " or ".join(_condition_text(c) for c in condition.any) + ")"
    if isinstance(condition, NotCondition):
        return f"not {_condition_text(condition.not_)}"
    raise TypeError(type(condition).__name__)  # pragma: no cover - the Condition union is closed


def _value_text(value: Any) -> str:
    if isinstance(value, Ref):
        return value.ref
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _share(weight: float, total: float) -> str:
    percent = 100 * weight / total if total else 0.0
    return f"{percent:.0f}%" if abs(percent - round(percent)) < 0.05 else f"{percent:.1f}%"
