#!/usr/bin/env python
"""Report benchmark: how fast a journey report and the overview answer over a large history.

    .venv/bin/python benchmarks/report.py [--quick] [--no-record] [--messages N] [--events N] ...
    .venv/bin/python benchmarks/report.py --db /var/tmp/nudgeflow-report.db [--prepare-only]

The history is built the way production builds it, through the store's own functions in
transactions of the sizes production uses, on one SQLite file (WAL, synchronous=NORMAL).
At the default sizes that takes tens of minutes, so --db keeps the file (outside the
repository): each stage commits its progress with each chunk, an interrupted build resumes
at its first missing chunk, and a finished one is measured again without building. Each
stage shows its progress, rate and time left.

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
  events      --events rows in the event log: generated shop traffic of the same people over the
              same days, 100,000 a transaction with a 1 GiB page cache and synchronous=OFF (a
              bulk load: the rows and both indexes of `events` as ingest writes them, without
              a sync per commit). Reports never read them (the point of the rollups); they are
              there so that the database is the size a real one would be.

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
import json
import os
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


def store_journeys(conn: Any, ws: str, count: int, now_ms: int) -> None:
    """The journeys, as drafts (the overview reads their trigger types)."""
    from nudgeflow.model.journeys import Journey
    from nudgeflow.store import journeys as journey_store

    for i in range(count):
        journey_store.apply_draft(conn, ws, Journey.model_validate(journey_doc(i)), now_ms)


# -- a prepared database, kept and resumed -------------------------------------------------
#
# Building 1M messages and 10M events takes many minutes, so with --db the database is a
# file that outlives the run: its `bench_report` table records the sizes and seed it is built
# for, the time its history ends, and each stage's committed chunks, each chunk's progress
# written in the chunk's own transaction. An interrupted build resumes at its first missing
# chunk; a finished one is measured again without building anything. The history is planned
# from the seed, so a resumed build writes what an uninterrupted one would have (the store's
# count-once claims would make a repeated chunk harmless too, but it is never repeated).

META = "bench_report"
STAGES = ("journeys", "runs entered", "messages sent", "engagement", "conversions", "events")
EVENTS_PER_COMMIT = 100_000  # one transaction (and one resumable step) of the event log
EVENT_NAMES = ("Product Viewed", "Product Added", "Application Opened", "Page Viewed", "Order Completed")


def open_meta(engine: Any) -> dict[str, Any]:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        return {k: json.loads(v) for k, v in conn.exec_driver_sql(f"SELECT key, value FROM {META}").all()}


def put_meta(conn: Any, key: str, value: Any) -> None:
    conn.exec_driver_sql(
        f"INSERT INTO {META} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


def wanted(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in (*DEFAULTS, "seed")}


class Plan:
    """The history the seed draws: runs, their messages, engagement and conversions (the
    event log is drawn chunk by chunk, each chunk from a seed of its own)."""

    def __init__(self, args: argparse.Namespace, ws: str, end_ms: int, journeys: list[tuple[str, str]]) -> None:
        from nudgeflow.store import rollups

        rng = random.Random(args.seed)
        start_ms = end_ms - args.days * DAY_MS
        runs_treated = args.messages // 2
        runs_held = runs_treated // 10
        self.run_rows: list[tuple[Any, ...]] = []
        self.messages: list[tuple[Any, ...]] = []  # outbox rows
        self.sends: list[rollups.Sent] = []
        for n in range(runs_treated + runs_held):
            jid, channel = journeys[n % len(journeys)]
            entered = start_ms + rng.randrange(args.days * DAY_MS - DAY_MS)
            pid = f"prf_{n % (args.messages // 4 or 1):012d}"
            run_id = f"run_{n:010d}"
            held = n >= runs_treated
            self.run_rows.append(
                # RUN_COLUMNS: …, updated_at_ms, control (no global control group here), its
                # cohort, the goal event that converted the run.
                (run_id, ws, jid, 1, pid, "active", "wait", int(held), entered, None, None, None, None, entered, 0, None, None)
            )
            if held:
                continue
            variant = "ab"[n % 2]
            for step, at, var in (("first", entered + 2000, variant), ("reminder", entered + DAY_MS, None)):
                key = f"{run_id}:{step}:1"
                self.messages.append(
                    (ws, key, pid, run_id, jid, 1, step, channel, f"t-{step}", var, 1, "{}", "sent", 1, at, at, at, at, None, None)
                )
                self.sends.append(
                    rollups.Sent(ws, key, pid, run_id, jid, 1, step, var, channel, channel == "push", at, entered, entered)
                )
        self.facts: list[tuple[str, str, int]] = []
        for row in self.messages:
            key, at = row[1], row[14]
            roll = rng.random()
            if roll < 0.30:
                self.facts.append((key, rollups.OPENED, at + rng.randrange(1, 6 * 3600_000)))
                if rng.random() < 0.3:  # opened again: counts nothing more
                    self.facts.append((key, rollups.OPENED, at + rng.randrange(6 * 3600_000, DAY_MS)))
                if rng.random() < 0.2:
                    self.facts.append((key, rollups.CLICKED, at + rng.randrange(1, 6 * 3600_000)))
            elif roll < 0.40:
                self.facts.append((key, rollups.OPENED_MACHINE, at + 1000))
            if rng.random() < 0.002:
                self.facts.append((key, rollups.UNSUBSCRIBED, at + 3600_000))
            if rng.random() < 0.005:
                self.facts.append((key, rollups.BOUNCED, at + 60_000))
            if rng.random() < 0.0005:
                self.facts.append((key, rollups.COMPLAINED, at + 7200_000))
        self.facts.sort(key=lambda f: f[2])
        self.converted: list[tuple[Any, ...]] = []
        for row in self.run_rows:
            if rng.random() < 0.06:
                at = row[8] + rng.randrange(60_000, 7 * DAY_MS)
                revenue = round(rng.uniform(5, 400), 2)
                goal = f"order-{row[0]}"
                self.converted.append((*row[:5], "done", None, row[7], row[8], at, "converted", at, revenue, at, 0, None, goal))


def event_rows(args: argparse.Namespace, ws: str, end_ms: int, chunk: int) -> list[tuple[Any, ...]]:
    """The event log's `chunk`-th EVENTS_PER_COMMIT rows: shop traffic of the history's people
    over its days, as the events table stores them (the payload a track call would have)."""
    from nudgeflow.model.iso_time import iso

    rng = random.Random(f"{args.seed}/events/{chunk}")
    start_ms = end_ms - args.days * DAY_MS
    people = args.messages // 4 or 1
    first = chunk * EVENTS_PER_COMMIT
    rows = []
    for n in range(first, min(args.events, first + EVENTS_PER_COMMIT)):
        at = start_ms + rng.randrange(args.days * DAY_MS)
        pid = f"prf_{rng.randrange(people):012d}"
        name = EVENT_NAMES[n % len(EVENT_NAMES)]
        stamp = iso(at)
        payload = (
            f'{{"type":"track","event":"{name}","messageId":"bench-{n}","properties":{{"n":{n}}},'
            f'"timestamp":"{stamp}","receivedAt":"{stamp}","context":{{"library":{{"name":"bench"}}}},'
            f'"userId":"{pid}"}}'
        )
        rows.append((ws, f"bench-{n}", pid, "track", name, pid, None, at, at, payload))
    return rows


class Progress:
    """One line per stage, rewritten in place: chunks done, rows, rate and time left."""

    def __init__(self, out: Any) -> None:
        self.out = out

    def stage(self, name: str, total_rows: int, done_rows: int) -> Any:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        bar = Bar(
            TextColumn(f"  {name:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.out,
            transient=False,
        )
        bar.start()
        task = bar.add_task(name, total=total_rows, completed=done_rows, rate="")
        return bar, task


def run_stage(
    engine: Any,
    meta: dict[str, Any],
    progress: Progress,
    name: str,
    chunks: list[Any],
    rows_of: Any,
    write: Any,
) -> float:
    """Write `chunks` from the first one the database lacks, each in its own transaction with
    its progress; the seconds spent now (0 when the stage was complete)."""
    if meta.get(f"complete:{name}"):
        progress.out.print(f"  {name:<14} built earlier, in {meta.get(f'seconds:{name}', 0):.0f} s")
        return 0.0
    done = int(meta.get(f"done:{name}", 0))
    total = sum(rows_of(c) for c in chunks)
    bar, task = progress.stage(name, total, sum(rows_of(c) for c in chunks[:done]))
    started = time.perf_counter()
    earlier = float(meta.get(f"seconds:{name}", 0))  # spent on this stage by interrupted runs
    rows_now = 0
    said = started
    try:
        for i in range(done, len(chunks)):
            with engine.begin() as conn:
                write(conn, chunks[i])
                put_meta(conn, f"done:{name}", i + 1)
                put_meta(conn, f"seconds:{name}", earlier + time.perf_counter() - started)
            rows_now += rows_of(chunks[i])
            rate = rows_now / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=rows_of(chunks[i]), rate=f"{rate:,.0f} rows/s")
            if not progress.out.is_terminal and time.perf_counter() - said > 30:  # a log file: a line now and then
                said = time.perf_counter()
                done_rows = sum(rows_of(c) for c in chunks[: i + 1])
                progress.out.print(f"  {name:<14} {done_rows:,} of {total:,} rows, {rate:,.0f} rows/s")
    finally:
        bar.stop()
    seconds = earlier + time.perf_counter() - started
    with engine.begin() as conn:
        put_meta(conn, f"seconds:{name}", seconds)
        put_meta(conn, f"complete:{name}", True)
    meta[f"seconds:{name}"], meta[f"complete:{name}"] = seconds, True
    return seconds


def prepare(engine: Any, args: argparse.Namespace, meta: dict[str, Any], out: Any) -> tuple[str, dict[str, float]]:
    """Build (or finish building) the history; (workspace id, seconds per stage, this run's
    and earlier runs' together)."""
    from nudgeflow.core.clock import VirtualClock
    from nudgeflow.store import database, outbox, rollups, sql
    from nudgeflow.store.effects_writer import RUN_COLUMNS, RUN_UPDATED
    from nudgeflow.store.event_log import append_events
    from nudgeflow.store.workspaces import create_workspace

    if "sizes" in meta and meta["sizes"] != wanted(args):
        raise SystemExit(
            f"{args.db} was built for {meta['sizes']}, not {wanted(args)}: give another --db, or the same sizes"
        )
    if "workspace" not in meta:
        with engine.begin() as conn:
            ws = create_workspace(conn, "bench", int(VirtualClock().now().timestamp() * 1000)).workspace_id
            put_meta(conn, "sizes", wanted(args))
            put_meta(conn, "workspace", ws)
            # The history ends today (UTC midnight) when first built; a resumed build keeps it.
            put_meta(conn, "end_ms", (int(time.time() * 1000) // DAY_MS) * DAY_MS)
        meta.update(open_meta(engine))
    ws, end_ms = meta["workspace"], int(meta["end_ms"])
    progress = Progress(out)

    def write_journeys(conn: Any, _: Any) -> None:
        store_journeys(conn, ws, args.journeys, end_ms)

    run_stage(engine, meta, progress, "journeys", [args.journeys], lambda n: n, write_journeys)
    journeys = [(journey_doc(i)["id"], journey_doc(i)["steps"]["first"]["channel"]) for i in range(args.journeys)]
    if not all(meta.get(f"complete:{name}") for name in STAGES[1:5]):
        t0 = time.perf_counter()
        plan = Plan(args, ws, end_ms, journeys)
        out.print(f"  planned from seed {args.seed} in {time.perf_counter() - t0:.1f} s")

        def write_runs(conn: Any, chunk: list[tuple[Any, ...]]) -> None:
            rollup = rollups.Rollup()
            rollups.count_runs(conn, rollup, chunk)  # as the engine's effects writer does
            rollup.write(conn)
            sql.insert_rows(conn, "journey_runs", RUN_COLUMNS, chunk, conflict="id", update=RUN_UPDATED)

        def write_sends(conn: Any, chunk: tuple[list[tuple[Any, ...]], list[Any]]) -> None:
            outbox.queue(conn, chunk[0])
            rollup = rollups.Rollup()
            rollups.count_sent(conn, rollup, chunk[1])  # as the dispatcher records a round
            rollup.write(conn)

        def write_engagement(conn: Any, chunk: list[tuple[str, str, int]]) -> None:
            for key, fact, at in chunk:  # one call per request, as the tracking routes make them
                rollups.count_engagement(conn, ws, key, fact, at)

        run_stage(engine, meta, progress, "runs entered", list(sql.chunks(plan.run_rows, 500)), len, write_runs)
        run_stage(
            engine,
            meta,
            progress,
            "messages sent",
            list(zip(sql.chunks(plan.messages, 500), sql.chunks(plan.sends, 500), strict=True)),
            lambda c: len(c[0]),
            write_sends,
        )
        run_stage(engine, meta, progress, "engagement", list(sql.chunks(plan.facts, 1000)), len, write_engagement)
        # A conversion is the run written again, with its goal event.
        run_stage(engine, meta, progress, "conversions", list(sql.chunks(plan.converted, 500)), len, write_runs)
        del plan
    else:
        for name in STAGES[1:5]:
            out.print(f"  {name:<14} built earlier, in {meta.get(f'seconds:{name}', 0):.0f} s")

    # The event log (reports never read it: it is there so that the database is the size a
    # real one would be). Bulk: 100,000 rows a transaction, the page cache large enough for
    # its two indexes, and no fsync per commit (a benchmark's file: a crash of the machine
    # may cost it, a crash of the process does not).
    chunks = list(range((args.events + EVENTS_PER_COMMIT - 1) // EVENTS_PER_COMMIT))
    bulk = database.create_db_engine(str(engine.url), sqlite_synchronous="OFF", pool_size=1)
    with bulk.connect() as conn:
        conn.exec_driver_sql("PRAGMA cache_size=-1048576")  # 1 GiB

    def write_events(conn: Any, chunk: int) -> None:
        append_events(conn, event_rows(args, ws, end_ms, chunk))

    run_stage(
        bulk,
        meta,
        progress,
        "events",
        chunks,
        lambda c: min(EVENTS_PER_COMMIT, args.events - c * EVENTS_PER_COMMIT),
        write_events,
    )
    bulk.dispose()
    return ws, {name: float(meta.get(f"seconds:{name}", 0.0)) for name in STAGES}


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
    parser.add_argument(
        "--db",
        type=Path,
        help="keep the prepared SQLite database in this file (outside the repository): a later run with "
        "the same sizes measures it again, an interrupted build resumes where it stopped",
    )
    parser.add_argument("--prepare-only", action="store_true", help="build the --db database, measure nothing")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = {**DEFAULTS, **(QUICK if args.quick else {})}
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in DEFAULTS:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.prepare_only and args.db is None:
        parser.error("--prepare-only builds a database to keep: give --db")
    if args.db is not None:
        args.db = args.db.resolve()
        if args.db.is_relative_to(ROOT):
            parser.error(f"--db {args.db} is inside the repository: keep generated databases outside it")

    from rich.console import Console

    out = Console()
    info = ingest_bench.machine()
    ingest_bench.announce("report", info, out)
    with tempfile.TemporaryDirectory(prefix="nudgeflow-report-") as tmp:
        path = args.db or Path(tmp) / "report.db"
        try:
            run(args, path, info, out)
        except KeyboardInterrupt:
            again = "run the same command again to resume" if args.db else "give --db to keep a build"
            raise SystemExit(f"interrupted: {again}") from None


def run(args: argparse.Namespace, path: Path, info: dict[str, str], out: Any) -> None:
    from nudgeflow.store import database

    engine = database.create_db_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    database.upgrade(engine)
    meta = open_meta(engine)
    what = f"{args.messages:,} messages and {args.events:,} events over {args.journeys} journeys, {args.days} days"
    out.print(f"{'resuming' if meta else 'building'} {what} in {path}")
    started = time.perf_counter()
    ws, timings = prepare(engine, args, meta, out)
    out.print(f"prepared: {sum(timings.values()):.0f} s in all ({time.perf_counter() - started:.0f} s in this run)")
    with engine.connect() as conn:
        rollup_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM report_rollups").scalar_one()
        latency_rows = conn.exec_driver_sql("SELECT COUNT(*) FROM report_latencies").scalar_one()
        events = conn.exec_driver_sql("SELECT COUNT(*) FROM events").scalar_one()
        messages = conn.exec_driver_sql("SELECT COUNT(*) FROM outbox").scalar_one()
    if (events, messages) != (args.events, args.messages // 2 * 2):
        raise SystemExit(f"the database holds {messages:,} messages and {events:,} events, not the sizes asked for")
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
    if args.prepare_only:
        out.print(f"{rollup_rows:,} rollup rows, {latency_rows:,} latency rows, database {size_mb:,.0f} MB")
        engine.dispose()
        return
    loads = [os.getloadavg()]
    tries = measure(engine, ws, "journey-00", args.repeats)
    loads.append(os.getloadavg())
    engine.dispose()
    rows = []
    for name, values in tries.items():
        worst = max(values)
        rows.append(
            (
                f"report: {name}",
                f"median {1000 * statistics.median(values):.1f} ms, p90 {1000 * p90(values):.1f} ms, "
                f"slowest {1000 * worst:.1f} ms",
                "<= 1 s",
                "met" if worst <= 1.0 else "missed",
            )
        )
    out.print(ingest_bench.results_table("Report benchmark", rows))
    out.print(
        f"prepared in {sum(timings.values()):.0f} s: {rollup_rows:,} rollup rows, {latency_rows:,} latency rows, "
        f"database {size_mb:,.0f} MB"
    )
    if not args.no_record:
        built_now = time.perf_counter() - started > 0.5 * sum(timings.values())
        record(args, info, rows, timings, rollup_rows, latency_rows, size_mb, loads, built_now)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def record(
    args: argparse.Namespace,
    info: dict[str, str],
    rows: list[tuple[str, str, str, str]],
    timings: dict[str, float],
    rollup_rows: int,
    latency_rows: int,
    size_mb: float,
    loads: list[tuple[float, float, float]],
    built_now: bool,
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
        f"and {args.days} days, built through the store's rollup functions in {sum(timings.values()):.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}); {rollup_rows:,} rollup rows and "
        f"{latency_rows:,} latency rows; the database {size_mb:,.0f} MB. Each report {args.repeats} times, "
        "a fresh connection each time."
        + ("" if built_now else f" The database was built by an earlier run and kept (`--db {args.db}`)."),
        "",
        "Load average (1, 5, 15 min) while the reports ran: "
        + " before, ".join(" ".join(f"{x:.2f}" for x in load) for load in loads)
        + " after"
        + (": **taken under load** (other work on the machine's cores)." if max(loads)[0] > 0.5 else "."),
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
