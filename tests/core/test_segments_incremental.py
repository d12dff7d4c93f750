"""Incremental membership equals membership computed from scratch, for any events.

The engine decides segments incrementally (core/segments.py): only the segments an event can
change, and, of those, not the ones whose membership that occurrence cannot change (a member
of "2 orders in 30 days" after another order: core/segment_index.py's `steady`). The instant
it keeps for a lapse may then be too early, never too late, and the person's one lapse timer
is moved only when a lapse comes earlier. This property test checks the whole of that against
`segments.compute`, which decides a segment from the person's stored events alone: after
every event, and after the clock moves on with the timers fired, the two agree on every
segment. Late events (an offline queue) and counts, sums of either sign, filters, engagement,
all/any/not are in the mix.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudgeflow.core import segments
from nudgeflow.core.catalog import Catalog
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.segment_index import SegmentVersion
from nudgeflow.core.state import ProfileState
from nudgeflow.model import event_names
from nudgeflow.model.segments import Segment
from tests.core.engine_driver import T0, Driver

NAMES = ("A", "B", event_names.EMAIL_OPENED, event_names.EMAIL_LINK_CLICKED)
WINDOWS = ("1h", "6h", "1d", "3d")
H = 3_600_000

performed = st.builds(
    lambda name, within, count, op: {"performed": name, "within": within, "count": count, "op": op},
    st.sampled_from(NAMES[:2]),
    st.sampled_from(WINDOWS),
    st.integers(0, 3),
    st.sampled_from(("gte", "gt", "lt", "lte", "eq", "ne")),
)
filtered = st.builds(
    lambda name, within, kind: {"performed": name, "within": within, "where": [{"property": "kind", "value": kind}]},
    st.sampled_from(NAMES[:2]),
    st.sampled_from(WINDOWS),
    st.sampled_from(("x", "y")),
)
summed = st.builds(
    lambda within, value, op: {"performed": "A", "within": within, "sum": {"property": "v", "value": value, "op": op}},
    st.sampled_from(WINDOWS),
    st.integers(-3, 12),
    st.sampled_from(("gte", "lt")),
)
engaged = st.builds(
    lambda what, within: {"engaged": what, "channel": "email", "within": within},
    st.sampled_from(("opened", "clicked")),
    st.sampled_from(WINDOWS),
)
leaf = st.one_of(performed, filtered, summed, engaged)
rule = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=4,
)
step = st.tuples(
    st.one_of(st.integers(0, H), st.integers(0, 30 * H)),  # time to the next event (timers fire on the way)
    st.sampled_from(NAMES),
    st.sampled_from((0, 0, 0, H, 20 * H)),  # how late it arrives
    st.integers(-4, 9),  # its `v`
    st.sampled_from(("x", "y")),  # its `kind`
)


def _from_scratch(cat: Catalog, sid: str, at: int, past: list[EventInput]) -> bool:
    return segments.compute(cat, ProfileState("fresh"), sid, at, past).member


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(rule, min_size=1, max_size=4),
    steps=st.lists(step, min_size=1, max_size=25),
    small_history=st.booleans(),
)
def test_incremental_membership_is_membership_from_scratch(
    rules: list[dict[str, Any]], steps: list[Any], small_history: bool
) -> None:
    segs = [Segment.model_validate({"id": f"s{i}", "name": f"s{i}", "when": r}) for i, r in enumerate(rules)]
    cat = Catalog(segments=[SegmentVersion(s.id, 1, s) for s in segs])
    if small_history:
        # The kept history full after a few events, as it is after HISTORY_CAP (200) of a name
        # in a window: a new occurrence then pushes out one a `where` may have counted. (4 is
        # still count + 1 for the largest count drawn, as the catalog would keep.)
        cat.history_cap.update({"A": 4, "B": 4})
    d = Driver(cat=cat, roundtrip=True)
    past: list[EventInput] = []
    for gap, name, late, v, kind in steps:
        d.advance(gap)
        at = d.state.segment_facts.get("at")
        if isinstance(at, int) and not past:
            at = None
        if past:
            # The clock moved on and every lapse due by now was decided: as of now, the same.
            for s in segs:
                assert (s.id in d.state.membership) == _from_scratch(cat, s.id, max(d.now, at or 0), past), s.id
        event = EventInput(f"e{len(past)}", "track", name, d.now - late, {"v": v, "kind": kind})
        d.event(event)
        past.append(event)
        # The instant segments were decided at (none yet when nothing could hold the person).
        decided_at = d.state.segment_facts.get("at", event.timestamp_ms)
        for s in segs:
            assert (s.id in d.state.membership) == _from_scratch(cat, s.id, decided_at, past), s.id
        # The one lapse timer is never later than the earliest lapse kept.
        due = d.state.segment_facts.get("due") or {}
        if due:
            assert d.timers[segments.LAPSE_TIMER][0] <= min(due.values())


def test_a_timer_of_the_earlier_per_segment_kind_is_decided_as_the_lapse_timer() -> None:
    """A `seg:<id>` timer armed by an earlier version still decides the lapses due by then."""
    seg = Segment.model_validate({"id": "loyal", "name": "loyal", "when": {"performed": "A", "within": "1d"}})
    d = Driver(cat=Catalog(segments=[SegmentVersion("loyal", 1, seg)]), roundtrip=True)
    d.track("A")
    assert "loyal" in d.state.membership
    d.timers.clear()  # as stored by the earlier version: its own timer, not the person's one
    d.state.segment_facts.pop(segments.ARMED, None)
    d.add_timer("seg:loyal", T0 + 24 * H, {"kind": "segment", "segment": "loyal"})
    d.advance(25 * H)
    assert "loyal" not in d.state.membership
    assert segments.LAPSE_TIMER not in d.timers  # nothing left to lapse


def test_a_full_history_pushing_out_a_counted_occurrence_is_decided() -> None:
    """A member of "a view of kind x" stays one after a view of kind y, unless the kept
    history is full and the y pushed the x out: then the segment is decided, and left."""
    when = {"performed": "A", "within": "1d", "where": [{"property": "kind", "value": "x"}]}
    seg = Segment.model_validate({"id": "x", "name": "x", "when": when})
    cat = Catalog(segments=[SegmentVersion("x", 1, seg)])
    cat.history_cap["A"] = 2
    d = Driver(cat=cat, roundtrip=True)
    d.track("A", {"kind": "x"})
    d.track("A", {"kind": "y"})
    assert "x" in d.state.membership  # [x, y]: the x still counts
    d.track("A", {"kind": "y"})
    assert "x" not in d.state.membership  # [y, y]: the x was pushed out


def test_a_full_history_pushing_out_the_journeys_engagement_is_decided() -> None:
    """`engaged` of one journey passes over another journey's opens: when the kept history is
    full, an open of another journey can push out the one it counted."""
    when = {"engaged": "opened", "channel": "email", "within": "1d", "journey": "welcome"}
    seg = Segment.model_validate({"id": "w", "name": "w", "when": when})
    cat = Catalog(segments=[SegmentVersion("w", 1, seg)])
    cat.history_cap[event_names.EMAIL_OPENED] = 2
    d = Driver(cat=cat, roundtrip=True)
    d.track(event_names.EMAIL_OPENED, {"journey_id": "welcome"})
    d.track(event_names.EMAIL_OPENED, {"journey_id": "cart"})
    assert "w" in d.state.membership
    d.track(event_names.EMAIL_OPENED, {"journey_id": "cart"})
    assert "w" not in d.state.membership  # the welcome open was pushed out
