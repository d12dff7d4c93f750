"""Helpers shared by tests: a workspace in a database, a real server on loopback, a free port,
the console script."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store.workspaces import NewWorkspace, create_workspace
from nudgeflow.web.app import create_app
from nudgeflow.web.embedded import ThreadedServer, serve_in_thread
from nudgeflow.web.state import AppState

BACKENDS = ["sqlite", "postgres"]
# The console script installed beside this Python, run as a user runs it.
NUDGEFLOW = str(Path(sys.executable).with_name("nudgeflow"))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workspace(engine: Any, name: str = "test", clock: Clock | None = None) -> NewWorkspace:
    with engine.begin() as conn:
        return create_workspace(conn, name, to_ms((clock or SystemClock()).now()))


@dataclass
class LiveServer:
    """A real uvicorn server on loopback, running the app in a thread."""

    url: str
    state: AppState
    running: ThreadedServer

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def admin(self, token: str) -> httpx.Client:
        """A client of the admin API, authenticated with `token`."""
        return self.client(headers={"Authorization": f"Bearer {token}"})

    def workspace(self, name: str = "test") -> NewWorkspace:
        return make_workspace(self.state.engine, name, self.state.clock)

    def stop(self) -> None:
        self.running.stop()


def start_server(settings: Settings, clock: Clock | None = None) -> LiveServer:
    app = create_app(settings, clock=clock)
    running = serve_in_thread(app, name="nudgeflow-test-server")
    return LiveServer(running.url, app.state.nudgeflow, running)


def query_rows(db: Any, queries: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each named query's rows, as tuples: what two runs of the same events wrote, compared."""
    from sqlalchemy import text

    with db.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in queries.items()}
