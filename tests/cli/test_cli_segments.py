"""`nudgeflow segments …`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
from pathlib import Path

from nudgeflow.model.segments import segment_json_schema
from nudgeflow.store import database
from nudgeflow.store import segments as store
from tests.cli.support import create_workspace, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "segments"

BUYERS = """\
id: buyers
name: Recent buyers
when:
  performed: Order Completed
  within: {within}
"""

PRO = """\
id: pro-buyers
name: Pro buyers
when:
  all:
    - {trait: plan, value: pro}
    - {segment: buyers}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_examples_validate_without_a_database(env: dict[str, str], tmp_path: Path) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    done = run(["segments", "validate", str(EXAMPLES)], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    count = len(list(EXAMPLES.glob("*.yaml")))
    assert done.stdout.strip() == f"{count} files, {count} valid segments: 0 errors, 0 warnings"


def test_validate_names_file_line_and_path(env: dict[str, str], tmp_path: Path) -> None:
    write(tmp_path / "bad.yaml", BUYERS.format(within="thirty days"))
    write(tmp_path / "pro.yaml", PRO)
    write(tmp_path / "loop.yaml", "id: a\nname: A\nwhen: {segment: b}\n---\nid: b\nname: B\nwhen: {segment: a}\n")
    done = run(["segments", "validate", "bad.yaml", "pro.yaml", "loop.yaml"], env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bad.yaml:5: when.within: 'thirty days' is not a duration")
    # Without a database, a segment not in the files may be live in the workspace: a warning.
    assert "pro.yaml:6: when.all.1.segment: warning: no segment 'buyers' in these files" in done.stdout
    assert "loop.yaml:3: when: segments refer to each other in a circle: a -> b -> a" in done.stdout
    assert lines[-1] == "3 files, 1 valid segment: 2 errors, 1 warning"


def test_apply_list_show_members_archive(env: dict[str, str], tmp_path: Path, database_url: str) -> None:
    env["NUDGEFLOW_DATABASE_URL"] = database_url
    ws = create_workspace(env, tmp_path)["workspace_id"]
    write(tmp_path / "pro.yaml", PRO)
    done = run(["segments", "apply", "pro.yaml", "-w", ws], env, tmp_path)
    assert done.returncode == 1
    assert "pro.yaml:6: when.all.1.segment: no segment 'buyers'" in done.stderr

    write(tmp_path / "buyers.yaml", BUYERS.format(within="30d"))
    done = run(["segments", "apply", "pro.yaml", "buyers.yaml", "-w", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "buyers: created, version 1 live; the engine computes it",
        "pro-buyers: created, version 1 live; the engine computes it",
    ]
    done = run(["segments", "apply", "buyers.yaml", "-w", ws], env, tmp_path)
    assert done.stdout.splitlines() == ["buyers: version 1 stays live (nothing changed)"]
    write(tmp_path / "buyers.yaml", BUYERS.format(within="60d"))
    done = run(["segments", "apply", "buyers.yaml", "-w", ws], env, tmp_path)
    assert done.stdout.splitlines() == ["buyers: changed, version 2 live; the engine computes it"]

    listed = json.loads(run(["segments", "list", "-w", ws, "--json"], env, tmp_path).stdout)
    assert [(s["id"], s["live_version"], s["computed"]["status"]) for s in listed] == [
        ("buyers", 2, "pending"),
        ("pro-buyers", 1, "pending"),
    ]

    engine = database.create_db_engine(database_url)
    try:
        with engine.begin() as conn:
            store.write_changes(conn, {(ws, "buyers", f"p{n}"): (True, 1_000 + n) for n in range(5)})
    finally:
        engine.dispose()
    shown = run(["segments", "show", "buyers", "-w", ws], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [
        "buyers: Recent buyers (live, version 2)",
        "size: 5 computing version 2: 0 people looked at so far",
    ]
    as_json = json.loads(run(["segments", "show", "buyers", "-w", ws, "--json"], env, tmp_path).stdout)
    assert as_json["size"] == 5 and as_json["definition"]["when"]["within"] == "60d"

    first = run(["segments", "members", "buyers", "-w", ws, "--limit", "3"], env, tmp_path)
    assert [line.split()[0] for line in first.stdout.splitlines()] == ["p0", "p1", "p2"]
    assert "next page: --after p2" in first.stderr
    rest = run(["segments", "members", "buyers", "-w", ws, "--limit", "3", "--after", "p2"], env, tmp_path)
    assert [line.split()[0] for line in rest.stdout.splitlines()] == ["p3", "p4"]
    assert "next page" not in rest.stderr
    full = run(["segments", "members", "buyers", "-w", ws, "--limit", "2", "--after", "p2"], env, tmp_path)
    assert [line.split()[0] for line in full.stdout.splitlines()] == ["p3", "p4"]
    assert "next page" not in full.stderr  # the last page, full: no empty page after it

    refused = run(["segments", "archive", "buyers", "-w", ws], env, tmp_path)
    assert refused.returncode == 1 and "used by segment 'pro-buyers'" in refused.stderr
    assert run(["segments", "archive", "pro-buyers", "-w", ws], env, tmp_path).stdout.strip() == "pro-buyers: archived"
    assert run(["segments", "archive", "buyers", "-w", ws], env, tmp_path).stdout.strip() == "buyers: archived"
    assert run(["segments", "show", "nothing", "-w", ws], env, tmp_path).returncode == 1


def test_schema_command_prints_the_committed_schema(env: dict[str, str], tmp_path: Path) -> None:
    done = run(["segments", "schema"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == segment_json_schema()
    committed = (ROOT / "schema" / "segment.schema.json").read_text()
    assert json.loads(committed) == segment_json_schema(), (
        "schema/segment.schema.json is stale: run `nudgeflow segments schema > schema/segment.schema.json`"
    )
    assert committed == done.stdout
