"""An outbox row in the column order of store/outbox.OUTBOX_COLUMNS, for tests that plant
messages in every status (tests/store/test_console_reads, tests/console/test_overview_page)."""

from __future__ import annotations

from typing import Any

from nudgeflow.store import outbox


def outbox_row(
    ws: str, key: str, status: str, due_ms: int, *, error: str | None = None, reason: str | None = None
) -> tuple[Any, ...]:
    values = {
        "workspace_id": ws,
        "idempotency_key": key,
        "profile_id": "prf_1",
        "run_id": "run_" + key,
        "journey_id": "welcome",
        "journey_version": 1,
        "step": "s1",
        "channel": "email",
        "template": "welcome",
        "variant": None,
        "marketing": 1,
        "payload": "{}",
        "status": status,
        "attempts": 1,
        "next_attempt_at_ms": due_ms,
        "created_at_ms": due_ms,
        "updated_at_ms": due_ms,
        "sent_at_ms": None,
        "error": error,
        "reason": reason,
    }
    return tuple(values[c] for c in outbox.OUTBOX_COLUMNS)
