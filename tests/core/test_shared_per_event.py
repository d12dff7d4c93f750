"""What the candidate journeys of one event share (core/triggers.py's on_candidates: location
journeys skipped for an event without a position, the nearest place and the earlier
occurrences found once per event) decides exactly what each journey finding its own does:
the same effects and the same state documents, on the benchmark's 100 journeys (the
examples and copies of each per market, benchmarks/engine.py)."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks import engine as engine_bench

from nudgeflow.core import triggers
from nudgeflow.core.catalog import Catalog, JourneyVersion
from nudgeflow.core.effects import ScheduleTimer, SendMessage
from nudgeflow.core.engine import Engine
from nudgeflow.core.inputs import EventInput
from nudgeflow.core.state import ProfileState
from nudgeflow.core.turn import Turn

END_MS = 1_767_225_600_000
PEOPLE, EVENTS, BATCH = 300, 6000, 500


def _decide(journeys: list[Any], rows: list[tuple[Any, ...]]) -> tuple[list[list[Any]], dict[str, bytes]]:
    """Every event decided in batches (one processing time a batch, as the runtime does)."""
    engine = Engine(Catalog(JourneyVersion(j.id, 1, j) for j in journeys))
    states: dict[str, ProfileState] = {}
    effects: list[list[Any]] = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        now_ms = chunk[-1][7] + 500
        for row in chunk:
            state = states.setdefault(row[2], ProfileState(row[2]))
            effects.append(engine.on_event(state, EventInput.from_payload(row[9], row[7]), now_ms))
    return effects, {pid: state.to_json() for pid, state in states.items()}


def _each_on_its_own(
    turn: Turn, candidates: list[JourneyVersion], event: EventInput, changes: dict[str, tuple[Any, Any]]
) -> None:
    """The engine's loop as it was: every journey called, each finding its own places and
    occurrences (what one journey found is forgotten before the next)."""
    for jv in candidates:
        turn.shared_of = None
        triggers.on_event(turn, jv, event, changes)


def test_journeys_sharing_an_events_work_decide_what_each_alone_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    journeys = engine_bench.journey_variants(100)
    rows = engine_bench.generate(PEOPLE, EVENTS, 5, END_MS - 600_000, END_MS, "ws", sent=False).rows
    shared, shared_docs = _decide(journeys, rows)
    monkeypatch.setattr(triggers, "on_candidates", _each_on_its_own)
    alone, alone_docs = _decide(journeys, rows)
    # The events did what the shared work is for: many journeys' watches and timers, sends,
    # people inside a geofence.
    flat = [e for effects in shared for e in effects]
    assert sum(type(e) is ScheduleTimer for e in flat) > 5 * EVENTS // 10
    assert sum(type(e) is SendMessage for e in flat) > 50
    assert any(b'-1:inside"' in doc for doc in shared_docs.values())
    assert any(b'"nf:browse-abandonment-' in doc for doc in shared_docs.values())
    assert shared == alone
    assert shared_docs == alone_docs
