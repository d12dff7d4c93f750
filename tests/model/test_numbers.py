"""The one number coercion reads every value as each reader's own copy used to."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from nudgeflow.model.numbers import as_number, is_number

SAMPLES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    10**20,
    10**400,
    0.0,
    1.5,
    -2.25,
    math.inf,
    -math.inf,
    math.nan,
    "",
    " ",
    "1",
    "-1",
    "+3",
    "1.0",
    "1.",
    ".5",
    "1e3",
    "1E-2",
    "12345678901234567890",
    " 12 ",
    "1_000",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "abc",
    "0x10",
    "1" * 401,
    "١٢",
    Decimal("2.5"),
    Decimal("NaN"),
    Fraction(1, 4),
    b"1.5",
    [],
    {},
    (1,),
    object(),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _outcome(fn: Any, value: Any) -> Any:
    try:
        return fn(value)
    except Exception as exc:
        return type(exc)


def _was_milestone_sum(value: Any) -> float | None:
    """core/backfill._amount and core/triggers._number, as they were."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _was_template(value: Any) -> float | None:
    """content/filters._number and content/recommend._number, as they were."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # the old copy raised OverflowError: a fixed bug
        return None
    return number if math.isfinite(number) else None


_WAS_NUMERIC = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WAS_INTEGER = re.compile(r"[-+]?\d+")


def _was_condition(value: Any) -> int | float | None:
    """core/conditions._as_number (also catalog's), as it was."""
    numeric, integer = _WAS_NUMERIC, _WAS_INTEGER
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 400 and numeric.fullmatch(value):
        try:
            return int(value) if integer.fullmatch(value) else float(value)
        except (ValueError, OverflowError):
            return None
    return None


@pytest.mark.parametrize(
    ("rule", "was"),
    [
        ({}, _was_milestone_sum),
        ({"lenient": True}, _was_template),
        ({"exact": True}, _was_condition),
    ],
)
def test_each_rule_reads_as_its_old_copy(rule: dict[str, bool], was: Any) -> None:
    for value in SAMPLES:
        old, new = _outcome(was, value), _outcome(lambda v: as_number(v, **rule), value)
        assert _same(new, old), (rule, value, old, new)


def test_the_rules_differ_where_they_did() -> None:
    assert as_number("1") == 1.0 and isinstance(as_number("1"), float)
    assert as_number("1", exact=True) == 1 and isinstance(as_number("1", exact=True), int)
    assert as_number(" 12 ") == 12.0 and as_number(" 12 ", exact=True) is None
    assert as_number(math.inf) is None and as_number(math.inf, exact=True) == math.inf
    assert as_number(Decimal("2.5")) is None and as_number(Decimal("2.5"), lenient=True) == 2.5
    assert as_number(10**400) is None
    assert as_number(10**400, lenient=True) is None  # was OverflowError, which stopped a render
    assert as_number(True) is None and as_number(True, exact=True) is None and as_number(True, lenient=True) is None


def test_is_number() -> None:
    assert is_number(1) and is_number(1.5) and is_number(math.nan)
    assert not is_number(True) and not is_number("1") and not is_number(None) and not is_number(Decimal(1))
