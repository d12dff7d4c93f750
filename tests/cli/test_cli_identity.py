"""`nudgeflow workspace keys …` and `nudgeflow workspace identity …`, run as a user runs them,
against SQLite and PostgreSQL; a live server then checks that what they did takes effect."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from datetime import timedelta
from pathlib import Path

from nudgeflow.core.clock import VirtualClock
from nudgeflow.settings import Settings
from tests.support import NUDGEFLOW, start_server


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def ok(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = run(args, env, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_create_list_and_revoke(db_env: dict[str, str], tmp_path: Path) -> None:
    ws = json.loads(ok(["workspace", "create", "shop", "--json"], db_env, tmp_path))
    wid = ws["workspace_id"]
    server = json.loads(ok(["workspace", "keys", "create", wid, "--kind", "server", "--json"], db_env, tmp_path))
    assert server["kind"] == "server" and server["write_key"].startswith("sk_")
    public = ok(["workspace", "keys", "create", wid, "--kind", "public"], db_env, tmp_path)
    assert "wk_" in public
    listed = json.loads(ok(["workspace", "keys", "list", wid, "--json"], db_env, tmp_path))["keys"]
    assert sorted(k["kind"] for k in listed) == ["admin", "public", "public", "server"]
    assert server["write_key"] not in json.dumps(listed)  # hints only
    text = ok(["workspace", "keys", "list", wid], db_env, tmp_path)
    assert server["write_key"][:8] in text and "server" in text

    bad = run(["workspace", "keys", "create", wid, "--kind", "secret"], db_env, tmp_path)
    assert bad.returncode != 0 and "--kind" in bad.stderr and "Traceback" not in bad.stderr
    missing = run(["workspace", "keys", "create", "ws_nope", "--kind", "public"], db_env, tmp_path)
    assert missing.returncode != 0 and "ws_nope" in missing.stderr

    done = run(["workspace", "keys", "revoke", wid, server["write_key"][:8]], db_env, tmp_path)
    assert done.returncode == 0 and "revoked the server write key" in done.stderr
    again = run(["workspace", "keys", "revoke", wid, server["write_key"][:8]], db_env, tmp_path)
    assert again.returncode != 0 and "no write key" in again.stderr
    listed = json.loads(ok(["workspace", "keys", "list", wid, "--json"], db_env, tmp_path))["keys"]
    assert sorted(k["kind"] for k in listed) == ["admin", "public", "public"]


def test_identity_enable_rotate_finish_disable_take_effect(
    db_env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    ws = json.loads(ok(["workspace", "create", "shop", "--json"], db_env, tmp_path))
    wid = ws["workspace_id"]
    assert json.loads(ok(["workspace", "identity", "show", wid, "--json"], db_env, tmp_path)) == {
        "verification": False,
        "secrets": 0,
        "rotating": False,
    }
    first = json.loads(ok(["workspace", "identity", "enable", wid, "--json"], db_env, tmp_path))
    assert first["verification"] is True and first["secret"].startswith("nfid_")
    again = json.loads(ok(["workspace", "identity", "enable", wid, "--json"], db_env, tmp_path))
    assert "secret" not in again  # shown once: enabling again does not print it
    shown = ok(["workspace", "identity", "show", wid], db_env, tmp_path)
    assert first["secret"] not in shown and "verification" in shown

    done = run(["workspace", "identity", "rotate", wid], db_env, tmp_path)
    assert done.returncode == 0 and "finish-rotation" in done.stderr
    second = next(line.split()[-1] for line in done.stdout.splitlines() if line.split()[:1] == ["secret"])
    assert second.startswith("nfid_") and second != first["secret"]
    refused = run(["workspace", "identity", "rotate", wid], db_env, tmp_path)
    assert refused.returncode != 0 and "finish-rotation" in refused.stderr and "Traceback" not in refused.stderr

    def proof(secret: str, user: str) -> str:
        return hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()

    settings = Settings(database_url=database_url, sqlite_synchronous="NORMAL", ingest_rate_per_second=0)
    clock = VirtualClock()
    server = start_server(settings, clock)
    try:

        def identify(user: str, user_hash: str | None) -> int:
            body = {
                "userId": user,
                "traits": {"email": f"{user}@example.com"},
                **({"context": {"userHash": user_hash}} if user_hash else {}),
            }
            with server.client(auth=(ws["write_key"], "")) as client:
                return client.post("/v1/identify", json=body).status_code

        assert identify("u1", None) == 403
        assert identify("u1", proof(first["secret"], "u1")) == 200
        assert identify("u2", proof(second, "u2")) == 200
        ok(["workspace", "identity", "finish-rotation", wid], db_env, tmp_path)
        clock.advance(timedelta(seconds=6))  # the server's settings cache
        assert identify("u1", proof(first["secret"], "u1")) == 403
        assert identify("u1", proof(second, "u1")) == 200
        ok(["workspace", "identity", "disable", wid], db_env, tmp_path)
        clock.advance(timedelta(seconds=6))
        assert identify("u3", None) == 200
    finally:
        server.stop()
    done = run(["workspace", "identity", "finish-rotation", wid], db_env, tmp_path)
    assert done.returncode != 0 and "no rotation" in done.stderr
