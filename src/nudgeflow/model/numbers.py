"""Reading a value from an event, a trait or a template as a number: the one coercion.

Each reader has its own rule, kept as it was when each had its own copy; a keyword chooses it:
- the default (a milestone's sum, a goal's revenue): numbers and numeric strings as float()
  reads them, finite only, never a bool;
- `exact=True` (comparing in a condition, indexing a trigger's constants): numbers as they
  are (ints stay exact, even non-finite floats pass), strings only in the strict form below;
- `lenient=True` (templates' filters and product views): anything float() takes (Decimal
  too), finite only, never None or a bool; an int too large for a float is None (it raised
  OverflowError until 2026-12, and a `{{ price | money }}` of 10**400 stopped the render).
"""

from __future__ import annotations

import math
import re
from typing import Any

# Strict on purpose: float() would also take " 12 ", "1_000", "nan" and "inf", which are not
# numbers anyone typed into a form field.
NUMERIC = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
INTEGER = re.compile(r"[-+]?\d+")


def is_number(value: Any) -> bool:
    """An int or a float; a bool is not a number here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_number(value: Any, *, exact: bool = False, lenient: bool = False) -> int | float | None:
    """`value` as a number by the reader's rule (see the module docstring), else None."""
    if exact:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and len(value) <= 400 and NUMERIC.fullmatch(value):
            try:
                # Integers stay exact: "12345678901234567890" must equal that int, not a float.
                return int(value) if INTEGER.fullmatch(value) else float(value)
            except (ValueError, OverflowError):
                return None
        return None
    if lenient:
        if isinstance(value, bool) or value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    # "nan", "inf" and "1e400" parse as floats, but the state and run rows are JSON, where
    # orjson writes them as null: a running sum would come back as None and then raise.
    return number if math.isfinite(number) else None


# A goal's revenue beyond this (either sign) is no revenue: no order in any currency comes
# near it, and the report rollups keep each revenue's square (Welch's interval), which past
# about 1e154 is beyond a float's range and raised OverflowError in the engine's batch.
REVENUE_LIMIT = 1e15


def as_revenue(value: Any) -> float | None:
    """A goal event's revenue property as a number (the default rule), None when it is not
    one or lies beyond ±REVENUE_LIMIT (the conversion still counts, with no revenue)."""
    number = as_number(value)
    if number is None or -REVENUE_LIMIT <= number <= REVENUE_LIMIT:
        return number
    return None
