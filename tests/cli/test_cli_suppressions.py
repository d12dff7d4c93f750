"""`nudgeflow suppressions add|remove|list`, a real process per command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import NUDGEFLOW


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_add_list_remove(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
    env["NUDGEFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["COLUMNS"] = "200"
    created = run(["workspace", "create", "shop", "--json"], env, tmp_path)
    assert created.returncode == 0, created.stderr
    ws = json.loads(created.stdout)["workspace_id"]

    added = run(
        ["suppressions", "add", "Ada@Example.com", "bob@example.com", "-w", ws, "--detail", "by phone"], env, tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "2 added, 0 already suppressed (manual now)"
    again = run(["suppressions", "add", "ada@example.com", "-w", ws, "--reason", "complaint"], env, tmp_path)
    assert again.stdout.strip() == "0 added, 1 already suppressed (complaint now)"

    listed = run(["suppressions", "list", "-w", ws, "--json"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [(s["address"], s["reason"], s["detail"]) for s in json.loads(listed.stdout)] == [
        ("ada@example.com", "complaint", None),
        ("bob@example.com", "manual", "by phone"),
    ]
    table = run(["suppressions", "list", "-w", ws], env, tmp_path)
    assert "ada@example.com" in table.stdout and "complaint" in table.stdout

    removed = run(["suppressions", "remove", "ada@example.com", "carol@example.com", "-w", ws], env, tmp_path)
    assert removed.returncode == 1 and removed.stdout.strip() == "1 removed"
    assert "not suppressed: carol@example.com" in removed.stderr
    assert [
        s["address"] for s in json.loads(run(["suppressions", "list", "-w", ws, "--json"], env, tmp_path).stdout)
    ] == ["bob@example.com"]
    unknown = run(["suppressions", "list", "-w", "ws_nope"], env, tmp_path)
    assert unknown.returncode == 1 and "no workspace 'ws_nope'" in unknown.stderr
