"""The `nudgeflow` console script, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.cli.support import create_workspace, run


def test_workspace_create_json_prints_one_object(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["workspace", "create", "My Shop", "--json"], env, tmp_path)

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    created = json.loads(lines[0])
    assert set(created) == {"workspace_id", "write_key", "admin_token"}
    assert all(isinstance(v, str) and v for v in created.values())
    assert created["write_key"] != created["admin_token"]


def test_workspace_create_refuses_a_bad_name(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["workspace", "create", "   ", "--json"], env, tmp_path)
    assert done.returncode != 0
    assert "name" in done.stderr and "Traceback" not in done.stderr


def test_db_upgrade_on_a_new_sqlite_file_and_again(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.db"
    url = f"sqlite:///{path}"

    first = run(["db", "upgrade", "--database", url], env, tmp_path)
    second = run(["db", "upgrade", "--database", url], env, tmp_path)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert path.exists()
    with sqlite3.connect(path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "profiles", "identities", "workspaces", "api_keys"} <= tables
    assert "empty" in first.stderr and revision in first.stderr
    assert f"{revision} -> {revision}" in second.stderr


def _write_jsonl(path: Path) -> Path:
    lines = [
        json.dumps({"type": "track", "event": "Product Viewed", "anonymousId": "a-1", "properties": {"sku": "S1"}}),
        "{broken",
        json.dumps({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"email": "u1@example.com"}}),
        "",
        json.dumps({"type": "track", "event": "Order Completed"}),
        json.dumps({"type": "track", "event": "Order Completed", "userId": "u-1", "properties": {"revenue": 12.5}}),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_reports_bad_lines_by_number_and_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)
    path = _write_jsonl(tmp_path / "history.jsonl")

    first = run(["import", str(path), "--write-key", ws["write_key"]], env, tmp_path)
    again = run(["import", str(path), "--write-key", ws["write_key"]], env, tmp_path)

    assert first.returncode == 2, first.stderr
    output = first.stdout + first.stderr
    assert "line 2:" in output and "invalid JSON" in output
    assert "line 5:" in output and "userId or anonymousId" in output
    assert "line 4:" not in output  # blank: skipped, not bad
    assert "imported" in output and "duplicates skipped" in output
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)
    # Again: nothing imported twice, the same lines reported.
    assert again.returncode == 2
    assert "line 2:" in again.stderr
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (3,)


def test_import_from_stdin_with_the_key_in_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)
    data = "\n".join(
        json.dumps({"type": "track", "event": "Application Opened", "userId": f"u-{i}", "messageId": f"m-{i}"})
        for i in range(25)
    )

    done = run(["import", "-"], {**env, "NUDGEFLOW_WRITE_KEY": ws["write_key"]}, tmp_path, stdin=data.encode())

    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (25,)


def test_import_reads_the_future_limit_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    """NUDGEFLOW_INGEST_MAX_FUTURE_SECONDS holds for `import` as for `serve`: a line dated two
    hours after the import is clamped under a one-hour limit (the default day keeps it)."""
    ws = create_workspace(env, tmp_path)
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    line = {"type": "track", "event": "Application Opened", "userId": "u-1", "messageId": "m-1", "timestamp": later}
    path = tmp_path / "ahead.jsonl"
    path.write_text(json.dumps(line) + "\n")

    done = run(
        ["import", str(path), "--write-key", ws["write_key"]],
        {**env, "NUDGEFLOW_INGEST_MAX_FUTURE_SECONDS": "3600"},
        tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert "line 1: warning: timestamp" in done.stderr
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        [(stored, received)] = conn.execute("SELECT timestamp_ms, received_at_ms FROM events").fetchall()
    assert stored <= received


def test_import_with_an_unknown_write_key_fails_clearly(env: dict[str, str], tmp_path: Path) -> None:
    create_workspace(env, tmp_path)
    path = _write_jsonl(tmp_path / "history.jsonl")
    wrong = "wk_definitely_not_a_real_key_123"

    done = run(["import", str(path), "--write-key", wrong], env, tmp_path)

    assert done.returncode == 1
    assert "unknown write key" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_import_of_a_missing_file_fails_clearly(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)
    done = run(["import", str(tmp_path / "nope.jsonl"), "--write-key", ws["write_key"]], env, tmp_path)
    assert done.returncode == 1
    assert "nope.jsonl" in done.stderr and "Traceback" not in done.stderr


def test_serve_answers_healthz_and_stops_on_sigterm(serve: tuple[str, subprocess.Popen[str], Path]) -> None:
    base, proc, log = serve

    # no SMTP server, no push in use: health names the channels the log channel stands in for
    assert httpx.get(base + "/healthz").json() == {"status": "ok", "channels_not_configured": ["email", "push"]}
    assert httpx.get(base + "/openapi.json").status_code == 200

    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a process should.
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()


def test_serve_logs_never_contain_keys_or_tokens(
    serve: tuple[str, subprocess.Popen[str], Path], env: dict[str, str], tmp_path: Path
) -> None:
    base, proc, log = serve
    url = f"sqlite:///{tmp_path / 'served' / 'nudgeflow.db'}"
    ws = create_workspace({**env, "NUDGEFLOW_DATABASE_URL": url}, tmp_path)
    key, token = ws["write_key"], ws["admin_token"]
    event = {"event": "Signed Up", "userId": "u-log"}

    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/v1/track", json=event, auth=(key, "")).status_code == 200
        assert client.post("/v1/track", json={**event, "writeKey": key}).status_code == 200
        assert (
            client.post("/v1/batch", json={"batch": [{**event, "type": "track"}], "writeKey": key}).status_code == 200
        )
        assert client.post("/v1/track", json={"userId": "u"}, auth=(key, "")).status_code == 400
        assert client.post("/v1/track", json=event, auth=(key + "x", "")).status_code == 401
        assert (
            client.post(
                "/v1/track", content=b"{bad", auth=(key, ""), headers={"content-type": "application/json"}
            ).status_code
            == 400
        )
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/profiles/u-log", headers=headers).status_code == 200
        assert client.get("/api/profiles/u-log", headers={"Authorization": f"Bearer {token}x"}).status_code == 401

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    output = log.read_text()
    assert '"route"' in output, "requests were logged: " + output  # the check below means something
    assert key not in output and key[3:] not in output
    assert token not in output and token[4:] not in output


def test_demo_runs_from_any_directory_and_prints_its_summary(env: dict[str, str], tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    demo_env = {k: v for k, v in env.items() if k != "NUDGEFLOW_DATABASE_URL"}

    started = time.monotonic()
    done = run(["demo", "--users", "40"], demo_env, elsewhere, timeout=120)
    elapsed = time.monotonic() - started

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for text in (
        "Events by type",
        "Track events by name",
        "Product Viewed",
        "Order Completed",
        "profiles",
        "known",
        "anonymous",
        "merged",
        "duplicates",
        "events/s",
        "/api/profiles/",
    ):
        assert text in out, text
    assert "0 stored again" in out
    # The example journeys, published and fast-forwarded through 40 days, and what they sent.
    for text in (
        "published 11 journeys",
        "Fast-forward",
        "(40 days)",
        "What each journey did",
        "The first message of each step",
        "welcome / welcome",
        "messages sent",
    ):
        assert text in out, text
    for journey in (
        "welcome",
        "browse-abandonment",
        "cart-abandonment",
        "post-purchase",
        "win-back",
        "push-level-completed",
        "push-saved-item",
        "push-streak-7",
        "push-inactive-3d",
        "push-near-store",
        "plan-downgrade-save",
    ):
        assert journey in out, journey
    # The default is a temporary database: nothing is left in the working directory.
    assert list(elsewhere.iterdir()) == []
    assert elapsed < 60


def test_demo_keeps_a_database_it_was_given_with_what_the_journeys_sent(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "kept.db"
    done = run(["demo", "--users", "15", "--days", "10", "--database", f"sqlite:///{path}"], env, tmp_path, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "admin token" in done.stdout and "(10 days)" in done.stdout
    with sqlite3.connect(path) as conn:
        journeys = conn.execute("SELECT COUNT(*) FROM journeys WHERE status = 'live'").fetchone()[0]
        logged = conn.execute("SELECT COUNT(*) FROM log_channel_messages").fetchone()[0]
        outbox = dict(conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        by_channel = dict(
            conn.execute("SELECT channel, COUNT(*) FROM outbox WHERE status = 'sent' GROUP BY channel").fetchall()
        )
        runs = conn.execute("SELECT COUNT(*) FROM journey_runs").fetchone()[0]
        received = dict(conn.execute("SELECT channel, COUNT(*) FROM inbox_messages GROUP BY channel").fetchall())
    assert journeys == 11
    assert runs > 0 and logged == 0
    # Email over SMTP to the demo's dev inbox, push over Web Push to its push service: every
    # message sent or held back by the example send policies (deferred or dropped, never failed
    # or left pending), every email sent received, every push on at least one of the devices.
    assert set(outbox) <= {"sent", "deferred", "dropped"}
    assert outbox["sent"] == by_channel["email"] + by_channel["push"]
    assert received["email"] == by_channel["email"] > 0 and received["push"] >= by_channel["push"] > 0


def test_demo_with_journeys_of_ones_own_and_a_bad_one(env: dict[str, str], tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "id: hello\nname: Hello\ntrigger: {type: event, event: Signed Up}\n"
        "steps:\n  hi: {type: send, channel: push, template: push-level-up}\n"
    )
    done = run(["demo", "--users", "10", "--days", "3", "--journeys", str(mine)], env, tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published 1 journey from" in done.stdout and "hello / hi" in done.stdout

    mine.write_text("id: broken\nname: Broken\ntrigger: {type: event, event: X}\nsteps: {a: {type: send}}\n")
    done = run(["demo", "--users", "10", "--journeys", str(mine)], env, tmp_path, timeout=120)
    assert done.returncode == 1
    assert "mine.yaml:4: steps.a: missing required key 'channel'" in done.stderr and "Traceback" not in done.stderr
