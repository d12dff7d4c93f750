"""Segment definitions: who is in a group of people now, written as code like journeys.

A segment is a tree of conditions (all/any/not) over a person's traits, what they did in a
rolling window, how they engaged with messages, whether they can be reached, and membership
of other segments. The engine keeps membership up to date as events arrive and as windows
lapse (a durable timer, never a poll) and emits `Segment Entered` / `Segment Exited` when it
changes. These pydantic models are the source of the published JSON Schema
(`segment_json_schema`); docs/segments.md gives the exact semantics of each window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from nudgeflow.errors import ModelError
from nudgeflow.model.journeys import Duration, Filter, SegmentCondition, SegmentId, TraitCondition

Comparison = Literal["eq", "ne", "gt", "gte", "lt", "lte"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SumOf(_Strict):
    """A property of the events summed over the window, compared with a value."""

    property: str = Field(min_length=1, examples=["revenue"])
    op: Comparison = "gte"
    # Finite: definitions are stored as JSON, where infinity and NaN would be written as null.
    value: float = Field(allow_inf_nan=False)


class PerformedCondition(_Strict):
    """Performed an event (with property filters) N times, or summed a property past a value,
    within a rolling window ending now."""

    performed: str = Field(min_length=1, description="The event name.", examples=["Order Completed"])
    where: list[Filter] = Field(default_factory=list)
    within: Duration = Field(description="The rolling window, e.g. 30d.")
    op: Comparison = Field(default="gte", description="How the count compares with `count` (ignored with `sum`).")
    count: int = Field(default=1, ge=0)
    sum: SumOf | None = Field(default=None, description="Compare the sum of a property instead of the count.")


class EngagedCondition(_Strict):
    """Opened or clicked a message (of any journey, or of one) within a window."""

    engaged: Literal["opened", "clicked"]
    channel: Literal["email", "push"] | None = Field(default=None, description="None means either channel.")
    journey: str | None = Field(default=None, description="Only messages of this journey.")
    within: Duration


class ReachableCondition(_Strict):
    """Can be reached: a subscribed email address, or a push target (any of Web Push, FCM, APNs)."""

    reachable: Literal["email", "push", "any"]


class AllOf(_Strict):
    all: list[SegmentRule] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[SegmentRule] = Field(min_length=1)


class NotRule(_Strict):
    not_: SegmentRule = Field(alias="not")


_KINDS: dict[type[Any], str] = {}


def _rule_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("trait", "performed", "engaged", "reachable", "segment", "all", "any", "not"):
            if key in value:
                return key
        return None
    return _KINDS.get(type(value))


SegmentRule = Annotated[
    Annotated[TraitCondition, Tag("trait")]
    | Annotated[PerformedCondition, Tag("performed")]
    | Annotated[EngagedCondition, Tag("engaged")]
    | Annotated[ReachableCondition, Tag("reachable")]
    | Annotated[SegmentCondition, Tag("segment")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotRule, Tag("not")],
    Discriminator(
        _rule_kind,
        custom_error_type="segment_rule_kind",
        custom_error_message="a segment condition needs one of the keys trait, performed, engaged, reachable, "
        "segment, all, any, not",
    ),
]
_KINDS.update(
    {
        TraitCondition: "trait",
        PerformedCondition: "performed",
        EngagedCondition: "engaged",
        ReachableCondition: "reachable",
        SegmentCondition: "segment",
        AllOf: "all",
        AnyOf: "any",
        NotRule: "not",
    }
)


class Segment(_Strict):
    """One segment definition, as written in a YAML file."""

    schema_: str | None = Field(default=None, alias="$schema")
    id: SegmentId
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    when: SegmentRule = Field(description="The condition a member meets (combine with all/any/not).")

    @model_validator(mode="after")
    def _not_itself(self) -> Segment:
        if self.id in referenced_segments(self.when):
            raise ValueError(f"segment {self.id!r} refers to itself")
        return self


def referenced_segments(rule: Any) -> set[str]:
    """The ids of the segments a condition tree refers to (for ordering and cycle checks)."""
    if isinstance(rule, SegmentCondition):
        return {rule.segment}
    if isinstance(rule, (AllOf, AnyOf)):
        out: set[str] = set()
        for item in rule.all if isinstance(rule, AllOf) else rule.any:
            out |= referenced_segments(item)
        return out
    if isinstance(rule, NotRule):
        return referenced_segments(rule.not_)
    return set()


class SegmentCycleError(ModelError, ValueError):
    """Segments that refer to each other in a circle: none of them can be computed first."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__("segments refer to each other in a circle: " + " -> ".join(cycle))
        self.cycle = cycle


def segment_order(segments: Iterable[Segment]) -> list[str]:
    """The segments' ids in an order where each comes after the segments it refers to.

    References to segments not among these are left out of the ordering (such a condition is
    false: see core/segments.py). Ties go by id, so the order is the same however the segments
    are listed. Raises SegmentCycleError naming one cycle when there is one.
    """
    by_id = {segment.id: segment for segment in segments}
    needs = {sid: sorted(referenced_segments(seg.when) & by_id.keys()) for sid, seg in by_id.items()}
    order: list[str] = []
    placed: set[str] = set()
    remaining = sorted(by_id)
    while remaining:
        ready = [sid for sid in remaining if all(dep in placed for dep in needs[sid])]
        if not ready:
            raise SegmentCycleError(_a_cycle(remaining, needs))
        order.extend(ready)
        placed.update(ready)
        remaining = [sid for sid in remaining if sid not in placed]
    return order


def _a_cycle(remaining: list[str], needs: dict[str, list[str]]) -> list[str]:
    # Every remaining segment waits on another remaining one: following the first unplaced
    # dependency from any of them must come back to a segment already on the path.
    left = set(remaining)
    path = [remaining[0]]
    while True:
        step = next(dep for dep in needs[path[-1]] if dep in left)
        if step in path:
            return [*path[path.index(step) :], step]
        path.append(step)


def segment_json_schema() -> dict[str, Any]:
    schema = Segment.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://nudgeflow.dev/schema/segment.schema.json"
    schema["title"] = "Nudgeflow segment"
    return schema


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotRule.model_rebuild()
Segment.model_rebuild()
