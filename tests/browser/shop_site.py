"""The browser tests' site: a Nudgeflow server that also serves the shop's page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nudgeflow.store.workspaces import NewWorkspace
from nudgeflow.web.embedded import ThreadedServer
from nudgeflow.web.state import AppState


@dataclass
class Site:
    """A Nudgeflow server on loopback that also serves the shop's page (one origin)."""

    url: str
    state: AppState
    ws: NewWorkspace
    running: ThreadedServer

    def shop(self, **params: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"wk": self.ws.write_key, **params}.items())
        return f"{self.url}/shop/boots?{query}"
