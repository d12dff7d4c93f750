"""`nudgeflow policies …`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
from pathlib import Path

from nudgeflow.model.policies import policies_json_schema
from tests.cli.support import create_workspace, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policies.yaml"

BROKEN = """\
frequency_caps:
  - id: daily
    channel: email
    limt: 2
    window: 1 day
quiet_hours:
  - channel: push
    start: "21:00"
    end: "08:00"
    action: later
"""


def test_the_example_is_valid(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["policies", "validate", str(EXAMPLE)], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("valid: 0 errors")


def test_validate_names_every_problem_with_its_line(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(BROKEN)
    done = run(["policies", "validate", str(path)], env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"{path}:2: frequency_caps.0: missing required key 'limit'" in lines
    assert f"{path}:4: frequency_caps.0.limt: unknown key 'limt' (did you mean 'limit'?)" in lines
    assert any(line.startswith(f"{path}:5: frequency_caps.0.window: '1 day' is not a duration") for line in lines)
    assert f"{path}:10: quiet_hours.0.action: unknown action 'later' (use one of defer, drop)" in lines
    assert lines[-1] == f"{path}: not valid: 4 errors"


def test_validate_refuses_what_is_not_a_policies_file(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "policies.txt").write_text("collision: {window: 10m}\n")
    (tmp_path / "two.yaml").write_text("collision: {window: 10m}\n---\nmax_deferral: 1d\n")
    (tmp_path / "bad.yaml").write_text("frequency_caps: [\n")
    assert "not a policies file" in run(["policies", "validate", "policies.txt"], env, tmp_path).stdout
    assert "one policies document is expected, not 2" in run(["policies", "validate", "two.yaml"], env, tmp_path).stdout
    assert "not valid YAML" in run(["policies", "validate", "bad.yaml"], env, tmp_path).stdout
    assert "cannot read the file" in run(["policies", "validate", "missing.yaml"], env, tmp_path).stdout


def test_apply_show_and_history(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    none = run(["policies", "show", "--workspace", ws, "--json"], env, tmp_path)
    assert none.returncode == 0 and json.loads(none.stdout)["version"] == 0
    assert json.loads(none.stdout)["policies"]["frequency_caps"] == []

    applied = run(["policies", "apply", str(EXAMPLE), "--workspace", ws], env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("policies: version 1 applied")
    again = run(["policies", "apply", str(EXAMPLE), "--workspace", ws], env, tmp_path)
    assert again.stdout.strip() == "policies: unchanged (version 1 stays in force)"

    shown = run(["policies", "show", "--workspace", ws], env, tmp_path)
    assert shown.returncode == 0
    header, _, source = shown.stdout.partition("\n")
    assert header.startswith("# version 1, applied ") and " by cli" in header
    assert source == EXAMPLE.read_text()  # as written, comments and all

    doc = json.loads(run(["policies", "show", "--workspace", ws, "--json"], env, tmp_path).stdout)
    assert doc["version"] == 1 and doc["updated_by"].startswith("cli")
    assert [c["id"] for c in doc["policies"]["frequency_caps"]] == ["email-daily", "email-weekly", "push-4h"]
    assert doc["policies"]["frequency_caps"][0]["category"] == "marketing"  # defaults spelled out

    smaller = tmp_path / "smaller.yaml"
    smaller.write_text("collision:\n  window: 5m\n")
    assert run(["policies", "apply", str(smaller), "--workspace", ws], env, tmp_path).returncode == 0
    history = json.loads(run(["policies", "history", "--workspace", ws, "--json"], env, tmp_path).stdout)
    assert [h["version"] for h in history] == [2, 1]
    first = json.loads(run(["policies", "show", "--workspace", ws, "--json", "--version", "1"], env, tmp_path).stdout)
    assert first["version"] == 1 and len(first["policies"]["frequency_caps"]) == 3
    missing = run(["policies", "show", "--workspace", ws, "--version", "9"], env, tmp_path)
    assert missing.returncode == 1 and "no version 9" in missing.stderr


def test_apply_changes_nothing_when_the_file_has_errors(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    path = tmp_path / "policies.yaml"
    path.write_text(BROKEN)
    done = run(["policies", "apply", str(path), "--workspace", ws], env, tmp_path)
    assert done.returncode == 1
    assert "frequency_caps.0.limt: unknown key 'limt'" in done.stderr and "nothing applied: 4 errors" in done.stderr
    assert json.loads(run(["policies", "show", "--workspace", ws, "--json"], env, tmp_path).stdout)["version"] == 0
    unknown = run(["policies", "apply", str(EXAMPLE), "--workspace", "ws_nope"], env, tmp_path)
    assert unknown.returncode == 1 and "no workspace 'ws_nope'" in unknown.stderr


def test_schema_command_prints_the_committed_schema(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["policies", "schema"], env, tmp_path)
    assert done.returncode == 0
    assert json.loads(done.stdout) == policies_json_schema()
    committed = (ROOT / "schema" / "policies.schema.json").read_text()
    assert json.loads(committed) == policies_json_schema(), (
        "schema/policies.schema.json is stale: run `nudgeflow policies schema > schema/policies.schema.json`"
    )
