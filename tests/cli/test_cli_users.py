"""`nudgeflow users …`, run as a user runs it, on SQLite and PostgreSQL: the password comes
from standard input and never shows in the output; a reset or a disable signs the user out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import select

from nudgeflow.store import console_sessions, database
from nudgeflow.store.schema import console_users
from tests.support import NUDGEFLOW

PASSWORD = "a long enough secret"


def run(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGEFLOW, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def ok(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> str:
    done = run(args, env, cwd, stdin)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return done.stdout + done.stderr


def test_users_create_list_reset_disable(db_env: dict[str, str], tmp_path: Path) -> None:
    wid = json.loads(ok(["workspace", "create", "shop", "--json"], db_env, tmp_path))["workspace_id"]
    made = ok(
        ["users", "create", "Ann@Example.com", "-w", wid, "--role", "admin", "--password-stdin"],
        db_env,
        tmp_path,
        PASSWORD + "\n",
    )
    assert "ann@example.com (admin)" in made
    ok(["users", "create", "bo@example.com", "-w", wid, "--password-stdin"], db_env, tmp_path, PASSWORD)
    listed = [json.loads(line) for line in ok(["users", "list", "-w", wid, "--json"], db_env, tmp_path).splitlines()]
    assert [(u["email"], u["role"], u["disabled"]) for u in listed] == [
        ("ann@example.com", "admin", False),
        ("bo@example.com", "viewer", False),
    ]
    engine = database.create_db_engine(db_env["NUDGEFLOW_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            stored = conn.execute(select(console_users.c.password_hash).where(console_users.c.workspace_id == wid))
            assert all(h.startswith("$argon2id$") and PASSWORD not in h for (h,) in stored)
            session = console_sessions.open_session(conn, wid, 0, user_id=listed[0]["id"])
        reset = ok(
            ["users", "reset-password", "ann@example.com", "-w", wid, "--password-stdin"],
            db_env,
            tmp_path,
            "another long secret\n",
        )
        assert "1 session signed out" in reset
        with engine.connect() as conn:
            assert console_sessions.live_session(conn, session.token, 1, 10**9) is None
    finally:
        engine.dispose()

    assert "now editor" in ok(["users", "set-role", "bo@example.com", "editor", "-w", wid], db_env, tmp_path)
    assert "disabled" in ok(["users", "disable", "bo@example.com", "-w", wid], db_env, tmp_path)
    listed = [json.loads(line) for line in ok(["users", "list", "-w", wid, "--json"], db_env, tmp_path).splitlines()]
    assert (listed[1]["role"], listed[1]["disabled"]) == ("editor", True)
    assert "enabled" in ok(["users", "enable", "bo@example.com", "-w", wid], db_env, tmp_path)

    for args, stdin, words in (
        (["users", "create", "ann@example.com", "-w", wid, "--password-stdin"], PASSWORD, "already has a user"),
        (["users", "create", "x@example.com", "-w", wid, "--role", "boss", "--password-stdin"], PASSWORD, "role"),
        (["users", "create", "not-an-email", "-w", wid, "--password-stdin"], PASSWORD, "not an email"),
        (["users", "create", "y@example.com", "-w", wid, "--password-stdin"], "short", "at least 10"),
        (["users", "create", "y@example.com", "-w", "ws_nope", "--password-stdin"], PASSWORD, "ws_nope"),
        (["users", "disable", "nobody@example.com", "-w", wid], "", "no user"),
    ):
        done = run(args, db_env, tmp_path, stdin)
        assert done.returncode != 0, args
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
