"""The person a console user means, within their workspace.

A template preview on a real person and a segment's "why is this person in or out" take
what a user knows of someone: the profile id, a userId, an anonymousId or an email address.
Every lookup is within the signed-in workspace: another workspace's person is no one.
"""

from __future__ import annotations

from sqlalchemy import Connection

from nudgeflow.store.people_search import profile_by_email
from nudgeflow.store.profiles import resolve_profile_id


def person_id(conn: Connection, workspace_id: str, ref: str) -> str | None:
    """The workspace's profile a reference names: its id, a userId, an anonymousId, or an
    email address (the `email` trait, compared without case); None when there is none."""
    ref = ref.strip()
    if not ref:
        return None
    found = resolve_profile_id(conn, workspace_id, ref)
    if found is not None or "@" not in ref:
        return found
    # On ix_profiles_email (migration 0022), not a scan of every profile's traits.
    return profile_by_email(conn, workspace_id, ref)
