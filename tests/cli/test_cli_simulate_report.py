"""`nudgeflow simulate --report`, run as a user runs it: each journey's report after the
usual output (what a simulation cannot know shown as n/k), in the --json summary line, and
the output without --report untouched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support import NUDGEFLOW

JOURNEY = """\
id: welcome
name: Welcome
trigger: {type: event, event: Signed Up}
holdout: 0.3
goal: {event: Order Completed, within: 7d, revenue: revenue}
steps:
  hello: {type: send, channel: email, template: welcome-1}
"""


def setup(tmp_path: Path) -> list[str]:
    (tmp_path / "welcome.yaml").write_text(JOURNEY)
    lines = []
    for i in range(30):
        at = f"2026-03-02T09:{i:02d}:00Z"
        lines.append({"type": "track", "userId": f"u{i}", "event": "Signed Up", "timestamp": at})
        if i % 3 == 0:
            lines.append(
                {
                    "type": "track",
                    "userId": f"u{i}",
                    "event": "Order Completed",
                    "properties": {"revenue": 10},
                    "timestamp": f"2026-03-03T09:{i:02d}:00Z",
                }
            )
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return ["--journeys", str(tmp_path / "welcome.yaml"), "--events", str(tmp_path / "events.jsonl")]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, "simulate", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def last_line(stdout: str) -> tuple[list[str], dict[str, Any]]:
    lines = stdout.splitlines()
    return lines[:-1], json.loads(lines[-1])["summary"]


def test_json_adds_the_report_to_the_summary_line_and_nothing_else(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    plain = run([*base, "--json"], env, tmp_path)
    with_report = run([*base, "--json", "--report", "--by", "step"], env, tmp_path)
    assert plain.returncode == 0 and with_report.returncode == 0, plain.stderr + with_report.stderr
    plain_lines, plain_summary = last_line(plain.stdout)
    lines, summary = last_line(with_report.stdout)
    assert lines == plain_lines  # the message lines, byte for byte
    report = summary.pop("report")
    assert summary == plain_summary and "report" not in plain_summary
    found = report["journeys"]["welcome"]
    journey = plain_summary["journeys"]["welcome"]
    totals = found["totals"]
    # The simulator's own summary counts holdout runs among those entered; the report apart.
    assert totals["entered"] + totals["held_out"] == journey["entered"] == 30
    assert totals["held_out"] == journey["holdout"] and totals["sent"] == journey["messages"]["hello"]
    assert totals["conversions"] + totals["held_out_conversions"] == journey["converted"] == 10
    assert totals["delivered"] is None and totals["unique_opens"] is None and "delivered" in found["not_known"]
    assert [row["step"] for row in found["rows"]] == ["", "hello"]
    assert found["lift"]["conversion"]["treated_people"] == totals["entered"]
    assert report["overview"]["workspace"]["unique_conversions"] == totals["conversions"]


def test_the_table_shows_the_report_with_what_is_not_known(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    done = run([*base, "--report"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Report: welcome (simulated)" in done.stdout
    assert "n/k" in done.stdout and "n/k: not known from a simulation" in done.stdout
    plain = run(base, env, tmp_path)
    assert "Report:" not in plain.stdout and "n/k" not in plain.stdout


def test_by_needs_report_and_a_known_dimension(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    done = run([*base, "--by", "step"], env, tmp_path)
    assert done.returncode != 0 and "--by: only with --report" in done.stderr
    done = run([*base, "--report", "--by", "profile"], env, tmp_path)
    assert done.returncode != 0 and "--by: 'profile' is not one of" in done.stderr
