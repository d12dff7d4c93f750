"""`nudgeflow experiments list|resume`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nudgeflow.store import database
from nudgeflow.store import experiment_decisions as decisions
from tests.cli.support import run, workspace, write

OFFER = """\
id: offer
name: Offer
trigger: {type: event, event: Signed Up}
steps:
  mail:
    type: send
    channel: log
    guardrails: pause
    on_winner: route_to_winner
    variants:
      - {name: A, template: offer-a, weight: 1}
      - {name: B, template: offer-b, weight: 1}
"""
WHY = "'B' unsubscribe rate 3.00 % is credibly above control 'A''s 0.20 %"


def test_list_and_resume(env: dict[str, str], tmp_path: Path) -> None:
    ws = workspace(env, tmp_path)
    write(tmp_path / "offer.yaml", OFFER)
    done = run(["journeys", "apply", "offer.yaml", "--workspace", ws, "--publish"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    none = run(["experiments", "list", "--workspace", ws], env, tmp_path)
    assert none.returncode == 0 and "no experiment decisions in force" in none.stderr

    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    with engine.begin() as conn:
        decisions.record(conn, ws, "offer", 1, "mail", "B", "paused", WHY, 1_767_225_600_000)
    engine.dispose()

    listed = run(["experiments", "list", "--workspace", ws, "--json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["journey_id"], row["step"], row["arm"], row["action"], row["reason"]) == (
        "offer",
        "mail",
        "B",
        "paused",
        WHY,
    )
    table = run(["experiments", "list", "--workspace", ws], env, tmp_path)
    assert "paused" in table.stdout and "2026-01-01T00:00:00Z" in table.stdout and "credibly above" in table.stdout

    # The journey report's experiment section shows the decision beside the counts it judged.
    report = run(["report", "journey", "offer", "--workspace", ws, "--json"], env, tmp_path)
    (section,) = json.loads(report.stdout)["experiments"]
    assert section["decisions"] == [
        {"arm": "B", "action": "paused", "reason": WHY, "decided_at": "2026-01-01T00:00:00Z"}
    ]
    printed = run(["report", "journey", "offer", "--workspace", ws], env, tmp_path)
    assert f"decided 2026-01-01T00:00:00Z: 'B' paused — {WHY}" in printed.stdout

    missing = run(["experiments", "resume", "offer", "nope", "--workspace", ws], env, tmp_path)
    assert missing.returncode == 1 and "no experiment decision on step 'nope'" in missing.stderr
    resumed = run(
        ["experiments", "resume", "offer", "mail", "--workspace", ws, "--note", "checked the copy"], env, tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "offer mail: 1 decision cleared (B no longer paused)"
    again = run(["experiments", "resume", "offer", "mail", "--workspace", ws], env, tmp_path)
    assert again.returncode == 0 and "nothing in force" in again.stdout

    assert json.loads(run(["experiments", "list", "--workspace", ws, "--json"], env, tmp_path).stdout) == []
    report = run(["report", "journey", "offer", "--workspace", ws, "--json"], env, tmp_path)
    assert json.loads(report.stdout)["experiments"][0]["decisions"] == []
    (kept,) = json.loads(run(["experiments", "list", "--workspace", ws, "--all", "--json"], env, tmp_path).stdout)
    assert kept["cleared_note"] == "checked the copy" and kept["cleared_at_ms"] is not None


def test_settings_on_a_plain_send_are_refused_by_validate(env: dict[str, str], tmp_path: Path) -> None:
    write(
        tmp_path / "plain.yaml",
        "id: plain\nname: Plain\ntrigger: {type: event, event: Signed Up}\n"
        "steps:\n  mail: {type: send, channel: log, template: t, on_winner: route_to_winner}\n",
    )
    done = run(["journeys", "validate", "plain.yaml"], env, tmp_path)
    assert done.returncode == 1
    assert "steps.mail.on_winner: on_winner applies to experiments: a send step with `variants`, or a split" in (
        done.stdout + done.stderr
    )


def test_the_sample_ratio_line_names_the_runs_it_checked_after_a_decision() -> None:
    from nudgeflow.cli.experiment_table import experiment_lines

    reason = "sample ratio mismatch: recipients split 90.00 % (configured 50.00 %), 10.00 % (configured 50.00 %)"
    section: dict[str, Any] = {
        "sample_ratio": {"p_value": 1e-40, "mismatch": True, "reason": reason},
        "sample_ratio_runs": "every run assigned",
        "winner": {"reason": "no winner yet: the arms overlap"},
        "guardrail_breaches": [],
        "decisions": [],
    }
    assert experiment_lines(section)[0] == f"WARNING {reason}"
    # After a decision the check tests the runs assigned before it: a mismatch among them is
    # no decision's doing, and is warned of all the same.
    basis = "assigned before the step's first decision, 2026-01-01T00:00:00Z"
    section["sample_ratio_runs"] = basis
    section["decisions"] = [{"arm": "B", "action": "paused", "reason": WHY, "decided_at": "2026-01-01T00:00:00Z"}]
    lines = experiment_lines(section)
    assert lines[0] == f"WARNING {reason} (runs {basis})"
    assert lines[-1] == f"decided 2026-01-01T00:00:00Z: 'B' paused — {WHY}"
    section["sample_ratio"] = {"p_value": 0.5, "mismatch": False, "reason": None}
    assert experiment_lines(section)[0] == f"sample ratio: as configured (chi-square p = 0.5) (runs {basis})"
