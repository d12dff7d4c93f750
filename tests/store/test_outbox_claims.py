"""The outbox's claims on PostgreSQL, where several dispatchers claim side by side: the
safety net's pick (`next_due`) is the row the next claim would take, not one another
dispatcher holds."""

from __future__ import annotations

from typing import Any

import pytest

from nudgeflow.store import database, outbox
from nudgeflow.store.workspaces import create_workspace


def _row(ws: str, key: str, due_ms: int) -> tuple[Any, ...]:
    values = {
        "workspace_id": ws,
        "idempotency_key": key,
        "profile_id": "p1",
        "run_id": "run1",
        "journey_id": "welcome",
        "journey_version": 1,
        "step": "welcome",
        "channel": "email",
        "template": "welcome",
        "variant": None,
        "marketing": 1,
        "payload": "{}",
        "status": outbox.PENDING,
        "attempts": 0,
        "next_attempt_at_ms": due_ms,
        "created_at_ms": due_ms,
        "updated_at_ms": due_ms,
        "sent_at_ms": None,
        "error": None,
        "reason": None,
    }
    return tuple(values[c] for c in outbox.OUTBOX_COLUMNS)


def test_the_safety_net_picks_the_row_a_claim_would_not_one_another_dispatcher_holds(new_engine: Any) -> None:
    # A one-message claim that keeps failing has its message failed by the safety net
    # (runtime/embedded.py, _fail_next_message), which asks next_due for "the pending row the
    # next claim would take first". While another dispatcher held the oldest due row in its
    # claim, next_due still named it (no SKIP LOCKED): the safety net then failed that
    # dispatcher's message, which it was about to send, instead of the one that failed here.
    if new_engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one dispatcher: no row is ever held by another")
    database.upgrade(new_engine)
    with new_engine.begin() as conn:
        ws = create_workspace(conn, "claims", 1).workspace_id
        outbox.queue(conn, [_row(ws, "first", 10), _row(ws, "second", 20)])
    with new_engine.connect() as other:
        held = other.begin()
        [(first_id, *_)] = outbox.claim_due(other, 100, 1)
        with new_engine.begin() as conn:
            [(claimed_id, *_)] = outbox.claim_due(conn, 100, 1)
            picked = outbox.next_due(conn, 100)
        held.rollback()
    assert claimed_id != first_id
    assert picked is not None and picked == (claimed_id, "second")
