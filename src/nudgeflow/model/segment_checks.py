"""Checking segment definitions: every problem, with where it is, as for journeys.

Structural problems come from the pydantic models (`model.segments`) through
journey_checks' translation (document paths, messages that name the choices). What a
schema cannot say is checked here: a window of no length, a count that always holds, and
references to other segments, which must be known (defined in the same files, or live in
the workspace when the caller knows it) and must not go round in a circle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nudgeflow.model.journey_checks import (
    ERROR,
    NOT_FINITE,
    RESERVED_IDS,
    WARNING,
    DocumentError,
    FileProblem,
    LocatedDict,
    Problem,
    check_document,
    finite,
    load_documents,
    own_segment_event,
)
from nudgeflow.model.journeys import TraitCondition, duration_ms
from nudgeflow.model.segments import (
    AllOf,
    AnyOf,
    EngagedCondition,
    NotRule,
    PerformedCondition,
    Segment,
    SegmentCycleError,
    referenced_segments,
    segment_order,
)

SEGMENT_SUFFIXES = (".yaml", ".yml", ".json")


def check_segment(doc: Any, known: Iterable[str] | None = None) -> tuple[Segment | None, list[Problem]]:
    """Validate one segment document: (the Segment if it has no errors, every problem).

    `known`: the ids a `segment` condition may name (None: references are not checked here;
    check_files and the store check them against what they know)."""
    segment, problems = check_document(doc, Segment, "a segment")
    if segment is None and not isinstance(doc, dict):
        return None, problems
    if segment is not None:
        more = _rule_problems(segment)
        if known is not None:
            names = set(known)
            for where, ref in _references(segment.when, "when"):
                if ref not in names:
                    more.append(Problem(where, f"no segment {ref!r}: apply it first, or in the same files"))
        if isinstance(doc, LocatedDict):
            more = [p if p.line is not None else _with_line(p, doc) for p in more]
        problems = problems + more
    problems.sort(key=lambda p: (p.line if p.line is not None else 1 << 30, p.severity != ERROR, p.path))
    if any(p.severity == ERROR for p in problems):
        return None, problems
    return segment, problems


def _with_line(problem: Problem, doc: LocatedDict) -> Problem:
    parts = tuple(problem.path.split(".")) if problem.path else ()
    return Problem(problem.path, problem.message, problem.severity, doc.line_of(parts))


def _rule_problems(segment: Segment) -> list[Problem]:
    out: list[Problem] = []
    if segment.id in RESERVED_IDS:
        out.append(Problem("id", f"{segment.id!r} is reserved (an admin API path): choose another id"))
    for where, rule in _walk(segment.when, "when"):
        if isinstance(rule, (PerformedCondition, EngagedCondition)) and duration_ms(rule.within) <= 0:
            out.append(Problem(f"{where}.within", "a window must be longer than nothing"))
        if isinstance(rule, PerformedCondition) and (message := own_segment_event(rule.performed)):
            out.append(Problem(f"{where}.performed", message))
        if isinstance(rule, TraitCondition) and not finite(rule.value):
            out.append(Problem(f"{where}.value", NOT_FINITE))
        if isinstance(rule, PerformedCondition):
            for index, item in enumerate(rule.where):
                if not finite(item.value):
                    out.append(Problem(f"{where}.where.{index}.value", NOT_FINITE))
        if isinstance(rule, PerformedCondition) and rule.sum is None:
            if rule.op == "gte" and rule.count == 0:
                out.append(Problem(f"{where}.count", "`count: 0` with `op: gte` always holds", WARNING))
            if rule.op == "lt" and rule.count == 0:
                out.append(Problem(f"{where}.count", "`count: 0` with `op: lt` never holds", WARNING))
    return out


def _walk(rule: Any, where: str) -> Iterator[tuple[str, Any]]:
    """Every condition of the tree with its path in the document."""
    yield where, rule
    if isinstance(rule, AllOf):
        for index, item in enumerate(rule.all):
            yield from _walk(item, f"{where}.all.{index}")
    elif isinstance(rule, AnyOf):
        for index, item in enumerate(rule.any):
            yield from _walk(item, f"{where}.any.{index}")
    elif isinstance(rule, NotRule):
        yield from _walk(rule.not_, f"{where}.not")


def _references(rule: Any, where: str) -> Iterator[tuple[str, str]]:
    for path, item in _walk(rule, where):
        for ref in referenced_segments(item) if not isinstance(item, (AllOf, AnyOf, NotRule)) else ():
            yield f"{path}.segment", ref


# --- files ----------------------------------------------------------------------------------


def segment_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the segment files inside directories (sorted, recursive)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SEGMENT_SUFFIXES))
        else:
            out.append(path)
    return out


def check_files(
    paths: Iterable[str | Path], live: Mapping[str, Segment] | None = None
) -> tuple[list[FileProblem], list[tuple[str, Segment]]]:
    """Problems, and the valid segments found (file, segment), each after those it refers to.

    `live`: the workspace's live segments by id, when known. A reference to a segment
    neither in the files nor live is then an error; without `live` (no database) it is a
    warning, checked again by `apply`. An id defined twice, and references that go round in
    a circle (among the files and the live segments they replace or refer to), are errors."""
    problems: list[FileProblem] = []
    found: list[tuple[str, Segment, int, Any]] = []
    defined: dict[str, tuple[str, int | None]] = {}
    for path in segment_files(paths):
        name = str(path)
        try:
            documents = load_documents(path)
        except DocumentError as exc:
            problems.append(FileProblem(name, "", exc.line, str(exc).replace("journey file", "segment file")))
            continue
        except FileNotFoundError:
            problems.append(FileProblem(name, "", None, "no such file"))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(FileProblem(name, "", None, f"cannot read the file: {exc}"))
            continue
        if not documents:
            problems.append(FileProblem(name, "", None, "no segment in this file", WARNING))
        for index, doc in documents:
            segment, issues = check_segment(doc)
            problems.extend(FileProblem(name, p.path, p.line, p.message, p.severity, index) for p in issues)
            if segment is None:
                continue
            line = doc.line_of(("id",)) if isinstance(doc, LocatedDict) else None
            if segment.id in defined:
                other_file, other_line = defined[segment.id]
                there = f"{other_file}:{other_line}" if other_line else other_file
                problems.append(
                    FileProblem(name, "id", line, f"segment {segment.id!r} is also defined at {there}", ERROR, index)
                )
                continue
            defined[segment.id] = (name, line)
            found.append((name, segment, index, doc))
    valid: list[tuple[str, Segment]] = []
    for name, segment, index, doc in found:
        ok = True
        for where, ref in _references(segment.when, "when"):
            if ref in defined or (live is not None and ref in live):
                continue
            at = doc.line_of(where.split(".")) if isinstance(doc, LocatedDict) else None
            if live is None:
                message = f"no segment {ref!r} in these files (apply checks the workspace's live segments)"
                problems.append(FileProblem(name, where, at, message, WARNING, index))
            else:
                message = f"no segment {ref!r}: apply it first, or in the same files"
                problems.append(FileProblem(name, where, at, message, ERROR, index))
                ok = False
        if ok:
            valid.append((name, segment))
    circle = circle_among([s for _n, s, _i, _d in found], live or {})
    if circle is not None:
        involved = [(n, s, i, d) for n, s, i, d in found if s.id in circle]
        if involved:
            name, _segment, index, doc = involved[0]
            at = doc.line_of(("when",)) if isinstance(doc, LocatedDict) else None
            message = "segments refer to each other in a circle: " + " -> ".join(circle)
            problems.append(FileProblem(name, "when", at, message, ERROR, index))
            valid = [(n, s) for n, s in valid if s.id not in circle]
    order = {sid: i for i, sid in enumerate(segment_order(s for _n, s in valid))}
    valid.sort(key=lambda item: order[item[1].id])
    return problems, valid


def circle_among(new: Iterable[Segment], live: Mapping[str, Segment]) -> list[str] | None:
    """A circle of references among these segments and the live ones (which the new ones
    replace where they share an id): the ids along it, the first repeated at the end."""
    everything = dict(live)
    everything.update((s.id, s) for s in new)
    try:
        segment_order(everything.values())
    except SegmentCycleError as exc:
        return exc.cycle
    return None
