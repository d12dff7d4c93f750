"""The one walk of a kept history from a time (core/kept_history.py) that exit_seen, goal_seen
and the "not followed" trigger's follow-up check share."""

from __future__ import annotations

from nudgeflow.core.kept_history import newest_since


def test_newest_first_within_the_bounds_inclusive_and_entries_with_a_message_id_too() -> None:
    entries = [[10, {}], [20, {"a": 1}], [30, {}, "m-30"], [40, {}]]
    assert [e[0] for e in newest_since(entries, 20)] == [40, 30, 20]
    assert [e[0] for e in newest_since(entries, 20, until=30)] == [30, 20]
    assert [e[0] for e in newest_since(entries, 21, until=39)] == [30]
    assert list(newest_since(entries, 41)) == [] and list(newest_since(None, 0)) == []
    assert list(newest_since([], 0)) == []
