"""A console whose server runs the engine (tests of pages that show what the engine decided:
segment members, why a person is in or out). Otherwise as tests/console/conftest.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from tests.console.support import ROLES, START, ConsoleApp, email_of
from tests.support import start_server


def start_engine_console(directory: Path) -> ConsoleApp:
    settings = Settings(
        database_url=f"sqlite:///{directory / 'nudgeflow.db'}",
        sqlite_synchronous="NORMAL",
        ingest_rate_per_second=0,
        engine_enabled=True,
    )
    server = start_server(settings, VirtualClock(START))
    app = ConsoleApp(server, server.state.clock, server.workspace("console"))
    for role in ROLES:
        app.users[role] = app.add_user(email_of(role), role)
    return app


def send(app: ConsoleApp, path: str, body: dict[str, Any]) -> None:
    """One call of the tracking API, decided by the engine before this returns."""
    with app.client(auth=(app.workspace.write_key, "")) as client:
        answer = client.post(path, json=body)
        assert answer.status_code == 200, answer.text
    app.state.runtime.run_until_idle()
