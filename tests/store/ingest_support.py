"""Events as the ingest API hands them to the store's writer, and writing them: what
test_ingest_writer and test_push_target_caps share."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from nudgeflow.model.events import EventRecord, normalize, parse_message
from nudgeflow.store.ingest_writer import WriteResult, write_events
from nudgeflow.store.profiles import resolve_profile_id

RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_767_268_800_000
_ids = itertools.count(1)


def record(type_: str, **fields: Any) -> EventRecord:
    """A message as the ingest API would hand it to the writer."""
    message: dict[str, Any] = {"type": type_, "messageId": f"m-{next(_ids)}", **fields}
    if type_ == "track":
        message.setdefault("event", "Product Viewed")
    return normalize(parse_message(message), RECEIVED, max_event_bytes=32 * 1024)


def track(**fields: Any) -> EventRecord:
    return record("track", **fields)


def identify(**fields: Any) -> EventRecord:
    return record("identify", **fields)


def alias(**fields: Any) -> EventRecord:
    return record("alias", **fields)


def write(engine: Any, workspace_id: str, *records: EventRecord) -> WriteResult:
    with engine.begin() as conn:
        return write_events(conn, workspace_id, list(records), NOW_MS)


def profile_of(engine: Any, workspace_id: str, ref: str) -> str | None:
    with engine.connect() as conn:
        return resolve_profile_id(conn, workspace_id, ref)
