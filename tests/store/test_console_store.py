"""The console's store: users (passwords hashed, roles, disabling), sessions (idle expiry,
revocation, admin-token sessions) and the audit log's pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from nudgeflow.store import audit_log, console_sessions, console_users
from nudgeflow.store.schema import console_sessions as console_sessions_table
from nudgeflow.store.workspaces import key_digest
from tests.store.pg_race import second_after_first
from tests.support import make_workspace

IDLE = 60_000


def test_users_hash_passwords_and_check_them(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        user = console_users.create_user(conn, ws, " Pat@Example.COM ", "editor", "a long password", 5)
        with pytest.raises(console_users.ConsoleUserError, match="already has a user"):
            console_users.create_user(conn, ws, "pat@example.com", "viewer", "a long password", 5)
        with pytest.raises(console_users.ConsoleUserError, match="role"):
            console_users.create_user(conn, ws, "q@example.com", "owner", "a long password", 5)
    assert user.email == "pat@example.com"
    with engine.connect() as conn:
        [(found, hashed)] = console_users.users_by_email(conn, "pat@example.com")
        assert found == user and hashed.startswith("$argon2id$")
        assert console_users.password_matches(hashed, "a long password")
        assert not console_users.password_matches(hashed, "a long passwore")
        assert console_users.require_user(conn, ws, "PAT@example.com") == user
        assert console_users.require_user(conn, ws, user.id) == user
        other = make_workspace(engine, "other").workspace_id
        with pytest.raises(console_users.ConsoleUserError):
            console_users.require_user(conn, other, user.id)  # another workspace's user is not found


def test_sessions_expire_when_idle_and_when_revoked(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    with engine.begin() as conn:
        user = console_users.create_user(conn, ws, "s@example.com", "viewer", "a long password", 0)
        one = console_sessions.open_session(conn, ws, 1_000, user_id=user.id)
        two = console_sessions.open_session(conn, ws, 1_000, user_id=user.id)
    with engine.connect() as conn:
        live = console_sessions.live_session(conn, one.token, 1_000 + IDLE - 1, IDLE)
        assert live is not None and (live.role, live.email, live.csrf_token) == (
            "viewer",
            "s@example.com",
            one.csrf_token,
        )
        assert console_sessions.live_session(conn, one.token, 1_000 + IDLE, IDLE) is None  # idle too long
        assert console_sessions.live_session(conn, "made-up", 1_000, IDLE) is None
    with engine.begin() as conn:
        console_sessions.touch(conn, live.session_id, 1_000 + IDLE - 1)
        assert console_sessions.revoke_session(conn, two.token, 2_000)
    with engine.connect() as conn:
        assert console_sessions.live_session(conn, one.token, 1_000 + 2 * IDLE - 2, IDLE) is not None
        assert console_sessions.live_session(conn, two.token, 2_000, IDLE) is None
    with engine.begin() as conn:
        assert console_users.set_disabled(conn, ws, user.id, True, 3_000) == 1
    with engine.connect() as conn:
        assert console_sessions.live_session(conn, one.token, 3_000, IDLE) is None
    with engine.begin() as conn:
        # The database may hold other tests' sessions (PostgreSQL's is shared): count ours.
        assert console_sessions.forget_stale_sessions(conn, 10**9, IDLE) >= 2
        left = conn.execute(select(console_sessions_table).where(console_sessions_table.c.workspace_id == ws))
        assert left.all() == []


def test_an_admin_token_session_lives_while_the_token_does(engine: Any) -> None:
    created = make_workspace(engine)
    with engine.begin() as conn:
        new = console_sessions.open_session(
            conn,
            created.workspace_id,
            0,
            admin_key_hash=key_digest(created.admin_token),
            admin_key_hint=created.admin_token[:8],
        )
        forged = console_sessions.open_session(
            conn, created.workspace_id, 0, admin_key_hash=key_digest("nfa_gone"), admin_key_hint="nfa_gone"
        )
    with engine.connect() as conn:
        live = console_sessions.live_session(conn, new.token, 1, IDLE)
        assert live is not None and live.role == "admin" and live.user_id is None
        assert console_sessions.live_session(conn, forged.token, 1, IDLE) is None


def test_audit_entries_page_newest_first(engine: Any) -> None:
    ws = make_workspace(engine).workspace_id
    other = make_workspace(engine, "other").workspace_id
    with engine.begin() as conn:
        for n in range(5):
            audit_log.record(conn, ws, "a@example.com", "PUT journey", f"j{n}", {"v": n}, {"v": n + 1}, 100 + n // 2)
        audit_log.record(conn, other, "b@example.com", "PUT journey", "x", None, None, 1)
    with engine.connect() as conn:
        first, cursor = audit_log.entries(conn, ws, limit=2)
        assert [e["target"] for e in first] == ["j4", "j3"]
        assert first[0]["before"] == {"v": 4} and first[0]["after"] == {"v": 5}
        second, cursor = audit_log.entries(conn, ws, limit=2, before=cursor)
        assert [e["target"] for e in second] == ["j2", "j1"]
        last, cursor = audit_log.entries(conn, ws, limit=2, before=cursor)
        assert [e["target"] for e in last] == ["j0"] and cursor is None


def test_two_creates_of_one_user_at_once_refuse_the_second_by_name(engine: Any) -> None:
    # Two owners (or two API processes) add the same e-mail at once: on PostgreSQL both found
    # no user and the second's insert failed on uq_console_users_email, a 500. It is the same
    # clear refusal as a create after the first.
    ws = make_workspace(engine).workspace_id
    second = second_after_first(
        engine,
        lambda conn: console_users.create_user(conn, ws, "pat@example.com", "editor", "a long password", 5),
        lambda conn: console_users.create_user(conn, ws, "pat@example.com", "viewer", "a long password", 6),
        "console_users",
    )
    assert isinstance(second, console_users.ConsoleUserError)
    assert "already has a user 'pat@example.com'" in str(second)
