"""Property filters and conditions: what a marketer's "where" and "when" mean, as pure functions.

Everything here looks only at the `Scope` it is given (traits, the kept event history, the
triggering event's properties, the run, and `now_ms`); nothing reads the wall clock or does
I/O, so the engine, the simulator and tests all get the same answers.

Paths
    A filter's `property`, a condition's `trait` and a `Ref` are dotted paths: "cart_id",
    "address.city", "products.0.sku" (an integer segment indexes a list). A path that leads
    nowhere is *missing*, which is not the same as present with the value null.

References
    `{ref: "trigger.cart_id"}` is the triggering event's property; `{ref: "profile.plan"}` is
    the person's trait. A reference to something missing resolves to null.

Operators (`compare`)
    eq / ne
        Numbers compare as numbers (1 equals 1.0); a numeric string against a number compares
        as numbers too ("19.99" equals 19.99), because the same property often arrives as a
        string from one SDK and a number from another. Booleans are not numbers (true does
        not equal 1). Two strings compare as text ("1.0" does not equal "1"). Lists and
        objects are equal when their items are, by these same rules. A missing property is
        not equal to anything, null included: eq is false and ne is true.
    in / not_in
        The value must be a list; `in` holds when the property equals (as eq) one of its
        items. Anything that is not a list matches nothing.
    gt / gte / lt / lte
        Numbers, and numeric strings against numbers or each other, compare as numbers ("10"
        is greater than "9"). Two ISO 8601 dates or date-times compare as instants: a date
        alone is midnight UTC and a date-time without an offset is UTC. Other pairs of
        strings compare as text (code point order). Anything else — a missing property,
        null, a boolean, a number against a word, lists — is false, never an error.
    exists / not_exists
        exists: the property is present and not null.
    contains / not_contains
        A string contains a substring (case-sensitive). A list contains an item equal (as eq)
        to the value or, when the value is an object, an object item whose keys include all
        of the value's keys with equal values: `products contains {product_id: "p1"}` holds
        for an order with that product whatever else the item says. Anything else does not
        contain.

    Every negated operator (ne, not_in, not_exists, not_contains) is exactly the opposite of
    its positive form, so a missing property satisfies ne, not_in and not_contains. An
    unknown operator matches nothing. No value, however malformed, raises: a bad type simply
    does not match, so one odd event can never stop the engine.

Segments (`SegmentCondition`)
    Membership of a live segment as it is now (core/segments.py); a condition on a segment
    that is not live is false, negated or not.

Engagement (`MessageCondition`)
    Statuses imply the ones before them: clicked implies opened, delivered and sent; opened
    implies delivered and sent; delivered, bounced and complained imply sent (complained also
    implies delivered). A message the run never sent has reached no status. Send policies
    record `capped`, `deferred` and `dropped` (core/policies.py); each implies only itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import Run
from nudgeflow.model.journeys import (
    AllCondition,
    AnyCondition,
    Condition,
    EventCountCondition,
    Filter,
    MessageCondition,
    NotCondition,
    Ref,
    SegmentCondition,
    TraitCondition,
    duration_ms,
)
from nudgeflow.model.numbers import as_number, is_number


@dataclass(frozen=True, slots=True)
class SegmentView:
    """The person's membership of live segments, as segment conditions read it (Turn.segments)."""

    members: Mapping[str, Any]  # ProfileState.membership: segment id -> since
    live: Container[str]  # the live segments' ids: a condition on any other is false


@dataclass(slots=True)
class Scope:
    """What conditions and filters can look at."""

    traits: dict[str, Any]
    now_ms: int
    history: dict[str, list[list[Any]]] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None  # the trigger event's properties (run.trigger["properties"])
    run: Run | None = None
    group: dict[str, Any] | None = None  # the person's group's traits and `id` (ProfileState.group_traits)
    segments: SegmentView | None = None  # None: no live segment (every segment condition is false)


GROUP_PREFIX = "group."


def _trait(scope: Scope, name: str) -> tuple[bool, Any]:
    """A trait of the person, or of their group for `group.<trait>` (`group.id` is the groupId)."""
    if name.startswith(GROUP_PREFIX):
        return get_path(scope.group or {}, name[len(GROUP_PREFIX) :])
    return get_path(scope.traits, name)


# --- paths and references ------------------------------------------------------------------


def get_path(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path; integer segments index lists. Returns (found, value)."""
    if isinstance(data, dict) and path in data:
        # Also the fast path for the common undotted name, and the way to reach a key that
        # itself contains dots ("utm.source" sent as one key).
        return True, data[path]
    current = data
    for segment in path.split("."):
        if isinstance(current, dict):
            if segment not in current:
                return False, None
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and segment.isascii():
            index = int(segment)
            if index >= len(current):
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def resolve(value: Any, scope: Scope) -> Any:
    """A `Ref` becomes the value it points at (None when missing); anything else is itself."""
    if not isinstance(value, Ref):
        return value
    source, _, path = value.ref.partition(".")
    if source == "trigger":
        found, resolved = get_path(scope.trigger or {}, path)
    elif source == "profile":
        found, resolved = get_path(scope.traits, path)
    elif source == "group":
        found, resolved = get_path(scope.group or {}, path)
    else:  # the model's pattern forbids this; a hand-built Ref still must not raise
        return None
    return resolved if found else None


# --- values --------------------------------------------------------------------------------

# Only the extended calendar form: the basic forms ("20260101") are also plain numbers.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?")
_EPOCH = datetime(1970, 1, 1)


def _instant_key(value: str) -> timedelta | None:
    """An ISO 8601 date or date-time as its distance from the epoch (naive and date-only as UTC).

    A timedelta rather than an aware datetime: converting year-1 or year-9999 values to UTC
    overflows, subtracting from a naive epoch does not.
    """
    if len(value) > 64 or not _ISO.fullmatch(value):
        return None
    try:
        # RFC 3339 allows "t" and "z"; fromisoformat on 3.11 takes only capitals.
        parsed = datetime.fromisoformat(value.upper().replace(",", "."))
        offset = parsed.utcoffset() or timedelta(0)
        return (parsed.replace(tzinfo=None) - _EPOCH) - offset
    except (ValueError, OverflowError):
        return None


def _equal(actual: Any, expected: Any) -> bool:
    # bool is a subclass of int in Python; for marketers true and 1 are different things.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if is_number(actual) or is_number(expected):
        left, right = as_number(actual, exact=True), as_number(expected, exact=True)
        return left is not None and right is not None and left == right
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(_equal(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(_equal(actual[k], expected[k]) for k in actual)
    if isinstance(actual, (list, dict)) or isinstance(expected, (list, dict)):
        return False
    try:
        return bool(actual == expected)
    except Exception:  # an exotic object's __eq__; JSON values never get here
        return False


def _order(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 when the two values are comparable; None when they are not."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return None
    left, right = as_number(actual, exact=True), as_number(expected, exact=True)
    if left is not None and right is not None:
        if left != left or right != right:  # NaN is unordered; (nan > x) - (nan < x) would say "equal"
            return None
        return (left > right) - (left < right)
    if isinstance(actual, str) and isinstance(expected, str):
        a_instant, e_instant = _instant_key(actual), _instant_key(expected)
        if a_instant is not None and e_instant is not None:
            return (a_instant > e_instant) - (a_instant < e_instant)
        return (actual > expected) - (actual < expected)
    return None


def _dict_subset(item: Any, expected: dict[Any, Any]) -> bool:
    return isinstance(item, dict) and all(k in item and _equal(item[k], v) for k, v in expected.items())


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        if isinstance(expected, dict):
            return any(_dict_subset(item, expected) for item in actual)
        return any(_equal(item, expected) for item in actual)
    return False


def _positive(op: str, found: bool, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return found and _equal(actual, expected)
    if op == "in":
        return found and isinstance(expected, (list, tuple)) and any(_equal(actual, e) for e in expected)
    if op == "exists":
        return found and actual is not None
    if op == "contains":
        return found and _contains(actual, expected)
    if op in ("gt", "gte", "lt", "lte"):
        if not found:
            return False
        order = _order(actual, expected)
        if order is None:
            return False
        return {"gt": order > 0, "gte": order >= 0, "lt": order < 0, "lte": order <= 0}[op]
    return False


_NEGATED = {"ne": "eq", "not_in": "in", "not_exists": "exists", "not_contains": "contains"}


def compare(op: str, found: bool, actual: Any, expected: Any) -> bool:
    """Apply an operator to a property (found, actual) and a resolved value. Never raises."""
    positive = _NEGATED.get(op)
    try:
        holds = _positive(positive or op, found, actual, expected)
    except RecursionError:
        # Only absurdly deep nesting gets here (ingest caps depth, stored state may not): the
        # positive form does not hold, rather than the engine loop stopping.
        holds = False
    return not holds if positive is not None else holds


# --- filters and events --------------------------------------------------------------------


def filters_match(filters: Sequence[Filter], properties: dict[str, Any], scope: Scope | Callable[[], Scope]) -> bool:
    """All filters hold on these properties; a filter's value may refer to the trigger or profile.

    `scope` may be a function that builds the Scope: it is called only for a filter whose
    value is a reference, so the common filter (a constant) costs no Scope at all.
    """
    return compiled(filters)(properties, scope)


def reference_filters_match(filters: Sequence[Filter], properties: Any, scope: Scope | Callable[[], Scope]) -> bool:
    """The reference meaning of filters_match, one operator call per filter (see compiled)."""
    if not isinstance(scope, Scope) and any(isinstance(flt.value, Ref) for flt in filters):
        scope = scope()
    for flt in filters:
        found, actual = get_path(properties, flt.property)
        # Only a Ref reads the scope, and a Ref made it a Scope above.
        if not compare(flt.op, found, actual, resolve(flt.value, cast(Scope, scope))):
            return False
    return True


# --- compiled filters ------------------------------------------------------------------------
#
# Matching an event against the triggers of a busy workspace evaluates many filters per
# event, and the general `compare` (which must take any operator and any pair of values)
# costs several calls each. A filter's operator and value are fixed once its journey is
# loaded, so each filter is turned once into a test specialised for them: "category eq
# Shoes" becomes "the property is a str equal to 'Shoes'". Each specialised test gives the
# answer `compare` gives for every value a JSON document can hold (str, int, float, bool,
# None, list, dict); any other value, a dotted path, a reference or an unusual operand goes
# to `compare` itself. tests/core/test_compiled_filters.py checks the two agree.

_MISSING: Any = object()
_NONE_TYPE = type(None)
# Types a specialised test answers for without `compare`: every type of a JSON value.
_OTHERS = frozenset({bool, _NONE_TYPE, list, dict})
_JSON_TYPES = frozenset({str, int, float, bool, list, dict})
# (properties, scope or its factory, or None when no filter refers to it) -> holds
Matcher = Callable[[Any, "Scope | Callable[[], Scope] | None"], bool]


def _generic_test(path: str, op: str, value: Any) -> Matcher:
    """One filter as filters_match reads it: the reference the specialised tests must equal."""

    def test(properties: Any, scope: Any) -> bool:
        found, actual = get_path(properties, path)
        if isinstance(value, Ref) and not isinstance(scope, Scope):
            scope = scope()
        return compare(op, found, actual, resolve(value, scope))

    return test


def _specialised(path: str, op: str, value: Any, generic: Matcher) -> Matcher | None:
    """A test equal to `generic` for these properties whenever they are a JSON object, or None.

    Each looks the property up itself (one call per filter, not two); properties that are
    not a dict, and a value of a type no JSON document holds, go to `generic`. Negated
    operators hold exactly where the positive one does not (a missing property included).
    """
    neg = op in _NEGATED
    op = _NEGATED.get(op, op)
    if op == "exists":

        def exists(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            return (p.get(path) is not None) != neg

        return exists
    if op == "eq" and isinstance(value, bool):

        def eq_bool(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            return (p.get(path, _MISSING) is value) != neg  # True and False are singletons

        return eq_bool
    if op == "eq" and value is None:

        def eq_null(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a = p.get(path, _MISSING)
            if a is None or a is _MISSING or type(a) in _JSON_TYPES:
                return (a is None) != neg
            return generic(p, s)

        return eq_null
    if op == "eq" and isinstance(value, (int, float)):

        def eq_number(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a: object = p.get(path, _MISSING)
            t = type(a)
            if t is int or t is float:
                return (a == value) != neg
            if t is str:
                n = as_number(a, exact=True)
                return (n is not None and n == value) != neg
            if a is _MISSING or t in _OTHERS:
                return neg
            return generic(p, s)

        return eq_number
    if op == "eq" and isinstance(value, str):
        number = as_number(value, exact=True)

        def eq_text(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a: object = p.get(path, _MISSING)
            t = type(a)
            if t is str:
                return (a == value) != neg
            if t is int or t is float:
                return (number is not None and a == number) != neg
            if a is _MISSING or t in _OTHERS:
                return neg
            return generic(p, s)

        return eq_text
    if op == "in" and isinstance(value, (list, tuple)) and all(type(v) is str for v in value):
        texts = frozenset(value)
        # Numeric strings in the list also match the number ("19.99" and 19.99); NaN never does.
        numbers = frozenset(n for n in (as_number(v, exact=True) for v in value) if n is not None and n == n)

        def in_texts(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a = p.get(path, _MISSING)
            t = type(a)
            if t is str:
                return (a in texts) != neg
            if t is int or t is float:
                return (a in numbers) != neg
            if a is _MISSING or t in _OTHERS:
                return neg
            return generic(p, s)

        return in_texts
    if op in ("gt", "gte", "lt", "lte") and type(value) in (int, float) and value == value:
        want = {"gt": (1,), "gte": (0, 1), "lt": (-1,), "lte": (-1, 0)}[op]

        def order(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a = p.get(path, _MISSING)
            t = type(a)
            if t is int or t is float:
                n = a
            elif t is str:
                n = as_number(a, exact=True)
                if n is None:  # a word against a number: not comparable
                    return False
            elif a is _MISSING or t in _OTHERS:
                return False
            else:
                return generic(p, s)
            if n != n:
                return False
            return ((n > value) - (n < value)) in want

        return order
    if op == "contains" and isinstance(value, str) and as_number(value, exact=True) is None:
        # In a str, a substring; in a list, an item equal to it, which for JSON items means
        # a str equal to it, and `in` on the list says exactly that.
        def contains(p: Any, s: Any) -> bool:
            if type(p) is not dict:
                return generic(p, s)
            a = p.get(path, _MISSING)
            t = type(a)
            if t is str or t is list:
                return (value in a) != neg
            if a is _MISSING or t in _OTHERS:
                return neg
            return generic(p, s)

        return contains
    return None


def compile_filter(flt: Filter) -> Matcher:
    """One filter as a test of the properties; see above."""
    generic = _generic_test(flt.property, flt.op, flt.value)
    if isinstance(flt.value, Ref) or "." in flt.property:
        return generic
    return _specialised(flt.property, flt.op, flt.value, generic) or generic


def compile_filters(filters: Sequence[Filter]) -> Matcher:
    """filters_match for these filters, with each filter's test built once."""
    tests = [compile_filter(flt) for flt in filters]
    if not tests:
        return lambda properties, scope: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda properties, scope: first(properties, scope) and second(properties, scope)

    def match(properties: Any, scope: Scope | Callable[[], Scope] | None) -> bool:
        # A plain loop, not all(<generator>): this runs for every candidate trigger of every
        # event, and building the generator costs more than the tests (SIM110 is off here).
        for test in tests:  # noqa: SIM110
            if not test(properties, scope):
                return False
        return True

    return match


# Compiled matchers by the identity of the filter list they were built from, with whether
# any filter needs the Scope (a reference). Filter lists belong to journey definitions
# (frozen models), which the catalog keeps as long as it runs; each entry keeps its list
# alive, so an id cannot be reused while it is cached.
COMPILED: dict[int, tuple[Sequence[Filter], Matcher, bool]] = {}
COMPILED_MAX = 20_000


def compiled_entry(filters: Sequence[Filter]) -> tuple[Sequence[Filter], Matcher, bool]:
    entry = COMPILED.get(id(filters))
    if entry is not None and entry[0] is filters:
        return entry
    entry = (filters, compile_filters(filters), any(isinstance(flt.value, Ref) for flt in filters))
    if len(COMPILED) >= COMPILED_MAX:
        COMPILED.clear()  # catalogs were reloaded many times: start again with the live ones
    COMPILED[id(filters)] = entry
    return entry


def compiled(filters: Sequence[Filter]) -> Matcher:
    """The compiled matcher of this filter list, built on first use."""
    return compiled_entry(filters)[1]


def event_matches(spec: Any, event: EventInput, scope: Scope) -> bool:
    """The event is the one `spec` (EventMatch, NotFollowedBy, WaitForEventStep, Goal…) describes.

    With `spec.match` set, the event's property must equal the triggering event's (the same
    cart): both must be present and not null, since two events without a cart_id are not
    about the same cart.
    """
    if spec.event != event.name:
        return False
    if not filters_match(spec.where, event.properties, scope):
        return False
    match = getattr(spec, "match", None)
    if match:
        found_here, here = get_path(event.properties, match)
        found_there, there = get_path(scope.trigger or {}, match)
        if not (found_here and found_there and here is not None and there is not None):
            return False
        return _equal(here, there)
    return True


def count_events(
    history: dict[str, list[list[Any]]],
    event: str,
    where: Sequence[Filter],
    within_ms: int | None,
    now_ms: int,
    scope: Scope,
) -> int:
    """Events named `event` in (now - within, now] whose properties pass `where`.

    The upper bound matters in replays and for late events: an entry stamped after `now`
    has not happened yet as far as this decision is concerned.
    """
    since = None if within_ms is None else now_ms - within_ms
    count = 0
    for entry in history.get(event) or ():
        if not isinstance(entry, (list, tuple)) or not entry or not is_number(entry[0]):
            continue  # a malformed history entry counts as nothing rather than failing
        ts = entry[0]
        if ts > now_ms or (since is not None and ts <= since):
            continue
        if where:
            props = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            if not filters_match(where, props, scope):
                continue
        count += 1
    return count


# --- conditions ----------------------------------------------------------------------------

# What each recorded status proves the message also reached.
_IMPLIED: dict[str, tuple[str, ...]] = {
    "sent": ("sent",),
    "delivered": ("delivered", "sent"),
    "opened": ("opened", "delivered", "sent"),
    "clicked": ("clicked", "opened", "delivered", "sent"),
    "bounced": ("bounced", "sent"),
    "complained": ("complained", "delivered", "sent"),
}


def _message_reached(run: Run, step: str, status: str) -> bool:
    message = run.messages.get(step)
    if not isinstance(message, dict):
        return False
    statuses = message.get("statuses") or ()
    if not isinstance(statuses, (list, tuple)):
        return False
    return any(status in _IMPLIED.get(reached, (reached,)) for reached in statuses if isinstance(reached, str))


def evaluate(conditions: Sequence[Condition], scope: Scope) -> bool:
    """All conditions hold (an empty list holds)."""
    return all(evaluate_one(condition, scope) for condition in conditions)


def evaluate_one(condition: Condition, scope: Scope) -> bool:
    if isinstance(condition, TraitCondition):
        found, actual = _trait(scope, condition.trait)
        return compare(condition.op, found, actual, resolve(condition.value, scope))
    if isinstance(condition, EventCountCondition):
        within = duration_ms(condition.within) if condition.within else None
        count = count_events(scope.history, condition.event, condition.where, within, scope.now_ms, scope)
        return compare(condition.op, True, count, condition.value)
    if isinstance(condition, MessageCondition):
        if scope.run is None:
            # Outside a run (an entry filter) no message was sent: "not opened" holds.
            return condition.negate
        return _message_reached(scope.run, condition.message, condition.status) != condition.negate
    if isinstance(condition, SegmentCondition):
        # A segment that is not live holds no one, and its negation no one either: a journey
        # naming a segment not applied yet (or misspelled) lets no one through either way.
        view = scope.segments
        if view is None or condition.segment not in view.live:
            return False
        return (condition.segment in view.members) != condition.negate
    if isinstance(condition, AllCondition):
        return all(evaluate_one(c, scope) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return any(evaluate_one(c, scope) for c in condition.any)
    if isinstance(condition, NotCondition):
        return not evaluate_one(condition.not_, scope)
    return False  # not a condition model: matches nothing rather than raising
