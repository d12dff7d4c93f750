"""The same core decides in both runtimes (issue 17 item 1): the same events, with every
example journey live, give the same outbox, timers and runs whether the single engine
decides them or two partitioned engine workers do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from benchmarks import engine as engine_bench
from sqlalchemy import Engine

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.model.events import normalize, parse_message
from nudgeflow.runtime.partition_worker import PartitionWorker
from nudgeflow.runtime.processor import EngineCache, RuntimeStats, process_events
from nudgeflow.runtime.replay import load_journeys
from nudgeflow.runtime.stages import DirectRunner
from nudgeflow.store import database
from nudgeflow.store.group_commit import GroupCommitter
from nudgeflow.store.journeys import apply_draft, publish
from nudgeflow.store.workspaces import create_workspace
from tests.pg_databases import own_database
from tests.support import query_rows

EVENTS, PEOPLE = 3000, 300


@pytest.fixture
def two_databases(postgres_admin_url: str, pg_template: str) -> Iterator[tuple[str, str]]:
    """Two copies of one database holding the events, not yet decided."""
    with own_database(postgres_admin_url, "nudgeflow_same", template=pg_template) as (source, url):
        load(url, VirtualClock()).dispose()
        with (
            own_database(postgres_admin_url, "nudgeflow_same", template=source) as (_, one),
            own_database(postgres_admin_url, "nudgeflow_same", template=source) as (_, two),
        ):
            yield one, two


def load(url: str, clock: VirtualClock) -> Engine:
    """The example journeys live in a workspace, and generated events ingested, 100 to a commit."""
    db = database.create_db_engine(url)
    now = to_ms(clock.now())
    with db.begin() as conn:
        ws = create_workspace(conn, "same", now).workspace_id
        for journey in load_journeys([engine_bench.EXAMPLES]):
            apply_draft(conn, ws, journey, now)
            publish(conn, ws, journey.id, now, backfill=False)
    work = engine_bench.generate(PEOPLE, EVENTS, 11, now - 3_600_000, now, ws, rows=False)
    records = [
        normalize(parse_message(orjson.loads(body)), clock.now(), max_event_bytes=32 * 1024) for _, body in work.sent
    ]
    writer = GroupCommitter(db, clock)
    writer.start()
    try:
        for start in range(0, len(records), 100):
            writer.submit_events(ws, records[start : start + 100]).result(timeout=60)
    finally:
        writer.stop()
    return db


def outcome(db: Engine) -> dict[str, Any]:
    return query_rows(
        db,
        {
            "outbox": "SELECT idempotency_key, status, channel, template FROM outbox ORDER BY idempotency_key",
            "timers": 'SELECT profile_id, "key", due_at_ms FROM timers ORDER BY profile_id, "key"',
            "runs": "SELECT id, journey_id, status, step FROM journey_runs ORDER BY id",
        },
    )


def test_the_single_engine_and_two_partitioned_workers_decide_the_same(two_databases: tuple[str, str]) -> None:
    clock = VirtualClock()
    single_db = database.create_db_engine(two_databases[0])
    workers_db = database.create_db_engine(two_databases[1])
    stats = RuntimeStats()
    runner, engines = DirectRunner(single_db), EngineCache()
    while runner.call(lambda conn: process_events(conn, engines, clock, 1000, stats)):
        pass
    workers = [PartitionWorker(workers_db, clock, EngineCache(), RuntimeStats(), worker_id=f"w{n}") for n in (1, 2)]
    for _ in range(3):
        for w in workers:
            w.tick_leases()
    for w in workers:
        w.run_until_idle()
    assert stats.events_processed == EVENTS == sum(w.stats.events_processed for w in workers)
    single, parted = outcome(single_db), outcome(workers_db)
    assert len(single["outbox"]) > 100 and len(single["timers"]) > 100  # the journeys did work
    assert parted == single
    single_db.dispose()
    workers_db.dispose()
