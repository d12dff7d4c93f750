#!/usr/bin/env python
"""Report benchmark: how fast a journey report and the overview answer over a large history.

    .venv/bin/python benchmarks/report.py [--quick] [--no-record] [--messages N] [--events N] ...

The history is built the way production builds it, through the store's own functions in
transactions of the sizes production uses, on one SQLite file (WAL, synchronous=NORMAL):

  runs        --messages / 2 treated runs (each is sent two messages: a first one, of variant
              a or b, and a reminder) and a tenth more held out, over --journeys journeys and
              --days days; each run's row written after store/rollups.count_runs counted it, as
              the engine's effects writer does, 500 a transaction; 6 % convert later (a second
              write of the run, with revenue), attributed when one of their messages was opened
              or clicked;
  messages    --messages outbox rows (status sent), counted by store/rollups.count_sent 500 a
              transaction, as the dispatcher records a round;
  engagement  opens (30 % of messages, 10 % more by machines), clicks (6 %), unsubscribes,
              complaints and bounces, each through store/rollups.count_engagement as the
              tracking routes and bounce handling call it, 1,000 a transaction (the group
              committer's jobs);
  events      --events rows in the event log: the opens, clicks and sends above as events, the
              rest generated shop traffic. Reports never read them (the point of the rollups);
              they are there so that the database is the size a real one would be.

Then, each --repeats times on a fresh connection: the journey report broken down by step,
variant and channel over all days, the same over the last 30 days, and the overview (every
journey, per trigger type, the workspace). Target: each answers in <= 1 s (the slowest try).
Results go to the "report benchmark" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys

if sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)  # benchmarks/email.py would shadow the standard library's email package

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from benchmarks import ingest as ingest_bench  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DAY_MS = 86_400_000
START = "<!-- report benchmark: written by benchmarks/report.py -->"
END = "<!-- end of report benchmark -->"
DEFAULTS = {"messages": 1_000_000, "events": 10_000_000, "journeys": 20, "days": 90}
QUICK = {"messages": 20_000, "events": 200_000, "journeys": 5, "days": 30}
TRIGGERS = ("event", "event_not_followed", "inactivity", "milestone")


def journey_doc(i: int) -> dict[str, Any]:
    kind = TRIGGERS[i % len(TRIGGERS)]
    trigger: dict[str, Any] = {"type": "event", "event": f"Event {i}"}
    if kind == "event_not_followed":
        trigger = {
            "type": "event_not_followed",
            "event": f"Event {i}",
            "not_followed_by": {"event": "Order Completed", "within": "1h"},
        }
    elif kind == "inactivity":
        trigger = {"type": "inactivity", "events": ["Application Opened"], "window": "7d"}
    elif kind == "milestone":
        trigger = {"type": "milestone", "event": "Order Completed", "count": 3}
    channel = "push" if i % 3 == 2 else "email"
    return {
        "id": f"journey-{i:02d}",
        "name": f"Journey {i}",
        "trigger": trigger,
        "holdout": 0.1,
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {
            "first": {
                "type": "send",
                "channel": channel,
                "variants": [
                    {"name": "a", "template": f"t{i}-a", "weight": 1},
                    {"name": "b", "template": f"t{i}-b", "weight": 1},
                ],
                "next": "wait",
            },
            "wait": {"type": "wait", "duration": "1d", "next": "reminder"},
            "reminder": {"type": "send", "channel": channel, "template": f"t{i}-reminder"},
        },
    }


def store_journeys(engine: Any, ws: str, count: int, now_ms: int) -> list[tuple[str, str]]:
    """The journeys, as drafts (the overview reads their trigger types): (id, channel)."""
    from nudgeflow.model.journeys import Journey
    from nudgeflow.store import journeys as journey_store

    out = []
    with engine.begin() as conn:
        for i in range(count):
            doc = journey_doc(i)
            journey_store.apply_draft(conn, ws, Journey.model_validate(doc), now_ms)
            out.append((doc["id"], doc["steps"]["first"]["channel"]))
    return out


def prepare(engine: Any, ws: str, args: argparse.Namespace, out: Any) -> dict[str, float]:
    from nudgeflow.store import outbox, rollups, sql
    from nudgeflow.store.effects_writer import RUN_COLUMNS, RUN_UPDATED
    from nudgeflow.store.event_log import append_events, event_row

    rng = random.Random(args.seed)
    end_ms = (int(time.time() * 1000) // DAY_MS) * DAY_MS
    start_ms = end_ms - args.days * DAY_MS
    journeys = store_journeys(engine, ws, args.journeys, end_ms)
    runs_treated = args.messages // 2
    runs_held = runs_treated // 10
    timings: dict[str, float] = {}

    # -- runs entering, then the messages of the treated ones --------------------------------
    t0 = time.perf_counter()
    run_rows: list[tuple[Any, ...]] = []
    messages: list[tuple[Any, ...]] = []  # outbox rows
    sends: list[rollups.Sent] = []
    for n in range(runs_treated + runs_held):
        jid, channel = journeys[n % len(journeys)]
        entered = start_ms + rng.randrange(args.days * DAY_MS - DAY_MS)
        pid = f"prf_{n % (args.messages // 4 or 1):012d}"
        run_id = f"run_{n:010d}"
        held = n >= runs_treated
        run_rows.append(
            (run_id, ws, jid, 1, pid, "active", "wait", int(held), entered, None, None, None, None, entered)
        )
        if held:
            continue
        variant = "ab"[n % 2]
        for step, at, var in (("first", entered + 2000, variant), ("reminder", entered + DAY_MS, None)):
            key = f"{run_id}:{step}:1"
            messages.append(
                (ws, key, pid, run_id, jid, 1, step, channel, f"t-{step}", var, 1, "{}", "sent", 1, at, at, at, at, None, None)
            )
            sends.append(rollups.Sent(ws, key, pid, run_id, jid, 1, step, var, channel, channel == "push", at, entered, entered))
    for chunk in sql.chunks(run_rows, 500):
        with engine.begin() as conn:
            rollup = rollups.Rollup()
            rollups.count_runs(conn, rollup, chunk)
            rollup.write(conn)
            sql.insert_rows(conn, "journey_runs", RUN_COLUMNS, chunk, conflict="id", update=RUN_UPDATED)
    timings["runs entered"] = time.perf_counter() - t0
    out.print(f"  {len(run_rows):,} runs entered in {timings['runs entered']:.1f} s")

    t0 = time.perf_counter()
    for chunk_m, chunk_s in zip(sql.chunks(messages, 500), sql.chunks(sends, 500), strict=True):
        with engine.begin() as conn:
            outbox.queue(conn, chunk_m)
            rollup = rollups.Rollup()
            rollups.count_sent(conn, rollup, chunk_s)
            rollup.write(conn)
    timings["messages sent"] = time.perf_counter() - t0
    out.print(f"  {len(messages):,} messages queued and counted as sent in {timings['messages sent']:.1f} s")

    # -- engagement, one call per request as the tracking routes make them --------------------
    t0 = time.perf_counter()
    facts: list[tuple[str, str, int]] = []
    for row in messages:
        key, at = row[1], row[14]
        roll = rng.random()
        if roll < 0.30:
            facts.append((key, rollups.OPENED, at + rng.randrange(1, 6 * 3600_000)))
            if rng.random() < 0.3:  # opened again: counts nothing more
                facts.append((key, rollups.OPENED, at + rng.randrange(6 * 3600_000, DAY_MS)))
            if rng.random() < 0.2:
                facts.append((key, rollups.CLICKED, at + rng.randrange(1, 6 * 3600_000)))
        elif roll < 0.40:
            facts.append((key, rollups.OPENED_MACHINE, at + 1000))
        if rng.random() < 0.002:
            facts.append((key, rollups.UNSUBSCRIBED, at + 3600_000))
        if rng.random() < 0.005:
            facts.append((key, rollups.BOUNCED, at + 60_000))
        if rng.random() < 0.0005:
            facts.append((key, rollups.COMPLAINED, at + 7200_000))
    facts.sort(key=lambda f: f[2])
    for chunk in sql.chunks(facts, 1000):
        with engine.begin() as conn:
            for key, fact, at in chunk:
                rollups.count_engagement(conn, ws, key, fact, at)
    timings["engagement"] = time.perf_counter() - t0
    out.print(f"  {len(facts):,} opens, clicks, unsubscribes, bounces, complaints in {timings['engagement']:.1f} s")

    # -- conversions: the run written again, with its goal event ------------------------------
    t0 = time.perf_counter()
    converted = []
    for row in run_rows:
        if rng.random() < 0.06:
            at = row[8] + rng.randrange(60_000, 7 * DAY_MS)
            revenue = round(rng.uniform(5, 400), 2)
            converted.append((*row[:5], "done", None, row[7], row[8], at, "converted", at, revenue, at))
    for chunk in sql.chunks(converted, 500):
        with engine.begin() as conn:
            rollup = rollups.Rollup()
            rollups.count_runs(conn, rollup, chunk)
            rollup.write(conn)
            sql.insert_rows(conn, "journey_runs", RUN_COLUMNS, chunk, conflict="id", update=RUN_UPDATED)
    timings["conversions"] = time.perf_counter() - t0
    out.print(f"  {len(converted):,} conversions counted and attributed in {timings['conversions']:.1f} s")

    # -- the event log: reports never read it ---------------------------------------------------
    t0 = time.perf_counter()
    batch: list[tuple[Any, ...]] = []
    names = ("Product Viewed", "Product Added", "Application Opened", "Page Viewed", "Order Completed")
    written = 0
    with engine.connect() as conn:  # committed every 200,000 rows, as a bulk import would
        for n in range(args.events):
            at = start_ms + rng.randrange(args.days * DAY_MS)
            pid = f"prf_{rng.randrange(args.messages // 4 or 1):012d}"
            batch.append(
                event_row(ws, pid, pid, names[n % len(names)], f"bench-{n}", {"n": n}, at, "bench", at_ms=at)
            )
            if len(batch) == 5000:
                append_events(conn, batch)
                written += len(batch)
                batch.clear()
                if written % 200_000 == 0:
                    conn.commit()
        append_events(conn, batch)
        conn.commit()
    timings["events"] = time.perf_counter() - t0
    out.print(f"  {args.events:,} events in the event log in {timings['events']:.1f} s")
    return timings


def measure(engine: Any, ws: str, journey_id: str, repeats: int) -> dict[str, list[float]]:
    from nudgeflow.web.reports_api import load_journey_report, load_overview

    last_30 = int(time.time() * 1000) // DAY_MS - 30
    tries: dict[str, list[float]] = {"journey, by step,variant,channel": [], "journey, last 30 days": [], "overview": []}
    for _ in range(repeats):
        for name in tries:
            with engine.connect() as conn:
                t0 = time.perf_counter()
                if name == "overview":
                    found = load_overview(conn, ws, from_day=None, to_day=None, include_machine=False)
                    assert found["journeys"]
                else:
                    found = load_journey_report(
                        conn,
                        ws,
                        journey_id,
                        from_day=last_30 if "30" in name else None,
                        to_day=None,
                        by=("step", "variant", "channel"),
                        include_machine=False,
                    )
                    assert found is not None and found["totals"]["sent"] > 0
                tries[name].append(time.perf_counter() - t0)
    return tries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it works")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    parser.add_argument("--messages", type=int, help="messages sent (default 1,000,000)")
    parser.add_argument("--events", type=int, help="events in the event log (default 10,000,000)")
    parser.add_argument("--journeys", type=int, help="journeys (default 20)")
    parser.add_argument("--days", type=int, help="days of history (default 90)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = {**DEFAULTS, **(QUICK if args.quick else {})}
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    from rich.console import Console

    from nudgeflow.core.clock import VirtualClock
    from nudgeflow.store import database
    from nudgeflow.store.workspaces import create_workspace

    out = Console()
    info = ingest_bench.machine()
    ingest_bench.announce("report", info, out)
    with tempfile.TemporaryDirectory(prefix="nudgeflow-report-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'report.db'}"
        engine = database.create_db_engine(url, sqlite_synchronous="NORMAL")
        database.upgrade(engine)
        with engine.begin() as conn:
            ws = create_workspace(conn, "bench", int(VirtualClock().now().timestamp() * 1000)).workspace_id
        out.print(f"building {args.messages:,} messages and {args.events:,} events over {args.journeys} journeys, {args.days} days")
        started = time.perf_counter()
        timings = prepare(engine, ws, args, out)
        prepared_s = time.perf_counter() - started
        with engine.connect() as conn:
            rollup_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM report_rollups").scalar_one()
            latency_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM report_latencies").scalar_one()
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("report.db*")) / 1e6
        tries = measure(engine, ws, "journey-00", args.repeats)
        engine.dispose()
    rows = []
    for name, values in tries.items():
        worst = max(values)
        rows.append(
            (
                f"report: {name}",
                f"median {1000 * statistics.median(values):.1f} ms, slowest {1000 * worst:.1f} ms",
                "<= 1 s",
                "met" if worst <= 1.0 else "missed",
            )
        )
    out.print(ingest_bench.results_table("Report benchmark", rows))
    out.print(
        f"prepared in {prepared_s:.0f} s: {rollup_rows:,} rollup rows, {latency_rows:,} latency rows, database {size_mb:,.0f} MB"
    )
    if not args.no_record:
        record(args, info, rows, timings, prepared_s, rollup_rows, latency_rows, size_mb)


def record(
    args: argparse.Namespace,
    info: dict[str, str],
    rows: list[tuple[str, str, str, str]],
    timings: dict[str, float],
    prepared_s: float,
    rollup_rows: int,
    latency_rows: int,
    size_mb: float,
) -> None:
    command = "python benchmarks/report.py" + (" --quick" if args.quick else "") + "".join(
        f" --{name} {getattr(args, name)}"
        for name, value in DEFAULTS.items()
        if getattr(args, name) != (QUICK if args.quick else DEFAULTS)[name]
    )
    lines = [
        START,
        "",
        f"## Latest report run: {info['date']}",
        "",
        f"`{command}`: {args.messages:,} messages and {args.events:,} events over {args.journeys} journeys "
        f"and {args.days} days, built through the store's rollup functions in {prepared_s:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); {rollup_rows:,} rollup rows and "
        f"{latency_rows:,} latency rows; the database {size_mb:,.0f} MB. Each report {args.repeats} times, "
        "a fresh connection each time.",
        "",
        "| measure | figure | target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m} | {f} | {t} | {ok} |" for m, f, t, ok in rows],
        "",
        *ingest_bench.machine_lines(info, f"{info['os']}, Python {info['python']}, SQLite {info['sqlite']}", disk=True),
        END,
    ]
    text = args.results.read_text() if args.results.exists() else ""
    section = "\n".join(lines)
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    args.results.write_text(text)


if __name__ == "__main__":
    main()
