"""Fixtures of the ingest tests: the official Segment and RudderStack clients, pointed at the
live server's workspace, and what they report of failed uploads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from nudgeflow.store.workspaces import NewWorkspace
from tests.ingest.sdk_client_support import Errors, Factory
from tests.support import LiveServer


@pytest.fixture
def upload_errors() -> Errors:
    return Errors()


@pytest.fixture
def sdk_clients() -> Iterator[list[Any]]:
    """Every client a test makes is shut down at its end (flushed, consumer joined)."""
    made: list[Any] = []
    yield made
    for client in made:
        if client.consumers is not None:  # a sync_mode client has no consumer; its shutdown() fails
            client.shutdown()


@pytest.fixture
def segment(live: LiveServer, ws: NewWorkspace, upload_errors: Errors, sdk_clients: list[Any]) -> Factory:
    def make(**options: Any) -> SegmentClient:
        options.setdefault("max_retries", 3)
        client = SegmentClient(ws.write_key, host=live.url, on_error=upload_errors, **options)
        sdk_clients.append(client)
        return client

    return make


@pytest.fixture
def rudder(live: LiveServer, ws: NewWorkspace, upload_errors: Errors, sdk_clients: list[Any]) -> Factory:
    def make(**options: Any) -> RudderClient:
        options.setdefault("max_retries", 3)
        client = RudderClient(ws.write_key, host=live.url, on_error=upload_errors, **options)
        sdk_clients.append(client)
        return client

    return make
