"""The workspace's pattern for send-time optimization, read from stored events (store/send_time.py):
local hours from each person's stored time zone, machine opens left out, other workspaces and
other events ignored; read into the catalog only when a live journey uses send_time."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import insert

from nudgeflow.model.journeys import Journey
from nudgeflow.store import journeys as journey_store
from nudgeflow.store import send_time as store
from nudgeflow.store.schema import events, profiles
from tests.support import make_workspace

_seq = itertools.count(1)
NOW = 1_767_225_600_000  # 2026-01-01T00:00Z
ZONES = ["Asia/Tokyo", "America/New_York", "Europe/Paris", "UTC"]


def add_person(conn: Any, workspace_id: str, pid: str, zone: str) -> None:
    traits = orjson.dumps({"timezone": zone}).decode()
    conn.execute(
        insert(profiles).values(
            id=pid, workspace_id=workspace_id, user_id=pid, traits=traits, created_at_ms=NOW, updated_at_ms=NOW
        )
    )


def add_event(conn: Any, workspace_id: str, pid: str, name: str, local: datetime, **properties: Any) -> None:
    ts = int(local.timestamp() * 1000)
    payload = {"type": "track", "event": name, "userId": pid, "properties": properties}
    conn.execute(
        insert(events).values(
            workspace_id=workspace_id,
            message_id=f"st-{next(_seq)}",
            profile_id=pid,
            type="track",
            event=name,
            user_id=pid,
            timestamp_ms=ts,
            received_at_ms=ts,
            payload=orjson.dumps(payload).decode(),
        )
    )


def population(engine: Any, workspace_id: str, prefix: str) -> None:
    """40 people in four time zones who all open at 20:xx their time, four days each, and a
    privacy proxy that fetches every pixel at 03:00 their time, twice as often."""
    with engine.begin() as conn:
        for i in range(40):
            pid = f"{prefix}{i}"
            zone = ZONES[i % len(ZONES)]
            add_person(conn, workspace_id, pid, zone)
            for day in range(1, 5):
                base = datetime(2025, 12, day, tzinfo=ZoneInfo(zone))
                add_event(conn, workspace_id, pid, "Email Opened", base.replace(hour=20, minute=i % 60))
                add_event(conn, workspace_id, pid, "Email Opened", base.replace(hour=3), machine=True)
                add_event(conn, workspace_id, pid, "Email Opened", base.replace(hour=3, minute=30), machine=True)
                add_event(conn, workspace_id, pid, "Email Link Clicked", base.replace(hour=3, minute=31), bot=True)
                add_event(conn, workspace_id, pid, "Product Viewed", base.replace(hour=11))


def test_the_prior_is_in_local_hours_without_machine_opens(engine: Any) -> None:
    ws = make_workspace(engine, "send-time")
    other = make_workspace(engine, "send-time-other")
    population(engine, ws.workspace_id, f"{ws.workspace_id[-6:]}-p")
    with engine.begin() as conn:  # another workspace whose people open at 06:00 UTC
        for i in range(30):
            pid = f"{other.workspace_id[-6:]}-q{i}"
            add_person(conn, other.workspace_id, pid, "UTC")
            for day in range(1, 4):
                add_event(conn, other.workspace_id, pid, "Email Opened", datetime(2025, 12, day, 6, tzinfo=UTC))
    with engine.connect() as conn:
        prior = store.load_prior(conn, ws.workspace_id)
        theirs = store.load_prior(conn, other.workspace_id)
    assert prior is not None and theirs is not None
    assert max(range(24), key=lambda h: prior.shape[h]) == 20
    assert prior.shape[3] < 0.01  # the proxy's fetches are not the people's habits
    assert prior.events == 160 and prior.people == 40
    assert prior.strength == 100.0  # everyone keeps the same hour: the strongest prior
    assert max(range(24), key=lambda h: theirs.shape[h]) == 6


def test_no_events_no_prior_and_the_catalog_reads_it_only_for_send_time(engine: Any) -> None:
    ws = make_workspace(engine, "send-time-catalog")
    with engine.connect() as conn:
        assert store.load_prior(conn, ws.workspace_id) is None
    population(engine, ws.workspace_id, f"{ws.workspace_id[-6:]}-c")
    plain = {"id": "plain", "name": "Plain", "trigger": {"type": "event", "event": "Go"}}
    steps = {"mail": {"type": "send", "channel": "log", "template": "t"}}
    now = int((datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=1)).timestamp() * 1000)
    with engine.begin() as conn:
        journey_store.apply_draft(conn, ws.workspace_id, Journey.model_validate({**plain, "steps": steps}), now)
        journey_store.publish(conn, ws.workspace_id, "plain", now, backfill=False)
    assert journey_store.load_catalog(engine, ws.workspace_id).send_time_prior is None
    timed = {"mail": {**steps["mail"], "send_time": "optimized"}}
    with engine.begin() as conn:
        journey = Journey.model_validate({**plain, "id": "timed", "steps": timed})
        journey_store.apply_draft(conn, ws.workspace_id, journey, now)
        journey_store.publish(conn, ws.workspace_id, "timed", now, backfill=False)
    prior = journey_store.load_catalog(engine, ws.workspace_id).send_time_prior
    assert prior is not None and max(range(24), key=lambda h: prior.shape[h]) == 20
