"""Fixtures of the runtime tests: a fresh database per test, a harness on it, a live server on it;
`nudgeflow serve` processes; the local Web Push service and the bounce SMTP server.

The runtime is process-wide (one cursor over the whole event log, all timers, the whole
outbox), so unlike most tests these cannot share the session's PostgreSQL database with
other tests' workspaces: each PostgreSQL test gets a fresh database cloned from a migrated
template (fast), each SQLite test a fresh file.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from py_vapid import Vapid02

from nudgeflow.core.clock import VirtualClock
from nudgeflow.runtime.dev_push import DevPushService, RunningDevPush, serve_dev_push
from nudgeflow.runtime.inbound_smtp import BounceHandler, engine_jobs, start_bounce_smtp
from nudgeflow.settings import Settings
from nudgeflow.store import database
from tests.pg_databases import own_database
from tests.runtime.harness import Harness
from tests.runtime.serve_process import Serve, cli_command, run
from tests.support import LiveServer, free_port, start_server


@pytest.fixture(params=["sqlite", "postgres"])
def rt_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for this test alone, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runtime.db'}"
        eng = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(eng)
        eng.dispose()
        yield url
        return
    template = request.getfixturevalue("pg_template")
    with own_database(request.getfixturevalue("postgres_admin_url"), "nudgeflow_rt", template=template) as (_, url):
        yield url


@pytest.fixture
def h(rt_url: str) -> Iterator[Harness]:
    harness = Harness.open(rt_url, VirtualClock())
    yield harness
    harness.close()


@pytest.fixture
def server(rt_url: str) -> Iterator[tuple[LiveServer, VirtualClock]]:
    """A live server with its runtime on this test's own database, on a virtual clock."""
    clock = VirtualClock()
    settings = Settings(database_url=rt_url, sqlite_synchronous="NORMAL", ingest_rate_per_second=0, engine_poll_ms=50)
    srv = start_server(settings, clock)
    yield srv, clock
    srv.stop()


@pytest.fixture(scope="module")
def module_dev_push() -> Iterator[RunningDevPush]:
    """One local Web Push service on the system clock for the test module (its tests sign real JWTs)."""
    srv = serve_dev_push(DevPushService())
    yield srv
    srv.stop()


@pytest.fixture
def dev_push_service(module_dev_push: RunningDevPush) -> DevPushService:
    """The module's Web Push service, with no answers scripted by an earlier test."""
    module_dev_push.service.clear_responses()
    return module_dev_push.service


@pytest.fixture(scope="module")
def vapid_key() -> Vapid02:
    """An application server's VAPID key pair (py_vapid's, the sender independent of ours)."""
    key = Vapid02()
    key.generate_keys()
    return key


@pytest.fixture
def bounce_smtp(engine: Any) -> Iterator[tuple[Any, BounceHandler, int]]:
    """The bounce SMTP server on loopback, writing to `engine`: (its controller, its handler, its port)."""
    port = free_port()
    controller = start_bounce_smtp(engine_jobs(engine), VirtualClock(), "127.0.0.1", port, ["bounce.shop.test"])
    yield controller, controller.handler, port
    controller.stop()


CRASH_JOURNEY = """
id: crash-test
name: Crash test
trigger: {type: event, event: Crash Probe}
entry: {reentry: always}
steps:
  first: {type: send, channel: log, template: probe-first, next: wait-a}
  wait-a: {type: wait, duration: 1s, next: second}
  second: {type: send, channel: log, template: probe-second, next: wait-b}
  wait-b: {type: wait, duration: 2s, next: third}
  third: {type: send, channel: log, template: probe-third}
"""


@pytest.fixture
def crash_db(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A SQLite file with a workspace and the crash-test journey published: (its URL, the write key)."""
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    created = subprocess.run(
        [*cli_command(), "workspace", "create", "crash", "--json", "--database", db_url],
        check=True,
        capture_output=True,
        text=True,
    )
    workspace = json.loads(created.stdout)
    journey_file = tmp_path / "crash-test.yaml"
    journey_file.write_text(CRASH_JOURNEY)
    subprocess.run(
        [
            *cli_command(),
            "journeys",
            "apply",
            str(journey_file),
            "--workspace",
            workspace["workspace_id"],
            "--publish",
            "--database",
            db_url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    yield db_url, workspace["write_key"]


@pytest.fixture
def engine_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Serve]]:
    """A `nudgeflow serve` with the engine on `database_url`, and a workspace with a template: (its id, the server)."""
    created = run("workspace", "create", "lock", "--json", "--database", database_url)
    assert created.returncode == 0, created.stderr
    workspace = json.loads(created.stdout)["workspace_id"]
    applied = run(
        "templates",
        "apply",
        "examples/templates/cart-1h-your-items.yaml",
        "--workspace",
        workspace,
        "--database",
        database_url,
    )
    assert applied.returncode == 0, applied.stderr
    server = Serve(database_url, tmp_path / "engine.log", NUDGEFLOW_ENGINE="1")
    try:
        server.wait_ready()
        yield workspace, server
    finally:
        server.stop()
