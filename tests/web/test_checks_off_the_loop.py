"""Checking a segment or policies document runs in a worker thread, not on the event loop:
while one is being checked, /healthz (and every other request) is answered.

The check is held mid-way (a wrapper around the real check waits for the test's word), so
the test does not depend on how long a large document takes: held on the event loop, the
check would keep /healthz from answering at all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from nudgeflow.store.workspaces import NewWorkspace
from nudgeflow.web import policies_api, segments_api
from tests.support import LiveServer

SEGMENT = {"id": "buyers", "name": "Buyers", "when": {"performed": "Order Completed", "within": "30d"}}
POLICIES = {"frequency_caps": [{"id": "daily", "channel": "email", "limit": 2, "calendar": "day"}]}
HOLD_S = 30  # the longest a held check waits for the test (a failing run ends by it)


class HeldCheck:
    """Wraps a module's check function: the first call says it started, records whether an
    event loop runs in its thread, and waits to be let go."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.started = threading.Event()
        self.release = threading.Event()
        self.on_event_loop: bool | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.started.is_set():
            try:
                asyncio.get_running_loop()
                self.on_event_loop = True
            except RuntimeError:
                self.on_event_loop = False
            self.started.set()
            self.release.wait(HOLD_S)
        return self.real(*args, **kwargs)


def _healthz_while_held(live: LiveServer, held: HeldCheck, request: Callable[[], httpx.Response]) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(request)
        try:
            assert held.started.wait(HOLD_S), "the check was never called"
            with httpx.Client(base_url=live.url, timeout=10) as client:
                try:
                    health = client.get("/healthz").status_code
                except httpx.TimeoutException:
                    health = None
        finally:
            held.release.set()
        answer = pending.result(timeout=HOLD_S)
    assert answer.status_code in (200, 201), answer.text
    assert held.on_event_loop is False
    assert health == 200, "/healthz did not answer while the document was checked"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/segments/validate"), ("POST", "/api/segments"), ("PUT", "/api/segments/buyers")],
)
def test_a_segment_is_checked_off_the_event_loop(
    live: LiveServer, ws: NewWorkspace, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    held = HeldCheck(segments_api.check_segment)
    monkeypatch.setattr(segments_api, "check_segment", held)

    def request() -> httpx.Response:
        with live.admin(ws.admin_token) as api:
            return api.request(method, path, json=SEGMENT)

    _healthz_while_held(live, held, request)


def test_policies_are_checked_off_the_event_loop(
    live: LiveServer, ws: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldCheck(policies_api.check_policies_documents)
    monkeypatch.setattr(policies_api, "check_policies_documents", held)

    def request() -> httpx.Response:
        with live.admin(ws.admin_token) as api:
            return api.put("/api/policies", json=POLICIES)

    _healthz_while_held(live, held, request)
