"""Helpers shared by tests: a workspace in a database, a real server on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from nudgeflow.core.clock import Clock, SystemClock, to_ms
from nudgeflow.settings import Settings
from nudgeflow.store.workspaces import NewWorkspace, create_workspace
from nudgeflow.web.app import AppState, create_app
from nudgeflow.web.embedded import ThreadedServer, serve_in_thread

BACKENDS = ["sqlite", "postgres"]


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

    def workspace(self, name: str = "test") -> NewWorkspace:
        return make_workspace(self.state.engine, name, self.state.clock)

    def stop(self) -> None:
        self.running.stop()


def start_server(settings: Settings, clock: Clock | None = None) -> LiveServer:
    app = create_app(settings, clock=clock)
    running = serve_in_thread(app, name="nudgeflow-test-server")
    return LiveServer(running.url, app.state.nudgeflow, running)
