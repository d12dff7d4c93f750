"""An identify Nudgeflow writes itself, on behalf of a person: traits a webhook's answer gave.

It goes the way an identify from an SDK goes (store/ingest_writer.write_events): checked as
one (reserved traits validated, the bad ones kept aside as trait errors), stored once per
message id, the profile's traits updated and the event appended to the log in the same
transaction. So the engine applies the traits in order with the person's other events, and
attribute-change triggers, conditions and later messages see them as they see any identify:
nothing writes the engine's state of the person from outside the engine.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from nudgeflow.model.events import normalize, parse_message
from nudgeflow.model.iso_time import from_ms
from nudgeflow.settings import Settings
from nudgeflow.store import sql
from nudgeflow.store.ingest_writer import write_events
from nudgeflow.store.profiles import load_for_messages


def _any_anonymous_id(conn: Connection, profile_id: str) -> str | None:
    m = sql.mark(conn)
    found = conn.exec_driver_sql(
        f'SELECT "key" FROM identities WHERE profile_id = {m} AND "key" LIKE \'a:%\' ORDER BY "key" LIMIT 1',
        (profile_id,),
    ).first()
    return str(found[0])[2:] if found is not None else None


def write_identify(
    conn: Connection,
    workspace_id: str,
    profile_id: str,
    message_id: str,
    traits: dict[str, Any],
    now_ms: int,
    context: dict[str, Any] | None = None,
    library: str = "nudgeflow",
) -> bool:
    """Record `traits` for the person as an identify with this (deterministic) message id,
    `library` naming what wrote it (context.library.name): recording it twice stores it once.
    False when the person is gone (erased) or has no id an identify can name."""
    found = load_for_messages(conn, [profile_id]).get(profile_id)
    if found is None:
        return False
    user_id, final_id = found[1], found[2]
    message: dict[str, Any] = {"type": "identify", "messageId": message_id, "traits": traits}
    if user_id:
        message["userId"] = user_id
    else:
        anonymous_id = _any_anonymous_id(conn, final_id)
        if anonymous_id is None:
            return False
        message["anonymousId"] = anonymous_id
    message["context"] = {"library": {"name": library}, **(context or {})}
    record = normalize(parse_message(message), from_ms(now_ms), max_event_bytes=Settings.max_event_bytes, own=True)
    write_events(conn, workspace_id, [record], now_ms)
    return True
