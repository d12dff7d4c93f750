"""`nudgeflow report journey …`, run as a user runs it, over rollups written by the store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from nudgeflow.model.journeys import Journey
from nudgeflow.store import database, rollups
from nudgeflow.store import journeys as journey_store
from tests.cli.support import create_workspace, run

DAY = 20_400  # 2025-11-08
PROMO = {
    "id": "promo",
    "name": "Promo",
    "trigger": {"type": "event", "event": "Sale Started"},
    "steps": {"mail": {"type": "send", "channel": "email", "template": "promo"}},
}


def _seed(env: dict[str, str], ws: str) -> None:
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    with engine.begin() as conn:
        journey_store.apply_draft(conn, ws, Journey.model_validate(PROMO), 0)
        rollup = rollups.Rollup()
        for day, entered in ((DAY, 10), (DAY + 1, 30)):
            rollup.add(
                (ws, "promo", 1, "", "", "", day), entered=entered, recipients=entered, conversions=2, revenue=50.0
            )
            rollup.add((ws, "promo", 1, "mail", "", "email", day), sent=entered, step_recipients=entered, opens=5)
            rollup.latency((ws, "promo", 1, "mail", "", "email", day), rollups.TIME_TO_TRIGGER, 120_000)
        rollup.write(conn)
    engine.dispose()


def test_report_journey_as_json_csv_and_a_table(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    _seed(env, ws)

    done = run(["report", "journey", "promo", "--workspace", ws, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["totals"]["entered"], report["totals"]["sent"], report["totals"]["conversions"]) == (40, 40, 4)
    assert report["totals"]["conversion_rate"] == 0.1
    assert report["totals"]["revenue_per_recipient"] == 2.5
    assert 120 / 1.1 <= report["totals"]["time_to_trigger"]["p50_s"] <= 120 * 1.1

    # One day only: the second day's runs and messages.
    done = run(
        ["report", "journey", "promo", "-w", ws, "--from", "2025-11-09", "--to", "2025-11-09", "--json"], env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["entered"] == 30

    done = run(["report", "journey", "promo", "--workspace", ws, "--by", "step", "--csv"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(line["row"], line["step"], line["sent"], line["entered"]) for line in lines] == [
        ("total", "", "40", "40"),
        ("breakdown", "", "0", "40"),
        ("breakdown", "mail", "40", "0"),
    ]
    assert lines[2]["open_rate"] == str(10 / 40) and lines[1]["open_rate"] == ""

    done = run(["report", "journey", "promo", "--workspace", ws, "--by", "step,channel"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(journey)" in done.stdout and "mail" in done.stdout and "total" in done.stdout


def test_report_journey_refuses_what_it_cannot_answer(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    _seed(env, ws)
    other = create_workspace(env, tmp_path, "other")["workspace_id"]
    for args, says in (
        (["report", "journey", "nope", "--workspace", ws], "no journey 'nope' in this workspace"),
        (["report", "journey", "promo", "--workspace", other], "no journey 'promo' in this workspace"),
        (["report", "journey", "promo", "--workspace", ws, "--by", "profile"], "by: 'profile' is not one of"),
        (["report", "journey", "promo", "--workspace", ws, "--from", "monday"], "--from: not a date"),
        (
            ["report", "journey", "promo", "--workspace", ws, "--from", "2025-11-10", "--to", "2025-11-09"],
            "--from (2025-11-10) is after --to (2025-11-09)",
        ),
        (["report", "journey", "promo", "--workspace", ws, "--json", "--csv"], "choose one"),
    ):
        done = run(args, env, tmp_path)
        assert done.returncode != 0 and says in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_report_overview_shows_each_journeys_lift_and_the_programs(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    _seed(env, ws)
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    with engine.begin() as conn:
        rollup = rollups.Rollup()
        # The journey's holdout and its runs in the group; the program's people, on the first day.
        rollup.add((ws, "promo", 1, "", "", "", DAY), held_out=10, conversions_held_out=1, entered_control=5)
        rollup.add(
            (ws, rollups.WORKSPACE_ROW, 0, "", "", "", DAY),
            program_people=1000,
            program_conversions=120,
            program_people_control=100,
            program_conversions_control=5,
        )
        rollup.write(conn)
    engine.dispose()

    done = run(["report", "overview", "--workspace", ws, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    [promo] = found["journeys"]
    assert (promo["entered"], promo["held_out"], promo["control"]) == (40, 10, 5)
    assert promo["lift"]["conversion"]["held_out_rate"] == 0.1
    program = found["lift"]
    assert (program["people"], program["control_people"]) == (1000, 100)
    assert abs(program["conversion"]["absolute_lift"]["value"] - 0.07) < 1e-12

    done = run(["report", "overview", "-w", ws, "--csv"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(line["row"], line["journey_id"], line["entered"]) for line in lines] == [
        ("journey", "promo", "40"),
        ("program", "", "1000"),
    ]

    done = run(["report", "overview", "-w", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1,000 people outside the group vs 100 in it, 12.00 % vs 5.00 %: +7.00 points" in done.stdout

    # The second day alone: no one of the group entered then.
    done = run(["report", "overview", "-w", ws, "--from", "2025-11-09"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "program lift: no one in a global control group entered a journey in this period" in done.stdout
    refused = run(["report", "overview", "-w", ws, "--to", "soon"], env, tmp_path)
    assert refused.returncode != 0 and "--to: not a date" in refused.stderr


TIMED = {
    "id": "timed",
    "name": "Timed",
    "trigger": {"type": "event", "event": "Sale Started"},
    "steps": {
        "mail": {"type": "send", "channel": "email", "template": "promo", "send_time": {"explore": 0.2}},
    },
}


def test_report_journey_shows_the_send_time_arms(env: dict[str, str], tmp_path: Path) -> None:
    from dataclasses import asdict

    from nudgeflow.measure.experiments import Arm, analyze_experiment

    ws = create_workspace(env, tmp_path)["workspace_id"]
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    # (arm, sent, opens, clicks), over two days.
    counts = (("optimized", 2100, 600, 120), ("fallback", 300, 120, 10), ("explore", 600, 120, 20))
    with engine.begin() as conn:
        journey_store.apply_draft(conn, ws, Journey.model_validate(TIMED), 0)
        journey_store.publish(conn, ws, "timed", 0)
        rollup = rollups.Rollup()
        for arm, sent, opens, clicks in counts:
            for day, share in ((DAY, 0.4), (DAY + 1, 0.6)):
                rollup.send_time(
                    (ws, "timed", 1, "mail", "mail", arm, day),
                    sent=round(sent * share),
                    opens=round(opens * share),
                    clicks=round(clicks * share),
                )
        rollup.write(conn)
    engine.dispose()

    done = run(["report", "journey", "timed", "--workspace", ws, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    [entry] = json.loads(done.stdout)["send_time"]
    assert [(a["arm"], a["sent"], a["unique_opens"], a["unique_clicks"]) for a in entry["arms"]] == list(
        (arm, sent, opens, clicks) for arm, sent, opens, clicks in counts
    )
    expected = analyze_experiment(
        [Arm("optimized+fallback", 0.8, 2400, 720), Arm("explore", 0.2, 600, 120)],
        control="explore",
        primary_metric="open",
    )
    assert entry["open_rate"]["arms"][0]["versus_control"] == asdict(expected)["arms"][0]["versus_control"]
    assert abs(entry["open_rate"]["arms"][0]["versus_control"]["difference"] - 0.1) < 1e-12
    assert entry["open_rate"]["sample_ratio"]["expected_shares"] == [0.8, 0.2]

    done = run(["report", "journey", "timed", "--workspace", ws], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "send time: mail (explore 20 %)" in done.stdout
    for line in ("optimized", "fallback", "explore", "open rate: optimized+fallback 30.0", "click rate:"):
        assert line in done.stdout, done.stdout

    # One day only: the second day's messages.
    done = run(["report", "journey", "timed", "-w", ws, "--from", "2025-11-09", "--json"], env, tmp_path)
    assert json.loads(done.stdout)["send_time"][0]["arms"][0]["sent"] == 1260


DELAYS = {
    "id": "delays",
    "name": "Delays",
    "trigger": {"type": "event", "event": "Cart Left"},
    "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
    "steps": {
        "timing": {
            "type": "split",
            "paths": [{"name": "soon", "weight": 1, "next": "w30"}, {"name": "later", "weight": 1, "next": "w2h"}],
        },
        "w30": {"type": "wait", "duration": "30m", "next": "mail"},
        "w2h": {"type": "wait", "duration": "2h", "next": "mail"},
        "mail": {"type": "send", "channel": "email", "template": "cart"},
    },
}


def test_report_journey_shows_its_experiments(env: dict[str, str], tmp_path: Path) -> None:
    ws = create_workspace(env, tmp_path)["workspace_id"]
    engine = database.create_db_engine(env["NUDGEFLOW_DATABASE_URL"])
    with engine.begin() as conn:
        journey_store.apply_draft(conn, ws, Journey.model_validate(DELAYS), 0)
        journey_store.publish(conn, ws, "delays", 0)
        rollup = rollups.Rollup()
        for arm, runs, conversions in (("soon", 600, 90), ("later", 610, 40)):
            dims = (ws, "delays", 1, "timing", arm, "", DAY)
            rollup.add(dims, arm_runs=runs, arm_conversions=conversions, arm_revenue=10.0 * conversions)
            rollup.latency(dims, rollups.ARM_TIME_TO_CONVERT, 3_600_000)
        rollup.write(conn)
    engine.dispose()

    done = run(["report", "journey", "delays", "--workspace", ws, "--json"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    [section] = json.loads(done.stdout)["experiments"]
    assert section["step"] == "timing" and section["delay_experiment"] is True
    assert [(a["name"], a["runs"], a["conversion"]["count"], a["delay"]["label"]) for a in section["arms"]] == [
        ("soon", 600, 90, "30m"),
        ("later", 610, 40, "2h"),
    ]
    assert section["winner"]["winner"] == "soon"
    # The arms' rows are not the journey's messages.
    assert json.loads(done.stdout)["totals"]["sent"] == 0

    done = run(["report", "journey", "delays", "--workspace", ws, "--minimum-per-arm", "700"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "experiment timing (version 1, delay experiment); primary metric: conversion" in done.stdout
    assert "30m" in done.stdout and "2h" in done.stdout and "(control)" in done.stdout
    assert "sample ratio: as configured" in done.stdout
    assert "no winner yet: too few recipients to call one" in done.stdout
    done = run(["report", "journey", "delays", "--workspace", ws], env, tmp_path)
    assert "'soon' wins on conversion" in done.stdout
    done = run(["report", "journey", "delays", "--workspace", ws, "--minimum-per-arm", "0"], env, tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
