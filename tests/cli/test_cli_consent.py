"""`nudgeflow consent show|set|request-confirmation`, a real process per command."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from nudgeflow.content.compiled_templates import save_template
from nudgeflow.store import database
from tests.cli.support import create_workspace, run


def test_show_set_and_request_a_confirmation(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO profiles (id, workspace_id, user_id, traits, created_at_ms, updated_at_ms) "
                "VALUES ('prf_ada', :w, 'ada', '{\"email\": \"ada@example.com\"}', 1, 1)"
            ),
            {"w": ws},
        )
        conn.execute(
            text(
                "INSERT INTO identities (workspace_id, key, profile_id, created_at_ms) "
                "VALUES (:w, 'u:ada', 'prf_ada', 1)"
            ),
            {"w": ws},
        )
        save_template(conn, ws, "confirm", {"channel": "email", "subject": "Confirm", "body": "<p>ok</p>"}, 1)

    done = run(["consent", "set", "ada", "-w", ws, "--unsubscribe", "--channel", "push"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "prf_ada unsubscribed from all marketing on push"
    again = run(["consent", "set", "ada", "-w", ws, "--unsubscribe", "--channel", "push"], env, tmp_path)
    assert again.stdout.strip().endswith("(no change)")
    yes = run(["consent", "set", "prf_ada", "-w", ws, "--subscribe", "--topic", "news"], env, tmp_path)
    assert yes.returncode == 0 and "subscribed to topic news on email" in yes.stdout

    shown = run(["consent", "show", "ada", "-w", ws, "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    channels = json.loads(shown.stdout)["channels"]
    assert channels["push"]["all"]["allowed"] is False and channels["push"]["all"]["recorded"]["source"] == "cli"
    assert channels["email"]["all"] == {"allowed": True, "recorded": None}
    assert channels["email"]["topics"]["news"]["recorded"]["subscribed"] is True
    table = run(["consent", "show", "ada", "-w", ws], env, tmp_path)
    assert "not sent: unsubscribed" in table.stdout and "cli" in table.stdout

    asked = run(["consent", "request-confirmation", "ada", "-w", ws, "--topic", "news"], env, tmp_path)
    assert asked.returncode == 1 and "consent_confirmation_template" in asked.stderr
    asked = run(
        ["consent", "request-confirmation", "ada", "-w", ws, "--topic", "news", "--template", "confirm"], env, tmp_path
    )
    assert asked.returncode == 0, asked.stderr
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT template, marketing, status, payload FROM outbox WHERE workspace_id = :w"), {"w": ws}
        ).one()
        events = conn.execute(
            text("SELECT count(*) FROM events WHERE workspace_id = :w AND event = 'Consent Updated'"), {"w": ws}
        ).scalar_one()
    engine.dispose()
    assert (row.template, row.marketing, row.status) == ("confirm", 0, "pending")
    assert json.loads(row.payload)["consent"] == {"channel": "email", "topic": "news"}
    assert events == 2

    missing = run(["consent", "show", "nobody", "-w", ws], env, tmp_path)
    assert missing.returncode == 1 and "no profile" in missing.stderr
