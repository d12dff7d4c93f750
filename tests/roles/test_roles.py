"""`serve --role` in process (issue 17, item 1): what each role serves and runs, and who may
reclaim leases at start (item 2).

- engine and dispatch serve /healthz and /metrics only: no ingest, no admin API, no
  console. api serves the API and runs no loop. A dispatch process takes no engine lock
  (any number may run); an engine process takes it.
- Only `all` reclaims at start the leases of a dead predecessor, and only while no dispatch
  process is alive: an engine-only process never does, and a live dispatcher's lease is
  never taken from it.
"""

from __future__ import annotations

import httpx
import pytest

from nudgeflow.core.clock import VirtualClock, to_ms
from nudgeflow.runtime.embedded import EmbeddedRuntime
from nudgeflow.settings import Settings
from nudgeflow.store import database, engine_lock
from tests.roles.support import outbox_rows, queue_messages
from tests.support import make_workspace, start_server

LEASE_MS = 60_000


def _settings(url: str, role: str) -> Settings:
    return Settings(database_url=url, ingest_rate_per_second=0, role=role)


@pytest.mark.parametrize("role", ["engine", "dispatch"])
def test_engine_and_dispatch_serve_health_and_metrics_only(pg_db: str, role: str) -> None:
    clock = VirtualClock()
    server = start_server(_settings(pg_db, role), clock)
    try:
        runtime = server.state.runtime
        assert runtime is not None and runtime.running
        assert (runtime.runs_engine, runtime.runs_dispatch) == (role == "engine", role == "dispatch")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            assert client.get("/metrics").status_code == 200
            # The API's routes are not served: ingest (answered ahead of the router in an
            # API process), the admin API, tracking, the SDK, the console.
            for method, path in [
                ("POST", "/v1/track"),
                ("POST", "/v1/batch"),
                ("OPTIONS", "/v1/track"),
                ("GET", "/api/workspaces"),
                ("GET", "/sdk/nudgeflow.js"),
                ("GET", "/"),
            ]:
                answer = client.request(method, path, json={"event": "x", "userId": "u"})
                assert answer.status_code in (404, 405), (method, path, answer.status_code)
        db = server.state.engine
        if role == "dispatch":  # no engine lock: an engine can start beside it
            engine_lock.acquire(db, to_ms(clock.now())).release()
        else:
            with pytest.raises(engine_lock.EngineLocked):
                engine_lock.acquire(db, to_ms(clock.now()))
    finally:
        server.stop()


def test_api_serves_the_api_and_runs_no_loop(pg_db: str) -> None:
    clock = VirtualClock()
    server = start_server(_settings(pg_db, "api"), clock)
    try:
        assert server.state.runtime is None
        ws = server.workspace()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            sent = client.post("/v1/track", json={"userId": "ada", "event": "Signed Up"}, auth=(ws.write_key, ""))
            assert sent.status_code == 200
        engine_lock.acquire(server.state.engine, to_ms(clock.now())).release()  # no engine lock taken
    finally:
        server.stop()


def _leased_row(url: str, clock: VirtualClock) -> tuple[str, str]:
    """A workspace with one message whose lease is still running (its first claim, no try yet)."""
    db = database.create_db_engine(url)
    ws = make_workspace(db, clock=clock).workspace_id
    [key] = queue_messages(db, ws, 1, to_ms(clock.now()))
    until = to_ms(clock.now()) + LEASE_MS
    with db.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE outbox SET claims = 1, next_attempt_at_ms = %s, leased_until_ms = %s WHERE workspace_id = %s",
            (until, until, ws),
        )
    db.dispose()
    return ws, key


def _start_and_stop(url: str, role: str, clock: VirtualClock) -> EmbeddedRuntime:
    db = database.create_db_engine(url)
    runtime = EmbeddedRuntime(db, None, clock, _settings(url, role))
    runtime.start()
    runtime.stop()
    db.dispose()
    return runtime


def test_an_engine_only_process_never_reclaims_leases(pg_db: str) -> None:
    clock = VirtualClock()
    ws, key = _leased_row(pg_db, clock)
    runtime = _start_and_stop(pg_db, "engine", clock)
    assert runtime.leases_reclaimed == 0
    db = database.create_db_engine(pg_db)
    row = outbox_rows(db, ws)[key]
    # Still its dispatcher's: not reclaimed, so no claim counted lost.
    assert (row.claims, row.lost_claims, row.next_attempt_at_ms) == (1, 0, to_ms(clock.now()) + LEASE_MS)
    db.dispose()


def test_all_reclaims_at_start_only_while_no_dispatch_process_is_alive(pg_db: str) -> None:
    clock = VirtualClock()
    ws, key = _leased_row(pg_db, clock)
    db = database.create_db_engine(pg_db)
    mark = engine_lock.mark_dispatcher(db)  # a dispatch process is alive: the lease may be its own
    try:
        runtime = _start_and_stop(pg_db, "all", clock)
        assert runtime.leases_reclaimed == 0
        assert outbox_rows(db, ws)[key].next_attempt_at_ms == to_ms(clock.now()) + LEASE_MS
    finally:
        mark.release()
    # Alone on the database, the engine knows the lease's holder is dead: due now.
    db_runtime = database.create_db_engine(pg_db)
    runtime = EmbeddedRuntime(db_runtime, None, clock, _settings(pg_db, "all"))
    try:
        runtime.start()
        assert runtime.leases_reclaimed == 1
    finally:
        runtime.stop()
        db_runtime.dispose()
    db.dispose()


def test_a_dispatch_runtime_holds_the_dispatcher_mark_while_it_runs(pg_db: str) -> None:
    clock = VirtualClock()
    db = database.create_db_engine(pg_db)
    runtime = EmbeddedRuntime(db, None, clock, _settings(pg_db, "dispatch"))
    runtime.start()
    try:
        with db.begin() as conn:
            assert engine_lock.dispatchers_alive(conn)
    finally:
        runtime.stop()
    with db.begin() as conn:
        assert not engine_lock.dispatchers_alive(conn)
    db.dispose()
