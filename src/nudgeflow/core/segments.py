"""Segment membership, decided incrementally by the engine (pure: no I/O, no wall clock).

Public entry points:
- `compute(catalog, state, segment_id, at_ms, past=None) -> Membership`: whether the person
  is in one live segment at `at_ms`, and when the answer could next change with no new
  event (the lapse timer to arm). Pure: `state` is not changed; `past` (the person's stored
  events, oldest first, as EventInputs) stands in for the kept history when given.
- `needs(catalog, segment_id) -> SegmentNeeds`: what `past` must hold for one segment.
- `Engine.on_segment_apply(state, segment_id, past, now_ms)` (core/engine.py) is the same
  computation inside an engine turn: it brings the state up to date and returns the
  SegmentChanged and timer effects, as the journey backfill does (core/backfill.py).

The rest of this module is the engine's side (on_event, on_traits, on_timer, start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nudgeflow.core.catalog import Catalog
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState

SEGMENT_TIMER = "segment"  # a lapse timer's payload kind


@dataclass(frozen=True, slots=True)
class Membership:
    """One person and one segment at one instant."""

    member: bool
    # The next instant the answer could change with no new event (a counted occurrence
    # leaving its window, or one stamped later coming into it); None: not without an event.
    next_due_ms: int | None


@dataclass(frozen=True, slots=True)
class SegmentNeeds:
    """What the store must read of a person's past to compute a segment (see compute)."""

    names: frozenset[str]  # stored events of these names...
    lookback_ms: int  # ...at most this far back from now
    # Also one stored event whose context carries a mobile device token
    # (context.device.token), for `reachable: push`.
    device_token: bool


def needs(catalog: Catalog, segment_id: str) -> SegmentNeeds:
    """What compute() needs in `past` for this live segment (and the live ones it refers to)."""
    raise NotImplementedError("h14-seg-core is building it")


def compute(
    catalog: Catalog, state: ProfileState, segment_id: str, at_ms: int, past: Sequence[EventInput] | None = None
) -> Membership:
    """Whether the person is in the live segment `segment_id` at `at_ms`, and when to look again.

    Membership of the segments it refers to is read from `state.membership` (compute those
    first: Catalog.segment_index.order is dependency order). A segment that is not live is
    no one's."""
    raise NotImplementedError("h14-seg-core is building it")
