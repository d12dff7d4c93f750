"""`nudgeflow journeys …`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

from nudgeflow.model.journeys import journey_json_schema
from tests.cli.support import run, workspace, write

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "journeys"

JOURNEY = """\
id: {id}
name: Cart reminder
trigger:
  type: event
  event: Product Added
steps:
  remind:
    type: send
    channel: log
    template: {template}
"""

BROKEN = """\
id: broken
name: Broken
trigger:
  type: event
  event: Product Added
  where:
    - property: price
      op: equals
      value: 3
steps:
  remind:
    type: send
    channel: log
    template: cart-1
    next: wiat
"""


# --- validate ---------------------------------------------------------------------------------


def test_validate_reports_each_problem_with_file_line_and_path(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "broken.yaml", BROKEN)
    done = run(["journeys", "validate", "broken.yaml"], env, tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "broken.yaml:8: trigger.where.0.op: unknown operator 'equals' (use one of eq, ne, in, not_in, gt, gte, "
        "lt, lte, exists, not_exists, contains, not_contains)",
        "broken.yaml:15: steps.remind.next: no step named 'wiat'",
        "1 file, 0 valid journeys: 2 errors, 0 warnings",
    ]
    assert "Traceback" not in done.stderr


def test_validate_needs_no_database(env: dict[str, str], tmp_path: Path) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    done = run(["journeys", "validate", str(EXAMPLES)], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    count = len(list(EXAMPLES.glob("*.yaml")))
    assert done.stdout.strip() == f"{count} files, {count} valid journeys: 0 errors, 0 warnings"


def test_warnings_do_not_fail(env: dict[str, str], tmp_path: Path) -> None:
    text = JOURNEY.format(id="warned", template="t") + "  orphan:\n    type: exit\n"
    write(tmp_path / "warned.yml", text)
    done = run(["journeys", "validate", "warned.yml"], env, tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "warned.yml:11: steps.orphan: warning: step 'orphan' is never reached from the start step 'remind'",
        "1 file, 1 valid journey: 0 errors, 1 warning",
    ]


def test_validate_several_files_and_unreadable_ones(env: dict[str, str], tmp_path: Path) -> None:
    write(
        tmp_path / "ok.json",
        json.dumps(
            {"id": "ok", "name": "OK", "trigger": {"type": "event", "event": "A"}, "steps": {"a": {"type": "exit"}}}
        ),
    )
    write(tmp_path / "bad.yaml", "id: [unclosed\n")
    done = run(["journeys", "validate", "ok.json", "bad.yaml", "missing.yaml"], env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bad.yaml:2: not valid YAML")
    assert lines[1] == "missing.yaml: no such file"
    assert lines[2] == "3 files, 1 valid journey: 2 errors, 0 warnings"


def test_validate_an_empty_directory(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run(["journeys", "validate", "empty"], env, tmp_path)
    assert done.returncode == 1
    assert "no journey files" in done.stderr


# --- schema -----------------------------------------------------------------------------------


def test_schema_command_prints_the_committed_schema(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["journeys", "schema"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == journey_json_schema()
    committed = (ROOT / "schema" / "journey.schema.json").read_text()
    assert json.loads(committed) == journey_json_schema(), (
        "schema/journey.schema.json is stale: run `nudgeflow journeys schema > schema/journey.schema.json`"
    )
    assert committed == done.stdout


# --- the database side ------------------------------------------------------------------------


def listed(env: dict[str, str], cwd: Path, ws: str) -> dict[str, dict[str, object]]:
    done = run(["journeys", "list", "--workspace", ws, "--json"], env, cwd)
    assert done.returncode == 0, done.stderr
    return {j["id"]: j for j in json.loads(done.stdout)}


def test_apply_publish_pause_resume_archive(env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = database_url
    ws = workspace(env, tmp_path)
    write(tmp_path / "cart.yaml", JOURNEY.format(id="cart", template="cart-1"))

    done = run(["journeys", "apply", "cart.yaml", "--workspace", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["cart: created (draft)"]
    assert listed(env, tmp_path, ws)["cart"]["status"] == "draft"

    done = run(["journeys", "publish", "cart", "--workspace", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "cart: 0 people would enter at once (of 0 profiles looked at)",
        "cart: published version 1 (live); the engine looks at the people already known in the background",
    ]

    write(tmp_path / "cart.yaml", JOURNEY.format(id="cart", template="cart-2"))
    done = run(["journeys", "apply", "cart.yaml", "-w", ws], env, tmp_path)
    assert done.stdout.splitlines() == ["cart: draft updated"]
    state = listed(env, tmp_path, ws)["cart"]
    assert (state["status"], state["live_version"], state["draft_changed"]) == ("live", 1, True)

    done = run(["journeys", "apply", "cart.yaml", "-w", ws, "--publish"], env, tmp_path)
    assert done.stdout.splitlines() == ["cart: draft unchanged, published version 2 (live)"]
    done = run(["journeys", "apply", "cart.yaml", "-w", ws, "--publish"], env, tmp_path)
    assert done.stdout.splitlines() == ["cart: draft unchanged, version 2 stays live (nothing new to publish)"]

    table = run(["journeys", "list", "--workspace", ws], env, tmp_path)
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if "cart" in line)
    assert "Cart reminder" in row and "live" in row and "2" in row and "same as live" in row

    assert run(["journeys", "pause", "cart", "-w", ws], env, tmp_path).stdout.strip() == "cart: paused"
    assert run(["journeys", "pause", "cart", "-w", ws], env, tmp_path).stdout.strip() == "cart: paused (already)"
    assert run(["journeys", "resume", "cart", "-w", ws], env, tmp_path).stdout.strip() == "cart: live"
    assert run(["journeys", "archive", "cart", "-w", ws], env, tmp_path).stdout.strip() == "cart: archived"

    refused = run(["journeys", "publish", "cart", "-w", ws], env, tmp_path)
    assert refused.returncode == 1
    assert "archived and cannot be published" in refused.stderr and "Traceback" not in refused.stderr
    refused = run(["journeys", "apply", "cart.yaml", "-w", ws], env, tmp_path)
    assert refused.returncode == 1 and "archived" in refused.stderr


def test_apply_is_all_or_nothing(env: dict[str, str], tmp_path: Path) -> None:
    ws = workspace(env, tmp_path)
    write(tmp_path / "good.yaml", JOURNEY.format(id="good", template="t"))
    write(tmp_path / "broken.yaml", BROKEN)
    done = run(["journeys", "apply", "good.yaml", "broken.yaml", "-w", ws, "--publish"], env, tmp_path)
    assert done.returncode == 1
    assert "broken.yaml:15: steps.remind.next: no step named 'wiat'" in done.stderr
    assert "nothing applied: 2 errors" in done.stderr
    assert listed(env, tmp_path, ws) == {}

    # The same id in two files is refused too.
    write(tmp_path / "twin.yaml", JOURNEY.format(id="good", template="other"))
    done = run(["journeys", "apply", "good.yaml", "twin.yaml", "-w", ws], env, tmp_path)
    assert done.returncode == 1 and "journey 'good' is also defined at good.yaml:1" in done.stderr
    assert listed(env, tmp_path, ws) == {}


def test_clear_errors_for_unknown_workspaces_and_journeys(env: dict[str, str], tmp_path: Path) -> None:
    ws = workspace(env, tmp_path)
    write(tmp_path / "j.yaml", JOURNEY.format(id="j", template="t"))
    for args, words in (
        (["journeys", "apply", "j.yaml", "-w", "ws_nope"], "no workspace 'ws_nope'"),
        (["journeys", "list", "-w", "ws_nope"], "no workspace 'ws_nope'"),
        (["journeys", "publish", "ghost", "-w", ws], "no journey 'ghost'"),
        (["journeys", "resume", "ghost", "-w", ws], "no journey 'ghost'"),
    ):
        done = run(args, env, tmp_path)
        assert done.returncode == 1, args
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    run(["journeys", "apply", "j.yaml", "-w", ws], env, tmp_path)
    done = run(["journeys", "resume", "j", "-w", ws], env, tmp_path)
    assert done.returncode == 1 and "is a draft: publish it" in done.stderr
    done = run(["journeys", "pause", "j", "-w", ws], env, tmp_path)
    assert done.returncode == 1 and "never published" in done.stderr


def test_workspace_from_the_environment(env: dict[str, str], tmp_path: Path) -> None:
    env["NUDGEFLOW_WORKSPACE"] = workspace(env, tmp_path)
    write(tmp_path / "j.yaml", JOURNEY.format(id="j", template="t"))
    assert run(["journeys", "apply", "j.yaml", "--publish"], env, tmp_path).returncode == 0
    done = run(["journeys", "list", "--json"], env, tmp_path)
    assert [j["id"] for j in json.loads(done.stdout)] == ["j"]


# --- channels and templates (issue 12, item 3) -------------------------------------------------

EMAIL_JOURNEY = """\
id: welcome
name: Welcome
trigger:
  type: event
  event: Signed Up
steps:
  hello:
    type: send
    channel: {channel}
    template: {template}
"""

EMAIL_TEMPLATE = "channel: email\nsubject: Hi\nbody: <p>Hello</p>\n"
PUSH_TEMPLATE = "channel: push\ntitle: Hi\nbody: Hello\n"


def test_validate_checks_templates_in_a_folder(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    write(folder / "welcome-1.yaml", EMAIL_TEMPLATE)
    write(folder / "ping.yaml", PUSH_TEMPLATE)
    write(tmp_path / "a.yaml", EMAIL_JOURNEY.format(channel="email", template="welcome-1"))
    write(tmp_path / "b.yaml", EMAIL_JOURNEY.format(channel="email", template="welcom-1").replace("welcome", "b", 1))
    write(tmp_path / "c.yaml", EMAIL_JOURNEY.format(channel="push", template="welcome-1").replace("welcome", "c", 1))
    done = run(["journeys", "validate", "a.yaml", "b.yaml", "c.yaml", "--templates", "templates"], env, tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "b.yaml:10: steps.hello.template: no template 'welcom-1' in templates (did you mean 'welcome-1'?)",
        "c.yaml:10: steps.hello.template: template 'welcome-1' is an email template, and this step sends push",
        "3 files, 1 valid journey: 2 errors, 0 warnings",
    ]
    assert "templates were not checked" not in done.stderr
    ok = run(["journeys", "validate", "a.yaml", "--templates", "templates"], env, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_validate_without_templates_says_they_were_not_checked(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", EMAIL_JOURNEY.format(channel="email", template="nowhere"))
    done = run(["journeys", "validate", "b.yaml"], env, tmp_path)
    assert done.returncode == 0, done.stdout
    assert "note: templates were not checked (give --templates DIR to check them)" in done.stderr


def test_validate_refuses_unknown_channels(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", EMAIL_JOURNEY.format(channel="emial", template="t"))
    write(tmp_path / "b.yaml", EMAIL_JOURNEY.format(channel="sms", template="t").replace("welcome", "b", 1))
    done = run(["journeys", "validate", "a.yaml", "b.yaml"], env, tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines()[:2] == [
        "a.yaml:9: steps.hello.channel: unknown channel 'emial': the channels there are email, push, webhook, log "
        "(did you mean 'email'?)",
        "b.yaml:9: steps.hello.channel: unknown channel 'sms': the channels there are email, push, webhook, log",
    ]
    # A name the deployment serves with the log channel is a channel.
    env["NUDGEFLOW_LOG_CHANNELS"] = "email,push,sms"
    done = run(["journeys", "validate", "b.yaml"], env, tmp_path)
    assert done.returncode == 0, done.stdout


def test_a_bad_templates_folder_is_an_error(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", EMAIL_JOURNEY.format(channel="email", template="t"))
    done = run(["journeys", "validate", "a.yaml", "--templates", "nowhere"], env, tmp_path)
    assert done.returncode == 1 and "--templates nowhere: not a folder" in done.stderr


def test_apply_and_publish_check_the_workspace_templates(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = database_url
    ws = workspace(env, tmp_path)
    write(tmp_path / "welcome.yaml", EMAIL_JOURNEY.format(channel="email", template="welcome-1"))
    done = run(["journeys", "apply", "welcome.yaml", "-w", ws, "--publish"], env, tmp_path)
    assert done.returncode == 1
    assert "welcome.yaml:10: steps.hello.template: no template 'welcome-1' in this workspace" in done.stderr
    assert "nothing applied: 1 error" in done.stderr
    assert listed(env, tmp_path, ws) == {}

    folder = tmp_path / "templates"
    folder.mkdir()
    write(folder / "welcome-1.yaml", PUSH_TEMPLATE)
    assert run(["templates", "apply", "templates", "-w", ws], env, tmp_path).returncode == 0
    done = run(["journeys", "apply", "welcome.yaml", "-w", ws], env, tmp_path)
    assert done.returncode == 1
    assert "steps.hello.template: template 'welcome-1' is a push template, and this step sends email" in done.stderr

    # A draft stored without the workspace's templates known (the store does not read them)
    # is refused at publish.
    from nudgeflow.model.journey_checks import load_text
    from nudgeflow.model.journeys import Journey
    from nudgeflow.store import journeys as journey_store
    from nudgeflow.store.database import create_db_engine

    engine = create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            definition = Journey.model_validate(
                dict(load_text(EMAIL_JOURNEY.format(channel="email", template="welcome-1"))[0][1])
            )
            journey_store.apply_draft(conn, ws, definition, 1)
    finally:
        engine.dispose()
    done = run(["journeys", "publish", "welcome", "-w", ws], env, tmp_path)
    assert done.returncode == 1
    assert (
        "journey welcome: steps.hello.template: template 'welcome-1' is a push template, and this step sends email"
    ) in done.stderr
    assert "not published: 1 error" in done.stderr and "Traceback" not in done.stderr
    assert listed(env, tmp_path, ws)["welcome"]["status"] == "draft"

    write(tmp_path / "welcome.yaml", EMAIL_JOURNEY.format(channel="email", template="welcome-2"))
    write(folder / "welcome-2.yaml", EMAIL_TEMPLATE)
    assert run(["templates", "apply", "templates/welcome-2.yaml", "-w", ws], env, tmp_path).returncode == 0
    done = run(["journeys", "apply", "welcome.yaml", "-w", ws, "--publish"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["welcome: draft updated, published version 1 (live)"]


# --- publishing and the past ------------------------------------------------------------------

WINBACK = """\
id: winback
name: Win back
trigger:
  type: inactivity
  window: 7d
steps:
  mark:
    type: update_profile
    set: {winback: true}
"""


def _quiet_people(database_url: str, ws: str, count: int) -> None:
    """`count` people first seen, and last active, 30 days ago (ingested at that time)."""
    from datetime import datetime, timedelta

    from nudgeflow.core.clock import VirtualClock
    from nudgeflow.model.events import normalize, parse_message
    from nudgeflow.store import database
    from nudgeflow.store.group_commit import GroupCommitter

    clock = VirtualClock(datetime.now(UTC) - timedelta(days=30))
    db = database.create_db_engine(database_url)
    writer = GroupCommitter(db, clock)
    writer.start()
    try:
        records = [
            normalize(
                parse_message(
                    {
                        "type": "track",
                        "userId": f"quiet-{ws}-{i}",
                        "event": "Session Started",
                        "messageId": f"m-{ws}-{i}",
                    }
                ),
                clock.now(),
                max_event_bytes=32 * 1024,
            )
            for i in range(count)
        ]
        writer.submit_events(ws, records).result(timeout=60)
    finally:
        writer.stop()
        db.dispose()


def test_publish_counts_who_would_enter_and_asks_for_yes_above_the_threshold(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = database_url
    ws = workspace(env, tmp_path)
    _quiet_people(database_url, ws, 3)
    write(tmp_path / "winback.yaml", WINBACK)
    assert run(["journeys", "apply", "winback.yaml", "-w", ws], env, tmp_path).returncode == 0

    refused = run(["journeys", "publish", "winback", "-w", ws, "--confirm-above", "2"], env, tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.splitlines() == ["winback: 3 people would enter at once (of 3 profiles looked at)"]
    assert "--yes" in refused.stderr and "--from-now" in refused.stderr and "Traceback" not in refused.stderr
    assert listed(env, tmp_path, ws)["winback"]["status"] == "draft"

    done = run(["journeys", "publish", "winback", "-w", ws, "--confirm-above", "2", "--yes"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("winback: published version 1 (live); the engine looks at")
    assert listed(env, tmp_path, ws)["winback"]["status"] == "live"


def test_publish_from_now_skips_the_count_and_the_backfill(
    env: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = database_url
    ws = workspace(env, tmp_path)
    _quiet_people(database_url, ws, 3)
    write(tmp_path / "winback.yaml", WINBACK)
    assert run(["journeys", "apply", "winback.yaml", "-w", ws], env, tmp_path).returncode == 0
    done = run(["journeys", "publish", "winback", "-w", ws, "--confirm-above", "0", "--from-now"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["winback: published version 1 (live), from now on (no backfill)"]
    from sqlalchemy import create_engine, text

    from nudgeflow.store.database import normalize_url

    db = create_engine(normalize_url(database_url))
    with db.connect() as conn:
        jobs = conn.execute(
            text("SELECT COUNT(*) FROM journey_backfills WHERE journey_id = 'winback' AND workspace_id = :ws"),
            {"ws": ws},
        ).scalar()
    db.dispose()
    assert jobs == 0
