"""The person a console user means, within their workspace.

A template preview on a real person and a segment's "why is this person in or out" take
what a user knows of someone: the profile id, a userId, an anonymousId or an email address.
Every lookup is within the signed-in workspace: another workspace's person is no one, and so
is a ref no id can be (longer than 512 characters, or holding a NUL).
"""

from __future__ import annotations

from sqlalchemy import Connection

from nudgeflow.store.people_search import profile_by_email
from nudgeflow.store.profiles import resolve_profile_id

MAX_REF = 512


def person_id(conn: Connection, workspace_id: str, ref: str) -> str | None:
    """The workspace's profile a reference names: its id, a userId, an anonymousId, or an
    email address (the `email` trait, compared without case); None when there is none."""
    ref = ref.strip()
    # No id is longer than ingest takes (512 characters; an email address is at most 254),
    # and none holds a NUL, which PostgreSQL text cannot even compare: such a ref is no one
    # (a body's ref reaches here unchecked, unlike a path's or query's).
    if not ref or len(ref) > MAX_REF or "\x00" in ref:
        return None
    found = resolve_profile_id(conn, workspace_id, ref)
    if found is not None or "@" not in ref:
        return found
    # On ix_profiles_email (migration 0022), not a scan of every profile's traits.
    return profile_by_email(conn, workspace_id, ref)
