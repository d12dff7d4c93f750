"""Segment documents' checks (model/segment_checks.py): each problem names its place."""

from __future__ import annotations

from nudgeflow.model.journey_checks import ERROR, WARNING
from nudgeflow.model.segment_checks import check_segment


def test_a_segment_counting_the_engines_own_segment_events_is_refused() -> None:
    segment, problems = check_segment(
        {"id": "s", "name": "S", "when": {"all": [{"performed": "Segment Entered", "within": "30d", "count": 2}]}}
    )
    assert segment is None
    [problem] = problems
    assert problem.path == "when.all.0.performed" and problem.severity == ERROR
    assert "does not read its own back" in problem.message and "{segment: ID}" in problem.message


def test_counts_that_always_or_never_hold_are_warned_of() -> None:
    segment, problems = check_segment(
        {
            "id": "s",
            "name": "S",
            "when": {
                "any": [
                    {"performed": "A", "within": "1d", "count": 0},
                    {"performed": "B", "within": "1d", "count": 0, "op": "lt"},
                ]
            },
        }
    )
    assert segment is not None
    assert [(p.path, p.severity) for p in problems] == [("when.any.0.count", WARNING), ("when.any.1.count", WARNING)]


def test_a_sum_compared_with_infinity_or_nan_is_refused() -> None:
    # Stored as JSON, where such a number is written as null: the stored version would not
    # read back, and every reader of the workspace's live segments (the engine too) would fail.
    for value in (float("inf"), float("-inf"), float("nan")):
        segment, problems = check_segment(
            {
                "id": "s",
                "name": "S",
                "when": {"performed": "Order", "within": "30d", "sum": {"property": "revenue", "value": value}},
            }
        )
        assert segment is None
        assert [(p.path, p.severity) for p in problems] == [("when.sum.value", ERROR)], value


def test_a_trait_or_where_value_of_infinity_or_nan_is_refused() -> None:
    # As for a sum: stored as JSON null, the version would not read back (`lt` null is no
    # comparison) or would compare with null instead (an `in` list).
    when = {
        "all": [
            {"trait": "score", "op": "lt", "value": float("inf")},
            {"trait": "score", "op": "in", "value": [1, float("nan")]},
            {"performed": "X", "within": "1d", "where": [{"property": "p", "op": "gte", "value": float("-inf")}]},
            {"trait": "score", "op": "lt", "value": 1e300},
        ]
    }
    segment, problems = check_segment({"id": "s", "name": "S", "when": when})
    assert segment is None
    assert [(p.path, p.severity) for p in problems] == [
        ("when.all.0.value", ERROR),
        ("when.all.1.value", ERROR),
        ("when.all.2.where.0.value", ERROR),
    ]
    assert "finite" in problems[0].message
