"""Rows build_context reads, written straight into the database: a person, their state, their
events (shared by tests/content/test_context.py and its fixture in conftest.py)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from sqlalchemy import insert

from nudgeflow.store.schema import events, profile_state, profiles

NOW = 1_767_268_800_000  # 2026-01-01T12:00:00Z
DAY = 86_400_000
_seq = itertools.count()


def add_profile(conn: Any, ws: str, pid: str, traits: dict[str, Any], state: dict[str, Any] | None = None) -> None:
    pid = f"{pid}.{ws}"  # profile ids are global: tests share PostgreSQL
    conn.execute(
        insert(profiles).values(
            id=pid,
            workspace_id=ws,
            user_id=None,
            traits=orjson.dumps(traits).decode(),
            created_at_ms=0,
            updated_at_ms=0,
        )
    )
    if state is not None:
        conn.execute(
            insert(profile_state).values(
                profile_id=pid, workspace_id=ws, state=orjson.dumps(state).decode(), updated_at_ms=0
            )
        )


def add_event(
    conn: Any,
    ws: str,
    pid: str,
    name: str | None,
    at: int,
    /,
    kind: str = "track",
    context: dict[str, Any] | None = None,
    **props: Any,
) -> None:
    mid = f"m{next(_seq)}"
    pid = f"{pid}.{ws}"
    message = {"type": kind, "messageId": mid, "properties": props, "context": context or {}}
    if name is not None:
        message["event"] = name
    conn.execute(
        insert(events).values(
            workspace_id=ws,
            message_id=mid,
            profile_id=pid,
            type=kind,
            event=name,
            timestamp_ms=at,
            received_at_ms=at,
            payload=orjson.dumps(message).decode(),
        )
    )
