"""Fixtures of the web tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nudgeflow.store.workspaces import NewWorkspace
from tests.support import LiveServer


@pytest.fixture
def api(live: LiveServer, ws: NewWorkspace) -> Iterator[httpx.Client]:
    """A client of the admin API of the live server's workspace."""
    with live.admin(ws.admin_token) as client:
        yield client
