"""Checking journey definitions: every problem, with where it is and what to do about it.

Structural problems come from the pydantic models (`model.journeys`), rewritten so that
a person can act on them: the path is the one in the document ("steps.remind.next", not
pydantic's "steps.remind.send.next" with its union tags), and the message names the
choices ("unknown operator 'equals' (use one of eq, ne, …)"). Semantic problems are the
ones a schema cannot express: references to steps that do not exist, cycles that would
spin without ever waiting, conditions on a message no send step sends, `match` without
a triggering event. Unreachable steps are warnings: they do no harm, but are likely a
mistake.

What a journey will be sent through is checked when it is known (`Delivery`): the channel
each send step names must be one that exists and is built, and its templates must exist
with that channel. The caller reads the templates (the workspace's, or a folder of files)
and passes them in as data; nothing here reads a database.

Line numbers: YAML files are composed node by node, and the start line of every mapping
key and sequence item is kept per path, so a problem at "steps.remind.next" points at the
line where `next:` is written (or, for a missing key, at its parent).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, cast

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from nudgeflow.errors import ModelError
from nudgeflow.model.event_names import SEGMENT_ENTERED, SEGMENT_EXITED
from nudgeflow.model.journeys import (
    DURATION_PATTERN,
    OFFSET_PATTERN,
    REF_PATTERN,
    WEBHOOK,
    BranchStep,
    Journey,
    MessageCondition,
    Ref,
    SegmentCondition,
    SendStep,
    SplitStep,
    WaitForEventStep,
    duration_ms,
)
from nudgeflow.model.yaml_limits import check_aliases

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"

# Trigger types that start a run from an event, so that `match` and `{ref: trigger.…}`
# have something to compare with. Inactivity and date-relative triggers fire on a timer;
# an attribute change fires on an identify call, which has traits but no properties.
TRIGGERS_WITH_EVENT = frozenset({"event", "event_not_followed", "milestone", "location"})
# What the engine records as the trigger's properties when no event started the run.
TRIGGER_FACTS = {
    "inactivity": ("last_active_at", "inactive_ms"),
    "attribute_change": ("trait", "from", "to"),
    "date_relative": ("trait", "value", "due"),
    "segment": ("segment", "version", "cause"),
}
# Ids the admin API uses as fixed paths under /api/journeys/.
RESERVED_IDS = frozenset({"schema", "validate"})
WAIT_TYPES = frozenset({"wait", "wait_for_event"})
JOURNEY_SUFFIXES = (".yaml", ".yml", ".json")

# The channels a send step may name, each built in channels/: email (SMTP), push (Web Push,
# FCM, APNs), webhook (an HTTP call) and log (the development sink, which records what would
# be sent).
CHANNELS: tuple[str, ...] = ("email", "push", "webhook", "log")
# The channels that render a stored template of their own channel. The log channel
# renders nothing (it records the template's name), so its steps need no stored template.
TEMPLATE_CHANNELS = frozenset({"email", "push"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a journey's messages will go through, for the checks a definition alone cannot make.

    `channels`: the names a send step may use (the built ones, and any extra name the
    deployment serves with the log channel, NUDGEFLOW_LOG_CHANNELS). `templates`: name ->
    channel of every template there is, or None when they were not given (then templates
    are not checked); `templates_from` says where they came from, for the messages.
    """

    channels: tuple[str, ...] = CHANNELS
    templates: Mapping[str, str] | None = None
    templates_from: str = "this workspace"
    # The places catalog (id -> tags), for location triggers' `catalog_places`; None: not checked.
    places: Mapping[str, frozenset[str]] | None = None
    # The workspace's webhook destinations by name, for webhook steps' `destination`; None: not checked.
    webhook_destinations: frozenset[str] | None = None
    # The ids of the live segments, for segment triggers, conditions and exit.segment; None: not checked.
    segments: Collection[str] | None = None

    @classmethod
    def serving(
        cls,
        extra_channels: Iterable[str] = (),
        templates: Mapping[str, str] | None = None,
        templates_from: str = "this workspace",
        places: Mapping[str, frozenset[str]] | None = None,
        webhook_destinations: Iterable[str] | None = None,
        segments: Collection[str] | None = None,
    ) -> Delivery:
        names = list(CHANNELS) + [c for c in extra_channels if c not in CHANNELS]
        destinations = frozenset(webhook_destinations) if webhook_destinations is not None else None
        return cls(tuple(names), templates, templates_from, places, destinations, segments)


PathPart = str | int
# Keys are paths with every part as text: mapping keys and sequence indices alike ("0").
LineMap = dict[tuple[str, ...], int]


@dataclass(frozen=True, slots=True)
class Problem:
    path: str  # dotted, inside the document: "steps.remind.next"; "" for the whole document
    message: str
    severity: Severity = ERROR
    line: int | None = None  # 1-based, when the document came from a file we could locate

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "message": self.message, "severity": self.severity, "line": self.line}


@dataclass(frozen=True, slots=True)
class FileProblem:
    file: str
    path: str
    line: int | None
    message: str
    severity: Severity = ERROR
    document: int = 0  # index of the YAML document in the file (0 for the first)

    def format(self) -> str:
        """`file:line: path: message`, the shape editors and CI logs link to."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = f" {self.path}:" if self.path else ""
        kind = " warning:" if self.severity == WARNING else ""
        return f"{where}:{path}{kind} {self.message}"


class DocumentError(ModelError, ValueError):
    """A file that cannot be read as YAML or JSON at all."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class LocatedDict(dict[str, Any]):
    """A top-level document that remembers where each of its paths starts in the file."""

    lines: LineMap
    load_problems: list[Problem]
    start_line: int

    def line_of(self, path: Iterable[PathPart]) -> int | None:
        return _line_for(self.lines, tuple(path), self.start_line)


# --- loading --------------------------------------------------------------------------------


def load_documents(path: str | Path) -> list[tuple[int, Any]]:
    """The documents of a .yaml/.yml (several allowed, `---` apart) or .json file.

    Returns (index in the file, document); YAML documents are `LocatedDict`s carrying line
    numbers. Empty YAML documents are skipped; a document that is not a mapping is
    returned as is and `check_journey` says so. Raises OSError when the file cannot be
    read and DocumentError when it is not YAML/JSON.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json(text)
    if suffix in (".yaml", ".yml"):
        return _load_yaml(text)
    raise DocumentError(f"not a journey file: {path.name} (use .yaml, .yml or .json)")


def load_text(text: str, kind: Literal["yaml", "json"] = "yaml") -> list[tuple[int, Any]]:
    """Like load_documents, for text that did not come from a file (an API body)."""
    return _load_json(text) if kind == "json" else _load_yaml(text)


def _load_json(text: str) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.lineno) from exc
    except RecursionError as exc:
        raise DocumentError("not valid JSON: nested too deeply") from exc
    # JSON is (nearly) YAML, so the same composer locates paths; without it there are no lines.
    lines: LineMap = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _index_lines(node, (), lines, [])
    except (yaml.YAMLError, RecursionError):
        lines = {}
    docs = data if isinstance(data, list) else [data]
    out: list[tuple[int, Any]] = []
    for index, doc in enumerate(docs):
        if isinstance(doc, dict):
            prefix: tuple[str, ...] = (str(index),) if isinstance(data, list) else ()
            doc = _located(
                doc,
                {k[len(prefix) :]: v for k, v in lines.items() if k[: len(prefix)] == prefix},
                [],
                lines.get(prefix, 1),
            )
        out.append((index, doc))
    return out


def _load_yaml(text: str) -> list[tuple[int, Any]]:
    try:
        loader = yaml.SafeLoader(text)  # reads the first characters: a control character fails here
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {exc}") from exc
    out: list[tuple[int, Any]] = []
    try:
        index = 0
        while loader.check_node():
            node = cast(yaml.Node, loader.get_node())  # check_node() said there is one
            check_aliases(node)  # before anything walks it: a few aliases can stand for billions of values
            lines: LineMap = {}
            duplicates: list[tuple[tuple[str, ...], str, int]] = []
            _index_lines(node, (), lines, duplicates)
            data = loader.construct_document(node)
            if data is not None:
                if isinstance(data, dict):
                    problems = [
                        Problem(
                            _dotted(p),
                            f"duplicate key {key!r} (line {first}): the later one would silently replace it",
                            ERROR,
                            lines.get(p),
                        )
                        for p, key, first in duplicates
                    ]
                    data = _located(data, lines, problems, node.start_mark.line + 1)
                out.append((index, data))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or str(exc)
        raise DocumentError(f"not valid YAML: {reason}" + (f" (line {line})" if line else ""), line) from exc
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {exc}") from exc
    except RecursionError as exc:  # the composer recurses once per level of nesting
        raise DocumentError("not valid YAML: nested too deeply") from exc
    finally:
        loader.dispose()
    return out


def _located(data: dict[str, Any], lines: LineMap, problems: list[Problem], start_line: int) -> LocatedDict:
    doc = LocatedDict(data)
    doc.lines = lines
    doc.load_problems = problems
    doc.start_line = start_line
    return doc


def _index_lines(
    node: yaml.Node,
    path: tuple[str, ...],
    lines: LineMap,
    duplicates: list[tuple[tuple[str, ...], str, int]],
    depth: int = 0,
) -> None:
    if depth > 200:  # anchors can nest deeper than any journey; stop rather than recurse forever
        return
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            child = (*path, key)
            if key in seen and key != "<<":
                duplicates.append((child, key, seen[key]))
                lines[child] = line
            seen.setdefault(key, line)
            lines.setdefault(child, line)
            _index_lines(value_node, child, lines, duplicates, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, str(index)), lines, duplicates, depth + 1)


def _line_for(lines: LineMap, path: tuple[PathPart, ...], default: int | None = None) -> int | None:
    """The line of the deepest prefix of `path` that is in the file."""
    key = tuple(str(p) for p in path)
    for end in range(len(key), -1, -1):
        if key[:end] in lines:
            return lines[key[:end]]
    return default


def _dotted(path: Iterable[PathPart]) -> str:
    return ".".join(str(p) for p in path)


# --- checking one document ------------------------------------------------------------------


def check_journey(doc: Any, delivery: Delivery | None = None) -> tuple[Journey | None, list[Problem]]:
    """Validate one journey document: (the Journey if it has no errors, every problem found).

    With a `delivery`, channels and templates are checked against it too; without one
    (the store re-checking a definition it holds), only the definition itself is."""
    if not isinstance(doc, dict):
        kind = _describe(doc)
        return None, [
            Problem(
                "",
                f"a journey is a mapping with id, name, trigger and steps, not {kind}",
                ERROR,
                getattr(doc, "start_line", None),
            )
        ]
    problems: list[Problem] = list(getattr(doc, "load_problems", []))
    problems.extend(Problem(path, NOT_FINITE) for path in non_finite_paths(doc))
    journey: Journey | None = None
    try:
        journey = Journey.model_validate(dict(doc))
    except ValidationError as exc:
        problems.extend(_structural(exc))
    # The step graph is checked on the raw document too, so that a typo in a duration does
    # not hide a dangling `next` in the same run of the checker.
    steps_broken = any(p.path == "steps" or p.path.startswith("steps.") for p in problems)
    graph = _graph_problems(doc, steps_broken)
    problems.extend(graph)
    if journey is not None:
        problems.extend(_model_problems(journey, links_broken=any(p.severity == ERROR for p in graph)))
        if delivery is not None:
            problems.extend(delivery_problems(journey, delivery))
    if isinstance(doc, LocatedDict):
        problems = [p if p.line is not None else _with_line(p, doc) for p in problems]
    problems = _dedupe(problems)
    problems.sort(key=lambda p: (p.line if p.line is not None else 1 << 30, p.severity != ERROR, p.path))
    if any(p.severity == ERROR for p in problems):
        return None, problems
    return journey, problems


# Definitions are stored as JSON, where infinity and NaN are written as null: the stored
# version would compare with null, or not read back at all (`lt` needs a value), and then no
# reader of the workspace's live definitions could load them, the engine's catalog included.
NOT_FINITE = "infinity and NaN are not values a definition can hold: use a finite number"


def finite(value: Any) -> bool:
    """No infinite or NaN float in the value (a list's items and an object's values too)."""
    return not any(True for _ in non_finite_paths(value))


def non_finite_paths(value: Any, path: str = "") -> Iterator[str]:
    """The dotted paths of the infinite and NaN floats in a document (YAML's .inf, .nan)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from non_finite_paths(item, f"{path}.{index}" if path else str(index))


M = TypeVar("M", bound=BaseModel)


def check_document(
    doc: Any, root: type[M], noun: str, pattern_hints: Mapping[str, str] | None = None
) -> tuple[M | None, list[Problem]]:
    """Validate a document of another format against its model (`root`, e.g. policies), with
    the journeys' sentence-style problems and line numbers: (the model if no errors, problems).

    `noun` names what the document is ("send policies"); `pattern_hints` says what a
    field's pattern means in this format where the journeys' words would mislead."""
    if not isinstance(doc, dict):
        line = getattr(doc, "start_line", None)
        return None, [Problem("", f"{noun}: expected a mapping (key: value), not {_describe(doc)}", ERROR, line)]
    problems: list[Problem] = list(getattr(doc, "load_problems", []))
    model: M | None = None
    try:
        model = root.model_validate(dict(doc))
    except ValidationError as exc:
        problems.extend(_structural(exc, root, pattern_hints))
    if isinstance(doc, LocatedDict):
        problems = [p if p.line is not None else _with_line(p, doc) for p in problems]
    problems = _dedupe(problems)
    problems.sort(key=lambda p: (p.line if p.line is not None else 1 << 30, p.severity != ERROR, p.path))
    if any(p.severity == ERROR for p in problems):
        return None, problems
    return model, problems


def _with_line(problem: Problem, doc: LocatedDict) -> Problem:
    parts = tuple(problem.path.split(".")) if problem.path else ()
    return Problem(problem.path, problem.message, problem.severity, _line_for(doc.lines, parts, doc.start_line))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        key = (problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def is_valid(problems: Iterable[Problem]) -> bool:
    return not any(p.severity == ERROR for p in problems)


# --- structural problems (pydantic) ---------------------------------------------------------


def _structural(
    exc: ValidationError, root: type[BaseModel] = Journey, pattern_hints: Mapping[str, str] | None = None
) -> list[Problem]:
    out = []
    for error in exc.errors(include_url=False):
        path, model, field_type = _clean_loc(error["loc"], root)
        out.append(_humane(error, path, model, field_type, pattern_hints))
    return out


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _member_tag(member: Any) -> str | None:
    if typing.get_origin(member) is typing.Annotated:
        for meta in typing.get_args(member)[1:]:
            tag = getattr(meta, "tag", None)
            if isinstance(tag, str):
                return tag
        member = typing.get_args(member)[0]
    if isinstance(member, type) and issubclass(member, BaseModel):
        type_field = member.model_fields.get("type")
        if type_field is not None and typing.get_origin(type_field.annotation) is Literal:
            return str(typing.get_args(type_field.annotation)[0])
        return member.__name__
    if member is Any:
        return "any"
    return getattr(member, "__name__", None)


def _field_by_key(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key == (info.alias or name):
            return info
    return None


def _clean_loc(
    loc: tuple[Any, ...], root: type[BaseModel] = Journey
) -> tuple[list[PathPart], type[BaseModel] | None, Any]:
    """Walk pydantic's `loc` along the model's types, dropping union tags and validator noise.

    Returns the document path, the model the last path element belongs to (for "unknown
    key" hints) and the declared type at the end of the path (for "use one of" hints).
    """
    tp: Any = root
    owner: type[BaseModel] | None = None
    path: list[PathPart] = []
    for part in loc:
        tp = _strip_annotated(tp)
        if isinstance(part, str) and re.match(r"^[\w-]+\[.*\]$", part):
            continue  # "function-after[_check(), Filter]" and the like
        if _is_union(tp):
            members = [m for m in typing.get_args(tp) if m is not type(None)]
            chosen = next((m for m in members if _member_tag(m) == part), None)
            if chosen is not None:
                tp = chosen
                continue
            plain = [m for m in members if m is not Any]
            tp = plain[0] if len(plain) == 1 else Any  # Optional[X]: the part belongs to X
            tp = _strip_annotated(tp)
        path.append(part)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            owner = tp
            info = _field_by_key(tp, str(part))
            tp = info.annotation if info is not None else Any
        elif typing.get_origin(tp) in (list, tuple, set):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif typing.get_origin(tp) is dict:
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        else:
            tp = Any
    tp = _strip_annotated(tp)
    if _is_union(tp):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        if len(members) == 1:
            tp = _strip_annotated(members[0])
    return path, owner, tp


_PATTERN_HINTS = {
    DURATION_PATTERN: "is not a duration (use a positive number, decimals allowed, and a unit: 500ms, 90s, 15m, "
    "1h, 1.5d, 2w)",
    OFFSET_PATTERN: 'is not an offset (a signed duration: "-3d" before, "2h" after, "0d", "-1.5d")',
    r"^([01]\d|2[0-3]):[0-5]\d$": "is not a time of day (use HH:MM on a 24 h clock, e.g. 09:00)",
    r"^[A-Za-z0-9_.-]+$": "is not a valid step id (letters, digits, '_', '.' and '-' only)",
    r"^[a-z0-9][a-z0-9_-]{0,79}$": "is not a valid journey id (a slug: lowercase letters, digits, '-' and '_', "
    "starting with a letter or digit, at most 80 characters)",
    REF_PATTERN: "is not a reference (use trigger.<property>, profile.<trait> or group.<trait>)",
}

_CHOICE_NOUNS = {
    "op": "operator",
    "type": "type",
    "status": "message status",
    "reentry": "re-entry rule",
    "on_failure": "failure rule",
    "weekdays": "weekday",
    "category": "category",
    "calendar": "calendar",
    "action": "action",
}

_KINDS_NOUN = {"trigger": "trigger type", "steps": "step type"}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "…"
        return f"the text {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _choices(error: dict[str, Any]) -> list[str]:
    ctx = error.get("ctx") or {}
    text = ctx.get("expected") or ctx.get("expected_tags") or ""
    return re.findall(r"'([^']*)'", str(text))


def _union_choices(tp: Any) -> list[str]:
    return [t for t in (_member_tag(m) for m in typing.get_args(tp)) if t]


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _humane(
    error: Any,
    path: list[PathPart],
    model: type[BaseModel] | None,
    tp: Any,
    pattern_hints: Mapping[str, str] | None = None,
) -> Problem:
    kind = error["type"]
    value = error.get("input")
    last = path[-1] if path else None
    where = _dotted(path)
    message = error["msg"]

    if kind == "missing":
        return Problem(_dotted(path[:-1]), f"missing required key {last!r}")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model) if model is not None else []
        hint = difflib.get_close_matches(str(last), allowed, n=1, cutoff=0.6)
        extra = f" (did you mean {hint[0]!r}?)" if hint else (f" (allowed: {', '.join(allowed)})" if allowed else "")
        return Problem(where, f"unknown key {last!r}{extra}")
    if kind == "literal_error":
        noun = (
            _CHOICE_NOUNS.get(str(last))
            or (_CHOICE_NOUNS.get(str(path[-2])) if isinstance(last, int) and len(path) > 1 else None)
            or "value"
        )
        choices = _choices(error)
        return Problem(where, f"unknown {noun} {value!r} (use one of {', '.join(choices)})")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        owner = path[0] if path else ""
        noun = _KINDS_NOUN.get(str(owner), "type")
        choices = _choices(error) or _union_choices(tp)
        if kind == "union_tag_not_found" or not isinstance(value, dict) or "type" not in value:
            return Problem(where, f"missing required key 'type' (the {noun}: one of {', '.join(choices)})")
        return Problem(where, f"unknown {noun} {value.get('type')!r} (use one of {', '.join(choices)})")
    if kind == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        pattern_hint = (pattern_hints or {}).get(pattern) or _PATTERN_HINTS.get(pattern)
        if pattern_hint:
            return Problem(where, f"{value!r} {pattern_hint}")
        return Problem(where, f"{value!r} does not match {pattern}")
    if kind in ("value_error", "assertion_error"):
        return Problem(where, re.sub(r"^(Value|Assertion) error, ", "", message))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(where, f"expected a mapping (key: value), got {_describe(value)}")
    if kind == "list_type":
        return Problem(where, f"expected a list, got {_describe(value)}")
    if kind in ("string_type",):
        return Problem(where, f"expected text, got {_describe(value)}")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return Problem(where, f"expected a whole number, got {_describe(value)}")
    if kind in ("float_type", "float_parsing"):
        return Problem(where, f"expected a number, got {_describe(value)}")
    if kind in ("bool_type", "bool_parsing"):
        return Problem(where, f"expected true or false, got {_describe(value)}")
    if kind == "string_too_short":
        return Problem(where, "must not be empty")
    if kind == "string_too_long":
        return Problem(where, f"is longer than {(error.get('ctx') or {}).get('max_length')} characters")
    if kind == "too_short":
        need = (error.get("ctx") or {}).get("min_length")
        return Problem(where, f"needs at least {need} item{'s' if need != 1 else ''}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return Problem(where, message.replace("Input should be", f"{value!r} must be"))
    if kind == "condition_kind":
        return Problem(where, message)
    return Problem(where, message.replace("Input should be", "should be"))


# --- the step graph -------------------------------------------------------------------------


def _edges(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """step id -> [(path of the reference, target step id)], read from the raw document."""
    steps = doc.get("steps")
    out: dict[str, list[tuple[str, str]]] = {}
    if not isinstance(steps, dict):
        return out
    for sid, step in steps.items():
        sid = str(sid)
        refs: list[tuple[str, str]] = []
        if isinstance(step, dict):
            for key in ("next", "on_event", "on_timeout", "default"):
                if isinstance(step.get(key), str):
                    refs.append((f"steps.{sid}.{key}", step[key]))
            for list_key in ("cases", "paths"):
                items = step.get(list_key)
                if isinstance(items, list):
                    for i, item in enumerate(items):
                        if isinstance(item, dict) and isinstance(item.get("next"), str):
                            refs.append((f"steps.{sid}.{list_key}.{i}.next", item["next"]))
        out[sid] = refs
    return out


def _waits(step: Any) -> bool:
    """Whether passing through this step takes time (a zero-length wait does not)."""
    if not isinstance(step, dict) or step.get("type") not in WAIT_TYPES:
        return False
    if step.get("type") == "wait" and step.get("send_time") is not None:
        return False  # the best hour may be the current one: no time need pass
    if step.get("type") == "wait" and isinstance(step.get("duration"), str):
        try:
            return duration_ms(step["duration"]) != 0  # a negative one is reported as not a duration
        except ValueError:
            return True  # reported as a bad duration; do not add a cycle error on top
    return True


def _graph_problems(doc: dict[str, Any], steps_broken: bool = False) -> list[Problem]:
    steps = doc.get("steps")
    if not isinstance(steps, dict) or not steps:
        return []
    edges = _edges(doc)
    ids = list(edges)
    known = set(ids)
    problems: list[Problem] = []

    start = doc.get("start")
    if start is None:
        start = ids[0]
    elif isinstance(start, str) and start not in known:
        problems.append(Problem("start", _no_step(start, ids)))
        start = None
    elif not isinstance(start, str):
        start = None

    for refs in edges.values():
        for path, target in refs:
            if target not in known:
                problems.append(Problem(path, _no_step(target, ids)))

    # Cycles that never wait: look for strongly connected parts among steps that do not wait.
    order = {sid: i for i, sid in enumerate(ids)}
    fast = {sid for sid in ids if not _waits(steps.get(sid))}
    graph = {sid: [t for _, t in edges[sid] if t in fast] for sid in fast}
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        first = min(component, key=order.__getitem__)
        cycle = _cycle_through(first, graph, members)
        problems.append(
            Problem(
                f"steps.{first}",
                "cycle without a wait: "
                + " -> ".join(cycle)
                + " (a run would loop without pause; put a wait or wait_for_event step in it)",
            )
        )

    # Reachability means little while links are broken (a typo in `next` would make every
    # later step "unreachable"): those warnings wait until the errors are fixed.
    links_broken = steps_broken or any(
        p.path == "start" or p.path.endswith(("next", "on_event", "on_timeout", "default")) for p in problems
    )
    if start is not None and not links_broken:
        reached = {start}
        frontier = [start]
        while frontier:
            sid = frontier.pop()
            for _, target in edges.get(sid, []):
                if target in known and target not in reached:
                    reached.add(target)
                    frontier.append(target)
        for sid in ids:
            if sid not in reached:
                problems.append(
                    Problem(f"steps.{sid}", f"step {sid!r} is never reached from the start step {start!r}", WARNING)
                )
    return problems


def _no_step(target: str, ids: list[str]) -> str:
    hint = difflib.get_close_matches(target, ids, n=1, cutoff=0.6)
    return f"no step named {target!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (a generated journey may have thousands of steps)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _cycle_through(first: str, graph: dict[str, list[str]], members: set[str]) -> list[str]:
    """A shortest path first -> … -> first inside one strongly connected part."""
    previous: dict[str, str] = {}
    frontier = [first]
    seen = {first}
    while frontier:
        following = []
        for node in frontier:
            for child in graph[node]:
                if child not in members:
                    continue
                if child == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(previous[path[-1]])
                    return [*reversed(path), first]
                if child not in seen:
                    seen.add(child)
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [first, first]


# --- checks on a structurally valid journey -------------------------------------------------


def _model_problems(journey: Journey, links_broken: bool = False) -> list[Problem]:
    problems: list[Problem] = []
    trigger_type = journey.trigger.type

    if journey.id in RESERVED_IDS:
        problems.append(Problem("id", f"{journey.id!r} is reserved (the admin API uses /api/journeys/{journey.id})"))

    has_event = trigger_type in TRIGGERS_WITH_EVENT
    no_event = f"needs a triggering event to compare with, and {trigger_type} triggers start without one"
    if not has_event:
        for i, match in enumerate(journey.exit.events):
            if match.match is not None:
                problems.append(Problem(f"exit.events.{i}.match", f"`match` {no_event}"))
        for sid, step in journey.steps.items():
            if isinstance(step, WaitForEventStep) and step.match is not None:
                problems.append(Problem(f"steps.{sid}.match", f"`match` {no_event}"))
        facts = TRIGGER_FACTS.get(trigger_type, ())
        for path, ref in _refs(journey):
            source, _, rest = ref.ref.partition(".")
            if source == "trigger" and rest.split(".")[0] not in facts:
                known = f" (it provides {', '.join('trigger.' + f for f in facts)})" if facts else ""
                problems.append(Problem(path + ".ref", f"{{ref: {ref.ref}}} {no_event}{known}"))

    # Message conditions: engagement with a message of this run.
    ancestors = _ancestors(journey)
    for path, condition, branch in _message_conditions(journey):
        target = journey.steps.get(condition.message)
        where = path + ".message"
        if branch is None:
            problems.append(
                Problem(
                    where,
                    "a message condition needs a run, and entry filters are checked before "
                    "the run starts (use it in a branch step)",
                )
            )
        elif target is None:
            problems.append(Problem(where, _no_step(condition.message, list(journey.steps))))
        elif not isinstance(target, SendStep):
            problems.append(Problem(where, f"step {condition.message!r} is a {target.type} step, not a send step"))
        elif not links_broken and condition.message not in ancestors.get(branch, set()):
            problems.append(
                Problem(
                    where,
                    f"step {condition.message!r} can never have run before step {branch!r}, "
                    "so this condition never sees its message",
                    WARNING,
                )
            )

    problems.extend(_own_segment_event_problems(journey))

    for sid, step in journey.steps.items():
        if isinstance(step, SendStep) and step.variants:
            problems.extend(_duplicates(f"steps.{sid}.variants", [v.name for v in step.variants], "variant name"))
        elif isinstance(step, SendStep):
            # Experiment automation needs arms: on a plain send it would silently do nothing.
            # Only a value other than the default is flagged: stored drafts carry the defaults.
            for name, default in (("on_winner", "keep_all"), ("guardrails", "pause")):
                if getattr(step, name) != default:
                    problems.append(
                        Problem(
                            f"steps.{sid}.{name}",
                            f"{name} applies to experiments: a send step with `variants`, or a split",
                        )
                    )
        if isinstance(step, SplitStep):
            problems.extend(_duplicates(f"steps.{sid}.paths", [p.name for p in step.paths], "path name"))
    problems.extend(_primary_metric_problems(journey, links_broken))
    return problems


def _primary_metric_problems(journey: Journey, links_broken: bool) -> list[Problem]:
    """An experiment's primary metric needs something to count: a goal for conversion, a
    message after a split for open or click (a webhook is neither opened nor clicked)."""
    problems: list[Problem] = []
    ancestors: dict[str, set[str]] | None = None
    for sid, step in journey.steps.items():
        metric = getattr(step, "primary_metric", None)
        where = f"steps.{sid}.primary_metric"
        if metric == "conversion" and journey.goal is None:
            problems.append(Problem(where, "conversion needs the journey's `goal`: without one no run converts"))
        elif metric in ("open", "click") and isinstance(step, SplitStep) and not links_broken:
            if ancestors is None:
                ancestors = _ancestors(journey)
            follows = any(
                isinstance(other, SendStep) and other.channel != WEBHOOK and sid in ancestors[oid]
                for oid, other in journey.steps.items()
            )
            if not follows:
                problems.append(
                    Problem(where, f"{metric} needs a message after the split (email or push): no send step follows it")
                )
    return problems


def delivery_problems(journey: Journey, delivery: Delivery) -> list[Problem]:
    """Send steps whose channel does not exist, templates that are missing or belong to
    another channel than the step's, and (warnings) catalog places a location trigger names
    that the places catalog does not have, webhook destinations the workspace does not have."""
    problems: list[Problem] = []
    selector = getattr(journey.trigger, "catalog_places", None)
    if selector is not None and delivery.places is not None:
        # A warning, not an error: the places may be imported after the journey.
        later = "the trigger fires nowhere until one is imported (nudgeflow catalog import places FILE)"
        for i, place_id in enumerate(selector.ids):
            if place_id not in delivery.places:
                problems.append(
                    Problem(
                        f"trigger.catalog_places.ids.{i}",
                        f"no place {place_id!r} in the places catalog: {later}",
                        WARNING,
                    )
                )
        for i, tag in enumerate(selector.tags):
            if not any(tag in tags for tags in delivery.places.values()):
                problems.append(
                    Problem(
                        f"trigger.catalog_places.tags.{i}",
                        f"no place in the places catalog has the tag {tag!r}: {later}",
                        WARNING,
                    )
                )
    if delivery.segments is not None:
        problems.extend(_segment_problems(journey, delivery.segments))
    there_are = ", ".join(delivery.channels)
    for sid, step in journey.steps.items():
        if not isinstance(step, SendStep):
            continue
        channel = step.channel
        if channel not in delivery.channels:
            hint = difflib.get_close_matches(channel, delivery.channels, n=1, cutoff=0.6)
            message = f"unknown channel {channel!r}: the channels there are {there_are}" + (
                f" (did you mean {hint[0]!r}?)" if hint else ""
            )
            problems.append(Problem(f"steps.{sid}.channel", message))
            continue
        destination = step.webhook.destination if step.webhook is not None else None
        known = delivery.webhook_destinations
        if destination is not None and known is not None and destination not in known:
            # A warning, not an error: the destination may be set after the journey.
            hint = difflib.get_close_matches(destination, sorted(known), n=1, cutoff=0.6)
            problems.append(
                Problem(
                    f"steps.{sid}.webhook.destination",
                    f"no webhook destination {destination!r} in this workspace"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f": its messages fail until it is set (nudgeflow workspace webhooks destinations set "
                    f"{destination} --url …)",
                    WARNING,
                )
            )
        if delivery.templates is None or channel not in TEMPLATE_CHANNELS:
            continue
        named = [(f"steps.{sid}.template", step.template)] if step.template else []
        named += [(f"steps.{sid}.variants.{i}.template", v.template) for i, v in enumerate(step.variants or [])]
        for path, name in named:
            has = delivery.templates.get(name)
            if has is None:
                same = sorted(n for n, c in delivery.templates.items() if c == channel)
                hint = difflib.get_close_matches(name, same, n=1, cutoff=0.6)
                problems.append(
                    Problem(
                        path,
                        f"no template {name!r} in {delivery.templates_from}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                    )
                )
            elif has != channel:
                problems.append(
                    Problem(path, f"template {name!r} is {_a(has)} {has} template, and this step sends {channel}")
                )
    return problems


def segment_refs(journey: Journey) -> Iterator[tuple[str, str]]:
    """(path, segment id) of every segment the journey names: trigger, exit, conditions."""
    if journey.trigger.type == "segment":
        yield "trigger.segment", journey.trigger.segment
    if journey.exit.segment is not None:
        yield "exit.segment", journey.exit.segment
    for path, value in _walk(journey.entry, "entry"):
        if isinstance(value, SegmentCondition):
            yield path + ".segment", value.segment
    for sid, step in journey.steps.items():
        if isinstance(step, BranchStep):
            for path, value in _walk(step, f"steps.{sid}"):
                if isinstance(value, SegmentCondition):
                    yield path + ".segment", value.segment


def _segment_problems(journey: Journey, live: Collection[str]) -> list[Problem]:
    # Warnings, not errors: the segment may be applied after the journey. Until it is, the
    # trigger never fires, filters on it are false, and exit.segment never ends a run.
    problems = []
    for path, segment_id in segment_refs(journey):
        if segment_id in live:
            continue
        hint = difflib.get_close_matches(segment_id, sorted(live), n=1, cutoff=0.6)
        problems.append(
            Problem(
                path,
                f"no live segment {segment_id!r}: until one is applied, a trigger on it never fires and a "
                "condition on it is false" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                WARNING,
            )
        )
    return problems


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _duplicates(base: str, names: list[str], noun: str) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        if name in seen:
            out.append(Problem(f"{base}.{i}.name", f"duplicate {noun} {name!r} (also item {seen[name]})"))
        else:
            seen[name] = i
    return out


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every model, list item and dict value inside `value`, with its document path."""
    yield path, value
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            child = getattr(value, name)
            if child is not None:
                yield from _walk(child, f"{path}.{info.alias or name}" if path else (info.alias or name))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}.{i}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")


def own_segment_event(name: str) -> str | None:
    """The problem with reading `name` as an event, when it is one of the Segment Entered /
    Exited events the engine writes (the engine reacts to a membership change in the turn
    that makes it and passes those events undecided: store/event_log.py)."""
    if name not in (SEGMENT_ENTERED, SEGMENT_EXITED):
        return None
    on = "enter" if name == SEGMENT_ENTERED else "exit"
    return (
        f"{name!r} is the event Nudgeflow writes when a segment's membership changes, and the engine "
        f"does not read its own back: use a segment trigger ({{type: segment, segment: ID, on: {on}}}), "
        "a {segment: ID} condition or exit.segment"
    )


def _own_segment_event_problems(journey: Journey) -> list[Problem]:
    """Every place the journey names an event (triggers, goal, exits, waits, counts) that
    names a Segment Entered / Exited."""
    out: list[Problem] = []
    for path, value in _walk(journey, ""):
        if not isinstance(value, BaseModel):
            continue
        named = getattr(value, "event", None)
        if isinstance(named, str) and (message := own_segment_event(named)):
            out.append(Problem(f"{path}.event" if path else "event", message))
        listed = getattr(value, "events", None)
        for i, item in enumerate(listed if isinstance(listed, list) else ()):
            if isinstance(item, str) and (message := own_segment_event(item)):
                out.append(Problem(f"{path}.events.{i}", message))
    return out


def _refs(journey: Journey) -> Iterator[tuple[str, Ref]]:
    for path, value in _walk(journey, ""):
        if isinstance(value, Ref):
            yield path, value


def _message_conditions(journey: Journey) -> Iterator[tuple[str, MessageCondition, str | None]]:
    """(path, condition, the branch step holding it or None for the entry filter)."""
    for path, value in _walk(journey.entry, "entry"):
        if isinstance(value, MessageCondition):
            yield path, value, None
    for sid, step in journey.steps.items():
        if isinstance(step, BranchStep):
            for path, value in _walk(step, f"steps.{sid}"):
                if isinstance(value, MessageCondition):
                    yield path, value, sid


def _ancestors(journey: Journey) -> dict[str, set[str]]:
    """For each step, the steps a run may have passed through before reaching it."""
    children: dict[str, set[str]] = {sid: set() for sid in journey.steps}
    for sid, refs in _edges(journey.model_dump(by_alias=True)).items():
        children[sid] = {t for _, t in refs if t in journey.steps}
    out: dict[str, set[str]] = {sid: set() for sid in journey.steps}
    for source in journey.steps:
        frontier = [source]
        seen: set[str] = set()
        while frontier:
            node = frontier.pop()
            for child in children[node]:
                if child not in seen:
                    seen.add(child)
                    out[child].add(source)
                    frontier.append(child)
    return out


# --- files ----------------------------------------------------------------------------------


def journey_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the journey files inside directories (sorted, recursive)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in JOURNEY_SUFFIXES))
        else:
            out.append(path)
    return out


def validate_files(paths: Iterable[str | Path], delivery: Delivery | None = None) -> list[FileProblem]:
    """Every problem in every journey of these files (directories are searched)."""
    problems, _ = check_files(paths, delivery)
    return problems


def check_files(
    paths: Iterable[str | Path], delivery: Delivery | None = None
) -> tuple[list[FileProblem], list[tuple[str, Journey]]]:
    """Problems, and the valid journeys found (file, journey). An id defined twice is an error."""
    problems: list[FileProblem] = []
    journeys: list[tuple[str, Journey]] = []
    defined: dict[str, tuple[str, int | None]] = {}
    for path in journey_files(paths):
        name = str(path)
        try:
            documents = load_documents(path)
        except DocumentError as exc:
            problems.append(FileProblem(name, "", exc.line, str(exc)))
            continue
        except FileNotFoundError:
            problems.append(FileProblem(name, "", None, "no such file"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(FileProblem(name, "", None, f"cannot read the file: {exc}"))
            continue
        if not documents:
            problems.append(FileProblem(name, "", None, "no journey in this file", WARNING))
        for index, doc in documents:
            journey, found = check_journey(doc, delivery)
            problems.extend(FileProblem(name, p.path, p.line, p.message, p.severity, index) for p in found)
            if journey is None:
                continue
            line = doc.line_of(("id",)) if isinstance(doc, LocatedDict) else None
            if journey.id in defined:
                other_file, other_line = defined[journey.id]
                at = f"{other_file}:{other_line}" if other_line else other_file
                problems.append(
                    FileProblem(name, "id", line, f"journey {journey.id!r} is also defined at {at}", ERROR, index)
                )
                continue
            defined[journey.id] = (name, line)
            journeys.append((name, journey))
    return problems, journeys
