"""The per-workspace configuration cache every channel uses (channels/common.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nudgeflow.channels.base import PermanentError, TransientError
from nudgeflow.channels.common import WorkspaceCache
from nudgeflow.core.clock import VirtualClock


def test_kept_for_its_ttl_and_dropped_by_invalidate() -> None:
    clock = VirtualClock()
    loads: list[str] = []

    def load(workspace_id: str) -> str:
        loads.append(workspace_id)
        return f"config of {workspace_id} #{len(loads)}"

    cache: WorkspaceCache[str] = WorkspaceCache(load, clock, "settings", ttl_s=30)

    async def scenario() -> list[str | None]:
        got = [await cache.get("ws_1"), await cache.get("ws_1")]
        clock.advance(31)
        got.append(await cache.get("ws_1"))
        cache.invalidate("ws_1")
        got.append(await cache.get("ws_1"))
        return got

    assert asyncio.run(scenario()) == [
        "config of ws_1 #1",
        "config of ws_1 #1",
        "config of ws_1 #2",
        "config of ws_1 #3",
    ]


def test_messages_arriving_together_share_one_load() -> None:
    clock = VirtualClock()
    release = threading.Event()
    loads: list[str] = []

    def load(workspace_id: str) -> str:
        loads.append(workspace_id)
        release.wait(5)
        return "config"

    cache: WorkspaceCache[str] = WorkspaceCache(load, clock, "settings")

    async def scenario() -> list[str | None]:
        waiting = [asyncio.create_task(cache.get("ws_1")) for _ in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == ["config"] * 20
    assert loads == ["ws_1"]


def test_errors_are_shared_and_not_kept() -> None:
    clock = VirtualClock()
    outcomes: list[Exception | str] = [ValueError("no such key"), OSError("database away"), "config"]

    def load(workspace_id: str) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    cache: WorkspaceCache[str] = WorkspaceCache(load, clock, "keys", ValueError)

    async def scenario() -> str | None:
        with pytest.raises(PermanentError, match="the workspace's keys are invalid: no such key"):
            await asyncio.gather(cache.get("ws_1"), cache.get("ws_1"))
        with pytest.raises(TransientError, match="cannot read the workspace's keys: OSError"):
            await cache.get("ws_1")
        return await cache.get("ws_1")

    assert asyncio.run(scenario()) == "config"
    assert outcomes == []


def test_no_database() -> None:
    cache: WorkspaceCache[str] = WorkspaceCache(None, VirtualClock(), "settings")
    assert asyncio.run(cache.get("ws_1")) is None
