"""`nudgeflow simulate --policies FILE --segments PATH`, run as a user runs it: statuses and
deferred_from in --json, the pressure report and segment sizes; and without either option,
the output of before, byte for byte."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.support import NUDGEFLOW

EXAMPLES = Path(__file__).with_name("data") / "simulate-examples"

# Five journeys on one Signed Up, priorities 1..5 as listed; `drop` drops on collision.
FIVE = {"a": 1, "b": 5, "c": 3, "drop": 2, "e": 4}
POLICIES = "collision: {window: 10m}\n"
SEGMENT = """\
id: signed-up
name: Signed up
when: {performed: Signed Up, within: 30d, count: 1}
"""
EVENTS = [
    {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "timestamp": "2026-03-02T09:00:00Z"},
    {"type": "track", "userId": "ada", "event": "Signed Up", "timestamp": "2026-03-02T09:00:01Z"},
]


def setup(tmp_path: Path) -> list[str]:
    folder = tmp_path / "journeys"
    folder.mkdir()
    for id, priority in FIVE.items():
        collide = ", on_collision: drop" if id == "drop" else ""
        (folder / f"{id}.yaml").write_text(
            f"id: {id}\nname: {id}\npriority: {priority}\ntrigger: {{type: event, event: Signed Up}}\n"
            f"steps:\n  hello: {{type: send, channel: email, template: {id}-hello{collide}}}\n"
        )
    (tmp_path / "policies.yaml").write_text(POLICIES)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "signed-up.yaml").write_text(SEGMENT)
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return ["--journeys", str(folder), "--events", str(tmp_path / "events.jsonl")]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NUDGEFLOW, "simulate", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines and set(lines[-1]) == {"summary"}
    return lines[:-1], lines[-1]["summary"]


def test_five_journeys_on_one_event_plan_one_email_and_say_why_not_the_others(
    env: dict[str, str], tmp_path: Path
) -> None:
    base = setup(tmp_path)
    done = run([*base, "--policies", str(tmp_path / "policies.yaml"), "--json", "--horizon", "0"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines, summary = parse(done.stdout)
    assert [(m["journey"], m["status"], m.get("reason"), m["at"]) for m in lines] == [
        ("b", "planned", None, "2026-03-02T09:00:01.000Z"),
        ("drop", "dropped", "collision:b", "2026-03-02T09:00:01.000Z"),
        # still held when the replay ended: at the time they are decided again
        ("e", "deferred", "collision:b", "2026-03-02T09:10:01.000Z"),
        ("c", "deferred", "collision:b", "2026-03-02T09:10:01.000Z"),
        ("a", "deferred", "collision:b", "2026-03-02T09:10:01.000Z"),
    ]
    assert all(m["deferred_from"] == "2026-03-02T09:00:01.000Z" for m in lines if m["status"] == "deferred")
    assert "deferred_from" not in lines[0] and "deferred_from" not in lines[1]
    assert list(lines[1]) == [*list(lines[0]), "reason"]  # a dropped line: a planned one's keys, and why
    assert summary["messages"] == 1
    assert summary["pressure"]["collisions"] == [
        {"winner": "b", "loser": loser, "deferred": int(loser != "drop"), "dropped": int(loser == "drop")}
        for loser in ("a", "c", "drop", "e")
    ]


def test_deferred_messages_appear_at_their_new_time_with_deferred_from(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    done = run([*base, "--policies", str(tmp_path / "policies.yaml"), "--json", "--horizon", "1h"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines, summary = parse(done.stdout)
    # Released together at 09:10:01 the three are decided again: e (priority 4) goes, and so on.
    assert [(m["journey"], m["status"], m["at"], m.get("deferred_from")) for m in lines] == [
        ("b", "planned", "2026-03-02T09:00:01.000Z", None),
        ("drop", "dropped", "2026-03-02T09:00:01.000Z", None),
        ("e", "planned", "2026-03-02T09:10:01.000Z", "2026-03-02T09:00:01.000Z"),
        ("c", "planned", "2026-03-02T09:20:01.000Z", "2026-03-02T09:00:01.000Z"),
        ("a", "planned", "2026-03-02T09:30:01.000Z", "2026-03-02T09:00:01.000Z"),
    ]
    planned = lines[0]
    assert list(planned) == [
        *("at", "user_id", "anonymous_id", "journey", "version", "step", "channel", "template", "variant", "run_id"),
        "status",
    ]
    assert summary["pressure"]["per_person_week"]["channels"]["email"] == {
        "people": 1,
        "person_weeks": 1,
        "messages": 4,
        "p50": 4,
        "p90": 4,
        "max": 4,
    }
    assert [(c["winner"], c["loser"]) for c in summary["pressure"]["collisions"]] == [
        ("b", "a"),
        ("b", "c"),
        ("b", "drop"),
        ("b", "e"),
        ("c", "a"),
        ("e", "a"),
        ("e", "c"),
    ]


def test_the_tables_add_the_pressure_report_and_segment_sizes(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    args = [*base, "--policies", str(tmp_path / "policies.yaml"), "--segments", str(tmp_path / "segments")]
    done = run([*args, "--horizon", "1h"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for title in (
        "Messages per person per channel per ISO week (UTC)",
        "Frequency cap hits by rule",
        "Collisions (winner ← loser)",
        "Quiet hours by channel",
        "Segments at the end of the replay",
    ):
        assert title in out
    assert re.search(r"│ b ← drop\s+│\s+0 │\s+1 │", out)
    assert re.search(r"│ signed-up\s+│\s+1 │\s+1 │\s+0 │", out)
    assert "deferred from" in out  # the planned messages' table shows when they were first wanted
    _lines, summary = parse(run([*args, "--json"], env, tmp_path).stdout)
    assert summary["segments"] == {"signed-up": {"members": 0, "entered": 1, "exited": 1}}  # 30d horizon


def test_segments_alone_give_statuses_and_sizes(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    done = run(
        [*base, "--segments", str(tmp_path / "segments" / "signed-up.yaml"), "--json", "--horizon", "0"], env, tmp_path
    )
    lines, summary = parse(done.stdout)
    assert [m["status"] for m in lines] == ["planned"] * 5
    assert summary["segments"] == {"signed-up": {"members": 1, "entered": 1, "exited": 0}}


def test_bad_policies_or_segments_stop_before_the_replay(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    (tmp_path / "bad.yaml").write_text("collision: {window: soon}\n")
    done = run([*base, "--policies", str(tmp_path / "bad.yaml")], env, tmp_path)
    assert done.returncode == 1
    assert "bad.yaml:1: collision.window:" in done.stderr and "no simulation" in done.stderr
    (tmp_path / "segments" / "other.yaml").write_text("id: other\nname: Other\nwhen: {segment: missing}\n")
    done = run([*base, "--segments", str(tmp_path / "segments")], env, tmp_path)
    assert done.returncode == 1
    assert "segment 'missing' is not among the segments given" in done.stderr


def test_without_policies_or_segments_the_output_is_unchanged(env: dict[str, str]) -> None:
    # A frozen copy of the examples' journeys and events, and what `simulate` printed for them
    # before --policies and --segments existed (the tables' timing masked).
    base = ["--journeys", "journeys/", "--events", "events.jsonl"]
    done = run([*base, "--json"], env, EXAMPLES)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (EXAMPLES / "expected.jsonl").read_text()
    done = run(base, env, EXAMPLES)
    timing = re.compile(r"[0-9.]+ s \([0-9,]+ lines/s\)$", re.MULTILINE)
    assert timing.sub("<seconds>", done.stdout) == (EXAMPLES / "expected.txt").read_text()


def test_a_bad_segment_is_reported_with_its_line(env: dict[str, str], tmp_path: Path) -> None:
    base = setup(tmp_path)
    (tmp_path / "segments" / "bad.yaml").write_text("id: bad\nname: Bad\nwhen: {performed: Ping, within: 0d}\n")
    done = run([*base, "--segments", str(tmp_path / "segments")], env, tmp_path)
    assert done.returncode == 1
    assert "bad.yaml:3: when" in done.stderr and "no simulation" in done.stderr
