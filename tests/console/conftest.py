"""The console's fixtures: a live server with the console, a workspace and a user of each
role; an httpx client signed in as a role; a Playwright page signed in as a role.

`console_app` is one per test module (starting a server and hashing three passwords costs
a second): tests that move its clock or change its users use `own_console_app`, which is
theirs alone. Users are viewer@example.com, editor@example.com and admin@example.com, with
tests.console.support.PASSWORD.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from tests.console.support import ROLES, START, ConsoleApp, email_of
from tests.support import start_server


def start_console(directory: Path) -> ConsoleApp:
    # SQLite only: these are about the console; the store and the API are tested on both.
    # No engine: pages and the admin API need none, and the tests stay quick.
    settings = Settings(
        database_url=f"sqlite:///{directory / 'nudgeflow.db'}",
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        engine_enabled=False,
    )
    clock = VirtualClock(START)
    server = start_server(settings, clock)
    app = ConsoleApp(server, clock, server.workspace("console"))
    for role in ROLES:
        app.users[role] = app.add_user(email_of(role), role)
    return app


@pytest.fixture(scope="module")
def console_app() -> Iterator[ConsoleApp]:
    directory = Path(tempfile.mkdtemp(prefix="nudgeflow-console-"))
    app = start_console(directory)
    yield app
    app.server.stop()


@pytest.fixture
def own_console_app(tmp_path: Path) -> Iterator[ConsoleApp]:
    app = start_console(tmp_path)
    yield app
    app.server.stop()


@pytest.fixture
def signed_in(console_app: ConsoleApp) -> Iterator[Callable[[str], httpx.Client]]:
    """signed_in("editor") -> an httpx client with that user's session and CSRF header."""
    clients: list[httpx.Client] = []

    def make(role: str) -> httpx.Client:
        client = console_app.sign_in(email_of(role))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def console_page(browser: Any, console_app: ConsoleApp) -> Iterator[Callable[[str], Any]]:
    """console_page("viewer") -> a Playwright page whose browser holds that user's session
    (signed in over HTTP: the sign-in form itself has its own browser test)."""
    contexts: list[Any] = []

    def make(role: str) -> Any:
        client = console_app.sign_in(email_of(role))
        try:
            cookies = [
                {"name": c.name, "value": c.value or "", "url": console_app.url, "httpOnly": True, "sameSite": "Lax"}
                for c in client.cookies.jar
                if c.name == "nf_session"
            ]
        finally:
            client.close()
        context = browser.new_context(base_url=console_app.url, viewport={"width": 1280, "height": 800})
        context.add_cookies(cookies)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
