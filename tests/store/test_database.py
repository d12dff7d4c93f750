"""Engines, migrations and what the app does with a database that is new or not migrated."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.database import prepare_database
from nudgeflow.store.schema import events, metadata, workspaces
from nudgeflow.store.workspaces import create_workspace
from nudgeflow.web.app import create_app

TABLES = {
    "workspaces",
    "api_keys",
    "profiles",
    "identities",
    "profile_merges",
    "events",
    "journeys",
    "journey_versions",
    "policy_versions",
    "profile_state",
    "journey_runs",
    "timers",
    "outbox",
    "log_channel_messages",
    "engine_cursors",
    "templates",
    "template_versions",
    "catalog_products",
    "catalog_places",
    "suppressions",
    "feedback_seen",
    "subscriptions",
    "workspace_settings",
    "inbox_messages",
    "push_subscriptions",
    "device_tokens",
    "push_deliveries",
    "journey_backfills",
    "engine_lock",
    "groups",
    "segments",
    "segment_versions",
    "segment_applies",
    "segment_members",
    "segment_daily_sizes",
    "report_rollups",
    "report_latencies",
    "message_facts",
    "report_send_time",
    "experiment_decisions",
    "run_arms",
    "console_users",
    "console_sessions",
    "audit_log",
    "engine_workers",
    "partition_leases",
    "partition_positions",
    "ingest_spending",
    "sign_in_failures",
    "partition_heads",
}


def table_names(engine: Any) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def run_lifespan(app: Any) -> None:
    """Start the app and shut it down, as a server would (startup errors propagate)."""

    async def go() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(go())


# -- upgrade -----------------------------------------------------------------------------


def test_upgrade_creates_the_schema_on_a_new_database(new_engine: Any) -> None:
    assert database.current_revision(new_engine) is None
    assert not database.is_current(new_engine)
    assert table_names(new_engine) == set()

    database.upgrade(new_engine)

    assert database.current_revision(new_engine) == database.head_revision()
    assert database.is_current(new_engine)
    assert table_names(new_engine) == TABLES


def test_migrations_build_exactly_the_declared_schema(new_engine: Any) -> None:
    """One schema: what the migrations create is what schema.py declares, on both databases."""
    database.upgrade(new_engine)
    with new_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_keeps_data(new_engine: Any) -> None:
    database.upgrade(new_engine)
    with new_engine.begin() as conn:
        ws = create_workspace(conn, "keep me", 1)
    database.upgrade(new_engine)
    database.upgrade(new_engine)
    assert database.is_current(new_engine)
    with new_engine.connect() as conn:
        assert (
            conn.execute(select(workspaces.c.name).where(workspaces.c.id == ws.workspace_id)).scalar_one() == "keep me"
        )
        versions = conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
    assert versions == 1


def test_migration_0013_moves_suppression_reasons_into_the_reason_column_in_their_new_words(new_engine: Any) -> None:
    database.upgrade(new_engine, "0012")
    old = {
        "k1": ("suppressed", "suppressed: hard_bounce"),
        "k2": ("suppressed", "unsubscribed"),
        "k3": ("suppressed", "unsubscribed from topic offers"),
        "k4": ("failed", "550 no such user"),
    }
    columns = (
        "workspace_id, idempotency_key, profile_id, run_id, journey_id, journey_version, step, channel, template,"
        " marketing, payload, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms, error"
    )
    with new_engine.begin() as conn:
        for key, (status, error) in old.items():
            conn.execute(
                text(
                    f"INSERT INTO outbox ({columns}) VALUES "
                    "('ws', :k, 'p', 'r', 'j', 1, 's', 'email', 't', 1, '{}', :s, 0, 0, 0, 0, :e)"
                ),
                {"k": key, "s": status, "e": error},
            )
    database.upgrade(new_engine)
    with new_engine.connect() as conn:
        rows = conn.execute(text("SELECT idempotency_key, status, reason, error FROM outbox ORDER BY idempotency_key"))
        assert [tuple(r) for r in rows] == [
            ("k1", "suppressed", "suppressed:hard_bounce", None),
            ("k2", "suppressed", "unsubscribed:*", None),
            ("k3", "suppressed", "unsubscribed:offers", None),
            ("k4", "failed", None, "550 no such user"),
        ]


def test_migration_0017_keeps_old_runs_and_counters_outside_the_control_group(new_engine: Any) -> None:
    database.upgrade(new_engine, "0016")
    with new_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO journey_runs (id, workspace_id, journey_id, version, profile_id, status, holdout,"
                " entered_at_ms, updated_at_ms) VALUES ('r1', 'ws', 'j', 1, 'p', 'done', 1, 5, 5)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO report_rollups (workspace_id, journey_id, version, step, variant, channel, day,"
                " entered, revenue) VALUES ('ws', 'j', 1, '', '', '', 0, 3, 2.5)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO message_facts (workspace_id, subject, fact, profile_id, at_ms)"
                " VALUES ('ws', 's', 'f', 'p', 1)"
            )
        )
    database.upgrade(new_engine)
    with new_engine.connect() as conn:
        run = conn.execute(text("SELECT holdout, control, control_cohort FROM journey_runs")).one()
        rollup = conn.execute(
            text("SELECT entered, revenue, entered_control, revenue_control, program_people FROM report_rollups")
        ).one()
        amount = conn.execute(text("SELECT amount FROM message_facts")).scalar_one()
    assert tuple(run) == (1, 0, None)
    assert tuple(rollup) == (3, 2.5, 0, 0.0, 0)
    assert amount is None


def test_event_sequence_is_generated_on_both_databases(new_engine: Any) -> None:
    database.upgrade(new_engine)
    row = {
        "workspace_id": "ws_x",
        "profile_id": "prf_x",
        "type": "track",
        "timestamp_ms": 1,
        "received_at_ms": 1,
        "payload": "{}",
    }
    with new_engine.begin() as conn:
        conn.execute(events.insert(), [{**row, "message_id": f"m{i}"} for i in range(3)])
    with new_engine.connect() as conn:
        seqs = list(conn.execute(select(events.c.seq).order_by(events.c.seq)).scalars())
        assert len(seqs) == len(set(seqs)) == 3 and all(isinstance(s, int) for s in seqs)
        # (workspace_id, message_id) is unique: the idempotency key is enforced by the database too.
        with pytest.raises(IntegrityError), new_engine.begin() as tx:
            tx.execute(events.insert().values(**row, message_id="m0"))
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 3


def test_upgrade_of_an_unreachable_database_names_the_problem() -> None:
    engine = database.create_db_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(database.DatabaseError, match="migration failed"):
            database.upgrade(engine)
    finally:
        engine.dispose()


# -- engines -----------------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = database.create_db_engine(f"sqlite:///{path}")
    try:
        database.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL, the default
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        with engine.begin() as conn:
            create_workspace(conn, "wal", 1)
    finally:
        engine.dispose()
    # WAL is a property of the file: any other program opening it sees it.
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_synchronous_is_configurable_and_checked(tmp_path: Path) -> None:
    engine = database.create_db_engine(f"sqlite:///{tmp_path / 'n.db'}", sqlite_synchronous="normal")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 1
    finally:
        engine.dispose()
    with pytest.raises(database.DatabaseError, match="sqlite_synchronous"):
        database.create_db_engine(f"sqlite:///{tmp_path / 'n.db'}", sqlite_synchronous="SOMETIMES")


def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "nudgeflow.db"
    engine = database.create_db_engine(f"sqlite:///{path}")
    try:
        database.upgrade(engine)
    finally:
        engine.dispose()
    assert path.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/nudgeflow", "unsupported database 'mysql'"),
        ("not a url", "invalid database URL"),
        ("sqlite://", "an in-memory SQLite database cannot be served"),
        ("sqlite:///:memory:", "an in-memory SQLite database cannot be served"),
    ],
)
def test_bad_database_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(database.DatabaseError, match=message):
        database.create_db_engine(url)


def test_postgres_urls_use_psycopg3() -> None:
    assert database.normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database.normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert database.is_sqlite("sqlite:///x.db") and not database.is_sqlite("postgresql://u@h/db")


# -- the app and a new or unmigrated database --------------------------------------------


def test_app_refuses_an_unmigrated_postgres_database(empty_postgres_url: str) -> None:
    settings = Settings(database_url=empty_postgres_url, ingest_rate_per_second=0)
    app = create_app(settings)
    with pytest.raises(database.DatabaseError, match="nudgeflow db upgrade") as info:
        run_lifespan(app)
    assert "nothing" in str(info.value)
    # It refused without touching the database.
    engine = database.create_db_engine(empty_postgres_url)
    try:
        assert table_names(engine) == set()
        assert database.current_revision(engine) is None
        with pytest.raises(database.DatabaseError, match="nudgeflow db upgrade"):
            prepare_database(settings, engine)
        # Once upgraded, the same app starts.
        database.upgrade(engine)
    finally:
        engine.dispose()
    run_lifespan(create_app(settings))


def test_app_migrates_a_new_sqlite_file_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "nudgeflow.db"
    settings = Settings(database_url=f"sqlite:///{path}", sqlite_synchronous="NORMAL", ingest_rate_per_second=0)
    app = create_app(settings)
    # Nothing is created by building the app: only starting it touches the database.
    assert not path.exists()

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        for _ in range(3000):
            if server.started or not thread.is_alive():
                break
            started.wait(0.01)
        assert server.started, "the server did not start on a new SQLite file"
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz").status_code == 200
        engine = app.state.nudgeflow.engine
        assert database.is_current(engine)
        with engine.begin() as conn:
            ws = create_workspace(conn, "fresh", 1)
        answer = httpx.post(
            url + "/v1/track", json={"userId": "u1", "event": "Signed Up"}, auth=(ws.write_key, ""), timeout=30
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.should_exit = True
        thread.join(30)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 1


def test_sqlite_auto_migration_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'manual.db'}", auto_migrate=False)
    with pytest.raises(database.DatabaseError, match="nudgeflow db upgrade"):
        run_lifespan(create_app(settings))


def test_app_starts_on_a_migrated_database(settings: Settings, engine: Any) -> None:
    """Both backends: an up-to-date database is used as it is, without migrating again."""
    before = database.current_revision(engine)
    run_lifespan(create_app(settings))
    assert database.current_revision(engine) == before == database.head_revision()


def test_migration_0020_experiment_decisions_up_down_and_ids_on_both_databases(new_engine: Any) -> None:
    from nudgeflow.store import experiment_decisions as decisions

    database.upgrade(new_engine)
    with new_engine.begin() as conn:
        ws = create_workspace(conn, "experiments", 1).workspace_id
        first = decisions.record(conn, ws, "offer", 1, "mail", "B", "paused", "why", 5)
        second = decisions.record(conn, ws, "offer", 1, "mail", "C", "routed", "wins", 6)
    assert second.id > first.id  # generated, increasing: the order decisions were made
    database.downgrade(new_engine, "0019")
    assert "experiment_decisions" not in table_names(new_engine)
    database.upgrade(new_engine)
    assert "experiment_decisions" in table_names(new_engine)


def index_definition(engine: Any, name: str) -> str:
    """The CREATE INDEX statement of an index, as the database keeps it."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
        else:
            query = "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = :name"
        return str(conn.execute(text(query), {"name": name}).scalar_one())


def test_migration_0027_keeps_members_and_indexes_only_logged_offsets_on_both_databases(new_engine: Any) -> None:
    """segment_members loses its index by profile (on SQLite it is rebuilt WITHOUT ROWID) with
    its rows kept, and the offsets' unique index holds only the rows some partition decides:
    rows without a partition stay out of it, duplicates within one are still refused."""
    from nudgeflow.store import segments as segment_store

    database.upgrade(new_engine, "0026")
    with new_engine.begin() as conn:
        ws = create_workspace(conn, "members", 1).workspace_id
        conn.execute(
            text(
                "INSERT INTO segments (workspace_id, id, name, status, draft, live_version, created_at_ms,"
                " updated_at_ms) VALUES (:ws, 'vip', 'VIP', 'live', '{}', 1, 1, 1)"
            ),
            {"ws": ws},
        )
        conn.execute(
            text("INSERT INTO segment_members VALUES (:ws, 'vip', 'p1', 5), (:ws, 'vip', 'p2', 6)"), {"ws": ws}
        )
    database.upgrade(new_engine)
    assert "ix_segment_members_profile" not in {i["name"] for i in inspect(new_engine).get_indexes("segment_members")}
    with new_engine.begin() as conn:
        assert segment_store.members(conn, ws, "vip") == [("p1", 5), ("p2", 6)]
        assert segment_store.memberships(conn, ws, ["p2", "p3"]) == {"p2": {"vip": 6}}
        row = "INSERT INTO events (workspace_id, message_id, profile_id, type, timestamp_ms, received_at_ms, payload"
        for n in (1, 2):  # no partition: outside the unique index
            conn.execute(text(f"{row}) VALUES (:ws, :m, 'p1', 'track', 1, 1, '{{}}')"), {"ws": ws, "m": f"own-{n}"})
        conn.execute(
            text(f"{row}, \"partition\", part_offset) VALUES (:ws, 'a', 'p1', 'track', 1, 1, '{{}}', 3, 7)"), {"ws": ws}
        )
    with pytest.raises(IntegrityError), new_engine.begin() as conn:
        conn.execute(
            text(f"{row}, \"partition\", part_offset) VALUES (:ws, 'b', 'p1', 'track', 1, 1, '{{}}', 3, 7)"), {"ws": ws}
        )
    # The rows above would fit a full index too (NULLs never collide): the definition says partial.
    definition = index_definition(new_engine, "uq_events_partition_offset")
    assert re.match(r"CREATE UNIQUE INDEX", definition, re.IGNORECASE), definition
    assert re.search(r'WHERE\s*\(*\s*"?partition"?\s+IS\s+NOT\s+NULL', definition, re.IGNORECASE), definition
    with new_engine.begin() as conn:
        conn.execute(text("DELETE FROM events"))
    database.downgrade(new_engine, "0026")
    assert "WHERE" not in index_definition(new_engine, "uq_events_partition_offset").upper()
    assert "ix_segment_members_profile" in {i["name"] for i in inspect(new_engine).get_indexes("segment_members")}
    with new_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM segment_members")).scalar_one() == 2
    database.upgrade(new_engine)
