"""Profile states kept parsed between batches (runtime/state_cache.py): reused only while the
row holds exactly what was saved, and deciding with them changes nothing."""

from __future__ import annotations

import shutil
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import engine as engine_bench
from sqlalchemy import Engine

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.core.state import ProfileState
from nudgeflow.runtime.processor import EngineCache, RuntimeStats, fire_timers, process_events
from nudgeflow.runtime.stages import DirectRunner
from nudgeflow.runtime.state_cache import StateCache
from nudgeflow.store import database
from tests.support import query_rows

EVENTS, PEOPLE = 4000, 200


def test_a_kept_state_is_given_back_only_for_the_document_it_was_saved_as() -> None:
    cache = StateCache()
    a = ProfileState("a")
    cache.keep("a", '{"traits":{}}', a)
    assert cache.take("a", '{"traits":{"x":1}}') is None  # another writer changed the row
    assert cache.take("a", '{"traits":{}}') is None  # and the entry went with the mismatch
    cache.keep("a", '{"traits":{}}', a)
    assert cache.take("a", '{"traits":{}}') is a
    assert cache.take("a", '{"traits":{}}') is None  # taken: the batch owns it until it saves it
    assert (cache.hits, cache.misses, cache.size) == (1, 1, 0)


def test_the_documents_kept_stay_within_the_capacity_the_least_recently_saved_going_first() -> None:
    cache = StateCache(capacity=10)
    for pid in ("a", "b", "c"):
        cache.keep(pid, "{1234}", ProfileState(pid))  # 6 characters each: one fits beside another
    assert (len(cache), cache.size) == (1, 6)
    assert cache.take("b", "{1234}") is None and cache.take("c", "{1234}") is not None
    cache.keep("a", "{}", ProfileState("a"))
    cache.keep("a", "{1}", ProfileState("a"))  # saved again: counted once
    assert (len(cache), cache.size) == (1, 3)
    cache.keep("big", "x" * 11, ProfileState("big"))  # larger than the whole cache: not kept
    assert cache.size == 3 and cache.take("big", "x" * 11) is None
    off = StateCache(capacity=0)
    off.keep("a", "{}", ProfileState("a"))
    assert len(off) == 0 and off.take("a", "{}") is None


def _loaded(path: Path, clock: VirtualClock) -> str:
    """Every example journey and engine.py's 50 benchmark segments live, and generated events
    stored, not yet decided."""
    db, ws, _ = engine_bench.new_database(path)
    engine_bench.apply_segments(db, ws, engine_bench.bench_segments(50))
    now = to_ms(clock.now())
    work = engine_bench.generate(PEOPLE, EVENTS, 5, now - 3_600_000, now, ws, sent=False)
    db.dispose()
    engine_bench.load_events(path, work, ws, lambda n: None)
    return ws


def _outcome(db: Engine) -> dict[str, Any]:
    return query_rows(
        db,
        {
            "outbox": "SELECT idempotency_key, status, channel, template, payload, next_attempt_at_ms FROM outbox"
            " ORDER BY 1",
            "timers": 'SELECT profile_id, "key", due_at_ms, payload FROM timers ORDER BY 1, 2',
            "runs": "SELECT id, journey_id, status, step FROM journey_runs ORDER BY id",
            "states": "SELECT profile_id, state FROM profile_state ORDER BY 1",
            "own events": "SELECT profile_id, event, message_id, payload FROM events"
            " WHERE event IN ('Segment Entered', 'Segment Exited') ORDER BY seq",
            "members": "SELECT segment_id, profile_id FROM segment_members ORDER BY 1, 2",
        },
    )


def test_deciding_with_kept_states_gives_what_parsing_every_state_gives(tmp_path: Path) -> None:
    # Small batches, so that most people come back in a later batch and find their state kept.
    clock = VirtualClock()
    _loaded(tmp_path / "parsed.db", clock)
    for suffix in ("", ".key"):
        shutil.copyfile(str(tmp_path / "parsed.db") + suffix, str(tmp_path / "kept.db") + suffix)
    outcomes, caches = {}, {}
    for name, capacity in (("parsed", 0), ("kept", StateCache().capacity)):
        db = database.create_db_engine(f"sqlite:///{tmp_path / name}.db")
        runner, engines, stats = DirectRunner(db), EngineCache(states=StateCache(capacity)), RuntimeStats()
        while runner.call(partial(process_events, engines=engines, clock=clock, max_events=50, stats=stats)):
            pass
        # Then a day and a half of timers (cart reminders, inactivity, "not followed by"),
        # which reuse the states the events kept.
        late = VirtualClock(clock.now() + timedelta(hours=36))
        while runner.call(partial(fire_timers, engines=engines, clock=late, max_timers=50, stats=stats)):
            pass
        assert stats.timers_fired > 100
        assert stats.events_processed >= EVENTS
        outcomes[name], caches[name] = _outcome(db), engines.states
        db.dispose()
    assert caches["parsed"].hits == 0
    assert caches["kept"].hits > EVENTS // 2  # most decisions used a kept state
    parsed, kept = outcomes["parsed"], outcomes["kept"]
    # The journeys and the segments did work.
    assert len(parsed["outbox"]) > 100 and len(parsed["members"]) > 1000 and len(parsed["own events"]) > 1000
    for part in parsed:
        assert kept[part] == parsed[part], part
