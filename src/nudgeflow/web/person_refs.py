"""The person a console user means, within their workspace.

A template preview on a real person and a segment's "why is this person in or out" take
what a user knows of someone: the profile id, a userId, an anonymousId or an email address.
Every lookup is within the signed-in workspace: another workspace's person is no one.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection

from nudgeflow.store.profiles import mentioning, resolve_profile_id


def person_id(conn: Connection, workspace_id: str, ref: str) -> str | None:
    """The workspace's profile a reference names: its id, a userId, an anonymousId, or an
    email address (the `email` trait, compared without case); None when there is none."""
    ref = ref.strip()
    if not ref:
        return None
    found = resolve_profile_id(conn, workspace_id, ref)
    if found is not None or "@" not in ref:
        return found
    address = ref.lower()
    for row in mentioning(conn, workspace_id, address):
        traits = orjson.loads(row.traits) if row.traits else {}
        email = traits.get("email") if isinstance(traits, dict) else None
        if isinstance(email, str) and email.strip().lower() == address:
            return str(row.id)
    return None
