"""`nudgeflow simulate`, run as a user runs it: a real process per command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cli.simulate_data import WELCOME
from tests.support import NUDGEFLOW

PUSH_JSON = {
    "id": "level-up",
    "name": "Level up",
    "trigger": {"type": "event", "event": "Level Completed"},
    "entry": {"reentry": "always"},
    "steps": {"congrats": {"type": "send", "channel": "push", "template": "level-congrats"}},
}

EVENTS: list[dict[str, Any]] = [
    {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "timestamp": "2026-03-02T09:00:00Z"},
    {"type": "track", "userId": "ada", "event": "Signed Up", "timestamp": "2026-03-02T09:00:01Z"},
    {
        "type": "track",
        "userId": "ada",
        "event": "Product Added",
        "properties": {"cart_id": "c1", "price": 20},
        "timestamp": "2026-03-02T09:10:00Z",
    },
    {
        "type": "track",
        "anonymousId": "anon-1",
        "event": "Product Added",
        "properties": {"cart_id": "c2"},
        "timestamp": "2026-03-02T11:00:00Z",
    },
    {
        "type": "track",
        "userId": "bob",
        "event": "Product Added",
        "properties": {"cart_id": "c3"},
        "timestamp": "2026-03-02T12:00:00Z",
    },
    {
        "type": "track",
        "userId": "bob",
        "event": "Order Completed",
        "properties": {"cart_id": "c3", "revenue": 55.5},
        "timestamp": "2026-03-02T15:00:00Z",
    },
]

# What the events above must plan, in time order, with a 30-day horizon.
EXPECTED = [
    ("2026-03-02T09:00:01.000Z", "ada", None, "welcome", "hello", "email", "welcome-1"),
    ("2026-03-02T10:10:00.000Z", "ada", None, "cart", "reminder", "email", "cart-1h"),
    ("2026-03-02T12:00:00.000Z", None, "anon-1", "cart", "reminder", "email", "cart-1h"),
    ("2026-03-02T13:00:00.000Z", "bob", None, "cart", "reminder", "email", "cart-1h"),
    ("2026-03-03T09:10:00.000Z", "ada", None, "cart", "objections", "email", "cart-24h"),
    ("2026-03-03T11:00:00.000Z", None, "anon-1", "cart", "objections", "email", "cart-24h"),
    ("2026-03-04T09:00:01.000Z", "ada", None, "welcome", "tips", "email", "welcome-2"),
]


def write_events(path: Path, events: list[dict[str, Any]], extra_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(e) for e in events]
    for at, text in sorted((extra_lines or {}).items()):
        lines.insert(at - 1, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGEFLOW, "simulate", *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120
    )


def parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert lines and set(lines[-1]) == {"summary"}, "the last line is the summary"
    return lines[:-1], lines[-1]["summary"]


def rows(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (m["at"], m["user_id"], m["anonymous_id"], m["journey"], m["step"], m["channel"], m["template"])
        for m in messages
    ]


def test_json_prints_one_object_per_planned_message_then_the_summary(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)

    assert done.returncode == 0, done.stderr
    messages, summary = parse(done.stdout)
    assert rows(messages) == EXPECTED
    for m in messages:
        assert {"at", "user_id", "journey", "step", "channel", "template", "variant", "run_id"} <= set(m)
        assert m["at"].endswith("Z") and m["run_id"]
    assert summary["events"] == 6 and summary["bad_lines"] == 0 and summary["messages"] == 7
    assert summary["first_event"] == "2026-03-02T09:00:00.000Z" and summary["last_event"] == "2026-03-02T15:00:00.000Z"
    assert summary["horizon"] == "2026-04-01T15:00:00.000Z"
    assert summary["journeys"]["welcome"] == {
        "entered": 1,
        "holdout": 0,
        "active": 0,
        "completed": 1,
        "exited": {},
        "converted": 0,
        "revenue": 0.0,
        "messages": {"hello": 1, "tips": 1},
        "failed": {},
    }
    assert summary["journeys"]["cart"] == {
        "entered": 3,
        "holdout": 0,
        "active": 0,
        "completed": 2,
        "exited": {"exit_event:Order Completed": 1},
        "converted": 1,
        "revenue": 55.5,
        "messages": {"reminder": 3, "objections": 2},
        "failed": {},
    }


def test_events_are_replayed_in_time_order_whatever_the_order_of_the_lines(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    events = write_events(tmp_path / "shuffled.jsonl", list(reversed(EVENTS)))
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows(parse(done.stdout)[0]) == EXPECTED


def test_events_from_standard_input(env: dict[str, str], tmp_path: Path, journeys: Path) -> None:
    text = "".join(json.dumps(e) + "\n" for e in reversed(EVENTS))
    done = run(["--journeys", str(journeys), "--events", "-", "--json"], env, tmp_path, stdin=text)
    assert done.returncode == 0, done.stderr
    assert rows(parse(done.stdout)[0]) == EXPECTED


def test_bad_lines_are_reported_by_number_and_skipped_and_the_exit_code_is_2(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    events = write_events(
        tmp_path / "events.jsonl",
        EVENTS,
        {
            2: "{not json",
            4: json.dumps({"type": "track", "event": "Product Added", "timestamp": "2026-03-02T09:30:00Z"}),  # no id
            5: "",  # blank lines are not lines of data
            7: json.dumps({"type": "track", "userId": "cy", "event": "Signed Up", "timestamp": "last tuesday"}),
            9: json.dumps({"type": "shout", "userId": "cy", "timestamp": "2026-03-02T09:30:00Z"}),
            10: json.dumps({"type": "track", "userId": "cy", "event": "Signed Up"}),  # no time to place it
        },
    )
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)

    assert done.returncode == 2, done.stderr
    messages, summary = parse(done.stdout)
    assert rows(messages) == EXPECTED
    assert summary["bad_lines"] == 5 and summary["lines"] == 11 and summary["events"] == 6
    stderr = " ".join(done.stderr.split())
    assert "line 2: invalid JSON" in stderr
    assert "line 4: invalid event: userId" in stderr
    assert "line 7: invalid event: timestamp" in stderr
    assert "line 9: invalid event: type" in stderr
    assert "line 10: invalid event: timestamp: required" in stderr
    assert "line 5" not in stderr
    assert "Traceback" not in done.stderr


def test_a_directory_and_files_of_each_kind_mixed(env: dict[str, str], tmp_path: Path, journeys: Path) -> None:
    other = tmp_path / "more"
    other.mkdir()
    (other / "level-up.json").write_text(json.dumps(PUSH_JSON))
    single = tmp_path / "welcome-only.yaml"
    single.write_text(WELCOME.replace("id: welcome", "id: welcome-copy"))
    events = write_events(
        tmp_path / "events.jsonl",
        [*EVENTS, {"type": "track", "userId": "ada", "event": "Level Completed", "timestamp": "2026-03-05T08:00:00Z"}],
    )
    # Several paths may follow --journeys, as a shell glob gives them.
    done = run(["--journeys", str(journeys), str(other), str(single), "--events", str(events), "--json"], env, tmp_path)

    assert done.returncode == 0, done.stderr
    messages, summary = parse(done.stdout)
    assert set(summary["journeys"]) == {"welcome", "cart", "level-up", "welcome-copy"}
    assert [(m["journey"], m["step"], m["channel"]) for m in messages if m["journey"] == "level-up"] == [
        ("level-up", "congrats", "push")
    ]
    assert summary["journeys"]["welcome-copy"]["messages"] == {"hello": 1, "tips": 1}


def test_invalid_journeys_are_refused_naming_file_line_and_path(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    broken = journeys / "broken.yaml"
    broken.write_text(
        WELCOME.replace("id: welcome", "id: broken")
        .replace("next: tips", "next: tipz")
        .replace("duration: 2d", "duration: two days")
    )
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)

    assert done.returncode == 1
    assert done.stdout == ""
    stderr = " ".join(done.stderr.split())
    assert f"{broken}:7: steps.wait.duration" in stderr
    assert "steps.wait.next" in stderr and "tipz" in stderr
    assert "Traceback" not in done.stderr


def test_a_journey_id_defined_twice_is_refused(env: dict[str, str], tmp_path: Path, journeys: Path) -> None:
    (journeys / "again.yaml").write_text(WELCOME)
    done = run(
        ["--journeys", str(journeys), "--events", str(write_events(tmp_path / "e.jsonl", EVENTS))], env, tmp_path
    )
    assert done.returncode == 1
    assert "'welcome' is already defined" in " ".join(done.stderr.split())


def test_missing_paths_fail_clearly(env: dict[str, str], tmp_path: Path, journeys: Path) -> None:
    done = run(["--journeys", str(tmp_path / "nope"), "--events", "x.jsonl"], env, tmp_path)
    assert done.returncode == 1 and "no such file or directory" in done.stderr
    done = run(["--journeys", str(journeys), "--events", str(tmp_path / "missing.jsonl")], env, tmp_path)
    assert done.returncode == 1 and "missing.jsonl" in done.stderr and "Traceback" not in done.stderr
    done = run(["--journeys", str(journeys), "--events", str(tmp_path), "--horizon", "a week"], env, tmp_path)
    assert done.returncode == 1 and "--horizon" in done.stderr


def test_times_at_the_ends_of_the_calendar_are_bad_lines_or_bound_the_horizon_not_a_traceback(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    # 0001-01-01T00:00:00+14:00 parses but is before year 1 in UTC: the replay accepted it
    # and then crashed (ValueError: year 0 is out of range) showing it.
    early = {"type": "track", "userId": "cy", "event": "Signed Up", "timestamp": "0001-01-01T00:00:00+14:00"}
    received = {"type": "track", "userId": "cy", "event": "Signed Up", "receivedAt": "0001-01-01T00:00:00+14:00"}
    events = write_events(tmp_path / "events.jsonl", EVENTS, {1: json.dumps(early), 2: json.dumps(received)})
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    stderr = " ".join(done.stderr.split())
    assert "line 1: invalid event: timestamp: out of range once converted to UTC" in stderr
    assert "line 2: invalid event: receivedAt: out of range once converted to UTC" in stderr
    assert rows(parse(done.stdout)[0]) == EXPECTED
    # An event on the calendar's last day: the horizon (30 days after it) stops at its end.
    last = {"type": "track", "userId": "ada", "event": "Signed Up", "timestamp": "9999-12-31T00:00:00Z"}
    events = write_events(tmp_path / "last.jsonl", [last])
    done = run(["--journeys", str(journeys), "--events", str(events), "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert parse(done.stdout)[1]["horizon"].startswith("9999-12-31T23:59:59")


def test_the_horizon_bounds_the_timers_fired_after_the_last_event(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    done = run(["--journeys", str(journeys), "--events", str(events), "--json", "--horizon", "0"], env, tmp_path)
    messages, summary = parse(done.stdout)
    # Only what fell due before the last event (15:00 on the first day).
    assert rows(messages) == EXPECTED[:4]
    assert summary["journeys"]["welcome"]["active"] == 1 and summary["timers_pending"] >= 3
    done = run(["--journeys", str(journeys), "--events", str(events), "--json", "--horizon", "1d"], env, tmp_path)
    assert rows(parse(done.stdout)[0]) == EXPECTED[:6]


def test_human_output_has_the_messages_the_summary_and_a_progress_bar(
    env: dict[str, str], tmp_path: Path, journeys: Path
) -> None:
    events = write_events(tmp_path / "events.jsonl", EVENTS)
    done = run(["--journeys", str(journeys), "--events", str(events), "--limit", "3"], env, tmp_path)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Planned messages (7)" in out
    assert "2026-03-02T09:00:01.000Z" in out and "welcome-1" in out
    assert "anon anon-1" in out
    assert "2026-03-04T09:00:01.000Z" not in out  # beyond the first 3 rows
    assert "the first 3 of 7" in out
    assert "Per journey" in out and "exit_event:Order Completed: 1" in out
    assert "Messages per step" in out and "objections" in out
    assert "6 events" in out
    assert "replaying" in done.stderr  # the progress bar, on stderr


NEAR = """\
id: near
name: Near a store
trigger: {type: location, event: Location Updated, radius_m: 200, catalog_places: {tags: [store]}}
steps:
  nearby: {type: send, channel: push, template: store-nearby}
"""


def test_places_for_catalog_location_triggers_come_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "near.yaml").write_text(NEAR)
    (tmp_path / "places.csv").write_text(
        'id,name,latitude,longitude,tags\nflagship,Flagship,40.7411,-73.9897,"store,nyc"\n'
        "depot,Depot,40.7000,-74.0100,depot\n"
    )
    events = write_events(
        tmp_path / "events.jsonl",
        [
            {
                "type": "track",
                "userId": "ada",
                "event": "Location Updated",
                "timestamp": "2026-03-02T09:00:00Z",
                "properties": {"latitude": 40.7412, "longitude": -73.9896},
            },
            {
                "type": "track",
                "userId": "ben",
                "event": "Location Updated",
                "timestamp": "2026-03-02T09:01:00Z",
                "properties": {"latitude": 40.7001, "longitude": -74.0101},
            },
        ],
    )
    done = run(["--journeys", "near.yaml", "--events", str(events), "--json", "--places", "places.csv"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    messages, _summary = parse(done.stdout)
    assert [(m["user_id"], m["template"]) for m in messages] == [("ada", "store-nearby")]
    # Without the places file, catalog places select nothing: no geofence to enter.
    done = run(["--journeys", "near.yaml", "--events", str(events), "--json"], env, tmp_path)
    assert parse(done.stdout)[0] == []
    (tmp_path / "bad.csv").write_text("id,name,latitude,longitude\nx,X,95,0\n")
    done = run(["--journeys", "near.yaml", "--events", str(events), "--places", "bad.csv"], env, tmp_path)
    assert done.returncode == 1
    assert "--places bad.csv: line 2: latitude must be between -90 and 90, not 95.0" in done.stderr
