"""Reading a person's kept history (ProfileState.history) back from a time.

What the engine decided before a late event is looked for here: the exit event or goal event
after a run's late trigger event (steps.exit_seen, steps.goal_seen), the follow-up after a late
"not followed" trigger event (triggers._followed_already). Each wants the kept occurrences of
one name from a time on, and matches them its own way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def newest_since(entries: list[list[Any]] | None, since: int, until: int | None = None) -> Iterator[list[Any]]:
    """The entries ([ts, {props}] or [ts, {props}, message_id]) at or after `since` and, with
    `until`, at or before it: newest first. The history is kept oldest first, so the walk stops
    at the first entry before `since`, and costs nothing when the newest is before it."""
    if not entries or entries[-1][0] < since:
        return
    for entry in reversed(entries):
        ts = entry[0]
        if ts < since:
            return
        if until is None or ts <= until:
            yield entry
