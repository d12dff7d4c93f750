#!/usr/bin/env python
"""Console benchmark: each web console page's server time over a large workspace.

    .venv/bin/python benchmarks/console.py [--quick] [--no-record] [--requests N]
    .venv/bin/python benchmarks/console.py --db /var/tmp/nudgeflow-console.db   # keep (and reuse) the data

The workspace (issue 16's sizes): 100 journeys (published, each with an A/B variant step, a
wait and a reminder, a tenth held out), 1,000 templates, 100,000 profiles, 1,000,000 messages
in the outbox (mostly sent; some failed, suppressed, deferred, dropped, as a real one has), the
journey runs they belong to, 5 events per person in the event log (and 600 more for one person,
user-1, whose timeline runs to a dozen pages), 10 segments, one template with two versions (to
compare), and the report rollups those messages and runs would have made, over the 90 days
before now. The journeys, templates and segments go through the store's own functions; the bulk
rows (profiles, identities, runs, messages, events) are inserted with plain SQL in large
transactions, as a restore would: this benchmark measures reading, not writing.

Then every console page that exists (the GET routes of web/console's page modules, their
path parameters filled with a seeded journey, template, segment or person; and their heavier
forms: the overview's longest period, People searches, a person's "why" for a journey and their
older timeline pages (followed by the page's own Older link), a segment's why-panel for a person
in it and one not, two template versions compared) is requested
--requests times in-process through the ASGI app (httpx over Starlette's TestClient, signed
in as an admin: no network, no engine running), after one warm-up request each. Per page:
the median and 95th percentile of the wall time and of the process's CPU time per request.
CPU time is what the page costs the server and is little moved by other work on the
machine; wall time is what a person waits, and grows when the machine is busy. Target:
<= 300 ms per page (issue 16). Results go to the "console benchmark" section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import sys

if sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)  # benchmarks/email.py would shadow the standard library's email package

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from benchmarks import ingest as ingest_bench  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DAY_MS = 86_400_000
TARGET_MS = 300.0
DEFAULTS = {"journeys": 100, "templates": 1_000, "profiles": 100_000, "messages": 1_000_000, "days": 90}
QUICK = {"journeys": 10, "templates": 100, "profiles": 2_000, "messages": 20_000, "days": 30}
EVENTS_PER_PERSON = 5
HISTORY = 600  # more events of the seeded person (user-1): their timeline's older pages
OLDER_PAGES = (2, 10)  # the person's timeline pages measured beside the first (50 items a page)
# What a kept --db must have been seeded with besides the sizes (bumped when the seed grows).
SEED_FORM = 2
SEGMENTS = 10
CHUNK = 50_000  # rows per transaction of the bulk stages
META = "bench_console"
EMAIL = "bench-admin@example.com"
PASSWORD = "benchmark-password-1"
# The share of messages by final status (the rest are sent).
STATUS_SHARES = (("failed", 0.02), ("suppressed", 0.03), ("dropped", 0.02), ("deferred", 0.01), ("logged", 0.01))
# A page's heavier forms, measured beside it: the overview's longest period.
VARIANTS = {
    "/": ("/?days=90",),
    # The People search: an exact userId, an email prefix, and no one (every index probed).
    "/people": ("/people?q=user-4242", "/people?q=user42%40exa", "/people?q=nobody-at-all"),
}
FAILURES = ("550 5.1.1 mailbox unavailable", "421 4.7.0 try again later", "template: missing variable first_name")
NOT_SENT_REASONS = {
    "suppressed": ("unsubscribed:*", "suppressed:hard_bounce", "no_target"),
    "dropped": ("frequency_cap:email-daily", "collision:journey-000", "quiet_hours"),
    "deferred": ("quiet_hours", "frequency_cap:email-daily"),
}


# The segment page's why-panel is measured for these: segment-00 holds the free plan, which
# every third person has (user-3), and not user-1's pro plan.
SEGMENT_PEOPLE = ("user-3", "user-1")


def journey_doc(i: int) -> dict[str, Any]:
    channel = "push" if i % 3 == 2 else "email"
    return {
        "id": f"journey-{i:03d}",
        "name": f"Journey {i}",
        "trigger": {"type": "event", "event": f"Event {i % 20}"},
        "holdout": 0.1,
        "goal": {"event": "Order Completed", "within": "7d", "revenue": "revenue"},
        "steps": {
            "first": {
                "type": "send",
                "channel": channel,
                "variants": [
                    {"name": "a", "template": f"t{i:03d}-a", "weight": 1},
                    {"name": "b", "template": f"t{i:03d}-b", "weight": 1},
                ],
                "next": "wait",
            },
            "wait": {"type": "wait", "duration": "1d", "next": "reminder"},
            "reminder": {"type": "send", "channel": channel, "template": f"t{i:03d}-reminder"},
        },
    }


def template_doc(name: str, push: bool) -> dict[str, Any]:
    if push:
        return {
            "channel": "push",
            "title": "Hi {{ profile.first_name | default: 'there' }}",
            "body": f"{name}: come back",
        }
    return {
        "channel": "email",
        "subject": "Hello {{ profile.first_name | default: 'there' }}",
        "body": f"<p>Hello {{{{ profile.first_name | default: 'there' }}}}, this is {name}.</p>",
    }


@dataclass
class Seeded:
    workspace_id: str
    journey_id: str
    template: str
    segment_id: str
    person: str  # a userId
    now_ms: int
    sizes: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    built_now: bool = True


class Stages:
    """One rich progress bar per stage, and its time."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.seconds: dict[str, float] = {}

    def run(self, name: str, total: int, chunks: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        start = time.perf_counter()
        with Progress(
            TextColumn(f"  {name:<12}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=self.out
        ) as bar:
            task = bar.add_task(name, total=total)
            for done in chunks:
                bar.update(task, advance=done)
        self.seconds[name] = time.perf_counter() - start


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a bulk load: the data is rebuilt if the run dies
    conn.execute("PRAGMA cache_size=-1048576")
    return conn


def insert(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" * len(rows[0]))
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.execute("COMMIT")


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def row_of(cols: list[str], values: dict[str, Any]) -> tuple[Any, ...]:
    """A row in the table's column order; a column not given is NULL (or its default below)."""
    return tuple(values.get(c) for c in cols)


def seed(path: Path, sizes: dict[str, int], out: Any) -> Seeded:
    from nudgeflow.content import compiled_templates
    from nudgeflow.content.templates import parse_source
    from nudgeflow.model.journeys import Journey
    from nudgeflow.model.segments import Segment
    from nudgeflow.store import database, rollups, segments
    from nudgeflow.store import journeys as journey_store
    from nudgeflow.store.workspaces import create_workspace

    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    stages = Stages(out)
    rng = random.Random(16)
    now_ms = int(time.time() * 1000)
    first_day_ms = now_ms - sizes["days"] * DAY_MS
    db = database.create_db_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    database.upgrade(db)
    with db.begin() as conn:
        ws = create_workspace(conn, "console benchmark", now_ms).workspace_id
    journeys = [journey_doc(i) for i in range(sizes["journeys"])]

    def store_journeys() -> Any:
        for i, doc in enumerate(journeys):
            with db.begin() as conn:
                journey_store.apply_draft(conn, ws, Journey.model_validate(doc), now_ms)
                journey_store.publish(conn, ws, doc["id"], now_ms, backfill=False)
            if i % 10 == 9:
                yield 10
        yield sizes["journeys"] % 10

    stages.run("journeys", sizes["journeys"], store_journeys())

    names = [f"t{i:03d}-{s}" for i in range(sizes["journeys"]) for s in ("a", "b", "reminder")]
    names += [f"template-{i:04d}" for i in range(sizes["templates"] - len(names))]
    names = names[: sizes["templates"]]

    def store_templates() -> Any:
        for k, name in enumerate(names):
            push = name[0] == "t" and name[1:4].isdigit() and int(name[1:4]) % 3 == 2
            with db.begin() as conn:
                compiled_templates.save_template(conn, ws, name, parse_source(template_doc(name, push)), now_ms)
            if k % 50 == 49:
                yield 50
        yield len(names) % 50

    stages.run("templates", len(names), store_templates())
    # A second version of the first template: the editor's compare page (?from=1&to=2).
    changed = {**template_doc(names[0], False), "subject": "Hello again {{ profile.first_name | default: 'there' }}"}
    with db.begin() as conn:
        compiled_templates.save_template(conn, ws, names[0], parse_source(changed), now_ms)

    segment_ids = [f"segment-{i:02d}" for i in range(SEGMENTS)]

    def store_segments() -> Any:
        for i, sid in enumerate(segment_ids):
            doc = {
                "id": sid,
                "name": f"Segment {i}",
                "when": {"trait": "plan", "op": "eq", "value": "pro" if i % 2 else "free"},
            }
            with db.begin() as conn:
                segments.apply(conn, ws, Segment.model_validate(doc), now_ms)
            yield 1

    stages.run("segments", SEGMENTS, store_segments())

    conn = raw(path)
    pcols, icols = columns(conn, "profiles"), columns(conn, "identities")

    def people() -> Any:
        for start in range(0, sizes["profiles"], CHUNK):
            prows, irows = [], []
            for i in range(start, min(start + CHUNK, sizes["profiles"])):
                created = first_day_ms + rng.randrange(sizes["days"] * DAY_MS)
                traits = f'{{"email": "user{i}@example.com", "first_name": "Name{i}", "plan": "{"pro" if i % 3 else "free"}"}}'
                prows.append(
                    row_of(
                        pcols,
                        {
                            "id": f"prf_{i:08d}",
                            "workspace_id": ws,
                            "user_id": f"user-{i}",
                            "traits": traits,
                            "created_at_ms": created,
                            "updated_at_ms": created,
                        },
                    )
                )
                irows.append(
                    row_of(
                        icols,
                        {
                            "workspace_id": ws,
                            "key": f"u:user-{i}",
                            "profile_id": f"prf_{i:08d}",
                            "created_at_ms": created,
                        },
                    )
                )
            insert(conn, "profiles", prows)
            insert(conn, "identities", irows)
            yield len(prows)

    stages.run("profiles", sizes["profiles"], people())

    # Runs and their messages: each treated run is sent two (a variant of `first`, then the
    # reminder); a tenth more are held out and sent nothing. The rollups are added up as the
    # rows are made, and written through store/rollups.Rollup at the end.
    rcols, ocols = columns(conn, "journey_runs"), columns(conn, "outbox")
    counters: dict[tuple[Any, ...], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    treated_runs = sizes["messages"] // 2

    def runs_and_messages() -> Any:
        made = 0
        run_no = 0
        while made < treated_runs:
            rrows, orows = [], []
            for _ in range(min(CHUNK // 2, treated_runs - made)):
                j = rng.randrange(sizes["journeys"])
                jid, channel = journeys[j]["id"], journeys[j]["steps"]["first"]["channel"]
                pid = f"prf_{rng.randrange(sizes['profiles']):08d}"
                entered = first_day_ms + rng.randrange(sizes["days"] * DAY_MS)
                day = entered // DAY_MS
                held = rng.random() < 0.1
                converted = rng.random() < 0.06
                revenue = round(rng.uniform(10, 200), 2) if converted else None
                run_no += 1
                run_id = f"run_{run_no:09d}"
                active = not held and rng.random() < 0.15
                rrows.append(
                    row_of(
                        rcols,
                        {
                            "id": run_id,
                            "workspace_id": ws,
                            "journey_id": jid,
                            "version": 1,
                            "profile_id": pid,
                            "status": "active" if active else "done",
                            "step": "reminder" if active else None,
                            "holdout": int(held),
                            "entered_at_ms": entered,
                            "ended_at_ms": None if active else entered + 2 * DAY_MS,
                            "converted_at_ms": entered + DAY_MS if converted else None,
                            "revenue": revenue,
                            "updated_at_ms": entered,
                            "control": 0,
                        },
                    )
                )
                run = counters[(jid, "", "", "", day)]
                if held:
                    run["held_out"] += 1
                    run["conversions_held_out"] += converted
                    run["revenue_held_out"] += revenue or 0.0
                    continue
                made += 1
                run["entered"] += 1
                run["recipients"] += 1
                run["conversions"] += converted
                run["revenue"] += revenue or 0.0
                variant = rng.choice("ab")
                arm = counters[(jid, "first", variant, "", day)]
                arm["arm_runs"] += 1
                arm["arm_conversions"] += converted
                arm["arm_revenue"] += revenue or 0.0
                for step, var, offset in (("first", variant, 0), ("reminder", "", DAY_MS)):
                    at = entered + offset
                    status = "sent"
                    roll = rng.random()
                    for name, share in STATUS_SHARES:
                        if roll < share:
                            status = name
                            break
                        roll -= share
                    error = rng.choice(FAILURES) if status == "failed" else None
                    reason = rng.choice(NOT_SENT_REASONS[status]) if status in NOT_SENT_REASONS else None
                    orows.append(
                        row_of(
                            ocols,
                            {
                                "workspace_id": ws,
                                "idempotency_key": f"{run_id}:{step}:1",
                                "profile_id": pid,
                                "run_id": run_id,
                                "journey_id": jid,
                                "journey_version": 1,
                                "step": step,
                                "channel": channel,
                                "template": f"t{j:03d}-{var or 'reminder'}",
                                "variant": var or None,
                                "marketing": 1,
                                "payload": "{}",
                                "status": status,
                                "attempts": 1,
                                "claims": 1,
                                "lost_claims": 0,
                                "next_attempt_at_ms": at + (DAY_MS if status == "deferred" else 0),
                                "created_at_ms": at,
                                "updated_at_ms": at,
                                "sent_at_ms": at if status == "sent" else None,
                                "error": error,
                                "reason": reason,
                            },
                        )
                    )
                    if status == "sent":
                        msg = counters[(jid, step, var, channel, at // DAY_MS)]
                        msg["sent"] += 1
                        msg["step_recipients"] += 1
                        delivered = rng.random() < 0.97
                        msg["delivered"] += delivered
                        opened = delivered and rng.random() < 0.3
                        msg["opens"] += opened
                        msg["clicks"] += opened and rng.random() < 0.2
                        if converted and opened and step == "first":
                            msg["attributed_conversions"] += 1
                            msg["attributed_revenue"] += revenue or 0.0
            insert(conn, "journey_runs", rrows)
            insert(conn, "outbox", orows)
            yield len(orows)

    stages.run("messages", treated_runs * 2, runs_and_messages())

    def write_rollups() -> Any:
        rollup = rollups.Rollup()
        for (jid, step, variant, channel, day), values in counters.items():
            rollup.add((ws, jid, 1, step, variant, channel, int(day)), **{k: v for k, v in values.items()})
        with db.begin() as c:
            rollup.write(c)
        yield len(counters)

    stages.run("rollups", len(counters), write_rollups())

    ecols = columns(conn, "events")
    events = sizes["profiles"] * EVENTS_PER_PERSON

    def track_row(k: int, i: int, name: str, at: int) -> Any:
        """The k-th stored event: person i tracked `name` at `at`."""
        return row_of(
            ecols,
            {
                "seq": k + 1,
                "workspace_id": ws,
                "message_id": f"m-{k}",
                "profile_id": f"prf_{i:08d}",
                "type": "track",
                "event": name,
                "user_id": f"user-{i}",
                "timestamp_ms": at,
                "received_at_ms": at,
                "payload": f'{{"type":"track","event":"{name}","userId":"user-{i}","properties":{{}}}}',
            },
        )

    def event_log() -> Any:
        names = ("Product Viewed", "Product Added", "Application Opened", "Order Completed")
        for start in range(0, events, CHUNK):
            rows = []
            for k in range(start, min(start + CHUNK, events)):
                i = k // EVENTS_PER_PERSON
                at = first_day_ms + rng.randrange(sizes["days"] * DAY_MS)
                name = names[k % len(names)]
                rows.append(track_row(k, i, name, at))
            insert(conn, "events", rows)
            yield len(rows)

    stages.run("events", events, event_log())

    def long_history() -> Any:
        """The seeded person's many more events: a regular's history, many timeline pages long."""
        rows = []
        for k in range(events, events + HISTORY):
            at = first_day_ms + rng.randrange(sizes["days"] * DAY_MS)
            rows.append(track_row(k, 1, "Product Viewed", at))
        insert(conn, "events", rows)
        yield len(rows)

    stages.run("history", HISTORY, long_history())
    # The engine has decided them all: no lag.
    conn.execute(
        "INSERT INTO engine_cursors (name, position, updated_at_ms) VALUES ('events', ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        (events + HISTORY, now_ms),
    )
    conn.execute("ANALYZE")
    conn.execute(f"CREATE TABLE {META} (workspace_id TEXT, now_ms INTEGER, sizes TEXT)")
    import json

    conn.execute(f"INSERT INTO {META} VALUES (?, ?, ?)", (ws, now_ms, json.dumps({**sizes, "form": SEED_FORM})))
    conn.close()
    db.dispose()
    return Seeded(ws, journeys[0]["id"], names[0], segment_ids[0], "user-1", now_ms, sizes, stages.seconds)


def reuse(path: Path, sizes: dict[str, int]) -> Seeded | None:
    """The seeded database at `path` when it was built for these sizes (by this seed's form)."""
    import json

    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(f"SELECT workspace_id, now_ms, sizes FROM {META}").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    if row is None or json.loads(row[2]) != {**sizes, "form": SEED_FORM}:
        return None
    return Seeded(row[0], "journey-000", "t000-a", "segment-00", "user-1", int(row[1]), sizes, built_now=False)


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class PageFigures:
    path: str
    status: int
    wall_ms: list[float]
    cpu_ms: list[float]
    size_kb: float


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def routes_of(routes: Any, prefix: str = "") -> Any:
    """(prefix, route) of every route, through included routers (FastAPI includes them lazily)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from routes_of(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix, route


def console_pages(app: Any, seeded: Seeded) -> tuple[list[str], list[str]]:
    """The console's page URLs to measure (GET routes of web/console's modules, parameters
    filled), and the routes left out because a parameter has no seeded value."""
    from fastapi.routing import APIRoute

    fill = {
        "journey_id": seeded.journey_id,
        "name": seeded.template,
        "template_name": seeded.template,
        "segment_id": seeded.segment_id,
        "ref": seeded.person,
    }
    skip = {"/sign-in", "/sign-out", "/console/static/{path:path}"}
    urls, left_out = [], []
    for prefix, route in routes_of(app.routes):
        if not isinstance(route, APIRoute) or "GET" not in route.methods:
            continue
        path = prefix + route.path
        if (
            not route.endpoint.__module__.startswith("nudgeflow.web.console")
            or path in skip
            or path.startswith("/api/")
        ):
            continue
        for name in route.param_convertors:
            if name == "id":  # /journeys/{id}, /segments/{id}: by the path's area
                value = seeded.segment_id if path.startswith("/segments") else seeded.journey_id
            else:
                value = fill.get(name)
            if value is None:
                left_out.append(prefix + route.path)
                break
            path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
        else:
            urls.append(path)
            urls.extend(VARIANTS.get(path, ()))
            if route.path == "/people/{ref:path}":  # the person page answering "why" for a journey
                urls.append(f"{path}?journey={seeded.journey_id}")
            if route.path == "/templates/{name}":  # its first two versions compared
                urls.append(f"{path}?from=1&to=2")
            if route.path == "/segments/{segment_id}":  # the why-panel: a person in it, one not
                urls += [f"{path}?person={person}" for person in SEGMENT_PEOPLE]
    return urls, left_out


def older_pages(client: Any, first: str) -> list[str]:
    """The URLs of the person's older timeline pages in OLDER_PAGES, reached as a person reaches
    them: by the page's own Older link (its cursor), from the first page."""
    import html
    import re

    found, url = [], first
    for number in range(2, max(OLDER_PAGES) + 1):
        page = client.get(url, follow_redirects=False).text
        older = re.search(r'<a href="(\?before=[^"]+)" data-testid="timeline-older"', page)
        if older is None:
            raise SystemExit(f"{url} has no Older link (page {number - 1}): has the person's timeline changed?")
        url = first.split("?")[0] + html.unescape(older.group(1))
        if number in OLDER_PAGES:
            found.append(url)
    return found


def add_admin(app: Any, seeded: Seeded) -> None:
    """The console user the pages are requested as (an admin sees every page), once."""
    from nudgeflow.store import console_users

    with app.state.nudgeflow.engine.begin() as conn:
        if console_users.find_user(conn, seeded.workspace_id, EMAIL) is None:
            console_users.create_user(conn, seeded.workspace_id, EMAIL, console_users.ADMIN, PASSWORD, seeded.now_ms)


def sign_in(client: Any) -> None:
    """Through the sign-in form, as a browser does: its token, then email and password."""
    import re

    form = client.get("/sign-in").text
    token = re.search(r'name="form_token" value="([^"]+)"', form)
    if token is None:
        raise SystemExit("the sign-in form has no form_token: has the console's sign-in changed?")
    signed = client.post(
        "/sign-in", data={"form_token": token.group(1), "email": EMAIL, "password": PASSWORD}, follow_redirects=False
    )
    if signed.status_code not in (302, 303) or "nf_session" not in client.cookies:
        raise SystemExit(f"could not sign in: {signed.status_code} {signed.text[:200]}")


def measure(path: Path, seeded: Seeded, requests: int, out: Any) -> tuple[list[PageFigures], list[str]]:
    from starlette.testclient import TestClient

    from nudgeflow.settings import Settings
    from nudgeflow.store import database
    from nudgeflow.web.app import create_app

    db = database.create_db_engine(f"sqlite:///{path}")
    database.upgrade(db)  # a kept database may predate a migration of the code measured
    db.dispose()
    settings = Settings(database_url=f"sqlite:///{path}", engine_enabled=False, ingest_rate_per_second=0)
    app = create_app(settings)
    add_admin(app, seeded)
    figures = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        sign_in(client)
        urls, left_out = console_pages(app, seeded)
        person = f"/people/{seeded.person}"
        if person in urls:
            at = urls.index(person) + 1
            urls[at:at] = older_pages(client, person)
        for url in urls:
            response = client.get(url, follow_redirects=False)  # warm-up: templates compiled, caches filled
            walls, cpus = [], []
            for _ in range(requests):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                response = client.get(url, follow_redirects=False)
                walls.append((time.perf_counter() - wall0) * 1000)
                cpus.append((time.process_time() - cpu0) * 1000)
            figures.append(PageFigures(url, response.status_code, walls, cpus, len(response.content) / 1024))
            out.print(
                f"  {url:<40} {response.status_code}  median {statistics.median(walls):7.1f} ms wall, {statistics.median(cpus):7.1f} ms CPU"
            )
    return figures, left_out


def rows_of(figures: list[PageFigures]) -> list[tuple[str, str, str, str]]:
    rows = []
    for f in figures:
        p95_cpu = pct(f.cpu_ms, 0.95)
        ok = f.status < 400 and p95_cpu <= TARGET_MS
        rows.append(
            (
                f"{f.path} ({f.status}, {f.size_kb:.0f} KB)",
                f"CPU {statistics.median(f.cpu_ms):.1f} / {p95_cpu:.1f} ms; wall {statistics.median(f.wall_ms):.1f} / {pct(f.wall_ms, 0.95):.1f} ms",
                f"<= {TARGET_MS:.0f} ms",
                "met" if ok else "missed",
            )
        )
    return rows


def main() -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the benchmark out")
    parser.add_argument("--db", type=Path, help="keep the seeded database here and reuse it when it fits")
    parser.add_argument("--requests", type=int, default=20, help="requests per page (after one warm-up)")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    for name, value in DEFAULTS.items():
        parser.add_argument(
            f"--{name}", type=int, default=None, help=f"default {value:,} ({QUICK[name]:,} with --quick)"
        )
    args = parser.parse_args()
    sizes = {name: getattr(args, name) or (QUICK if args.quick else DEFAULTS)[name] for name in DEFAULTS}
    out = Console(width=150)
    info = ingest_bench.machine()
    ingest_bench.announce("console", info, out)
    with tempfile.TemporaryDirectory(prefix="nudgeflow-console-") as tmp:
        path = args.db or Path(tmp) / "console.db"
        seeded = reuse(path, sizes) if args.db else None
        if seeded is None:
            out.print(
                f"Seeding {sizes['journeys']:,} journeys, {sizes['templates']:,} templates, {sizes['profiles']:,} profiles, "
                f"{sizes['messages']:,} messages over {sizes['days']} days into {path}"
            )
            seeded = seed(path, sizes, out)
        else:
            out.print(f"Reusing the database seeded earlier at {path}")
        load_before = ingest_bench.os.getloadavg()
        figures, left_out = measure(path, seeded, args.requests, out)
        load_after = ingest_bench.os.getloadavg()
        size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
    rows = rows_of(figures)
    out.print(ingest_bench.results_table("Console pages' server time (median / p95)", rows))
    if left_out:
        out.print(f"Not measured (no seeded value for a path parameter): {', '.join(left_out)}")
    if not args.no_record:
        record(args, info, sizes, seeded, rows, left_out, size_mb, (load_before, load_after))
        out.print(f"Recorded in {RESULTS.relative_to(ROOT)}")


def record(
    args: argparse.Namespace,
    info: dict[str, str],
    sizes: dict[str, int],
    seeded: Seeded,
    rows: list[tuple[str, str, str, str]],
    left_out: list[str],
    size_mb: float,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> None:
    command = (
        "python benchmarks/console.py"
        + (" --quick" if args.quick else "")
        + (f" --requests {args.requests}" if args.requests != 20 else "")
    )
    busy = max(loads[0][0], loads[1][0]) > 1.0  # more than half the 2 cores' worth of other work
    met = sum(1 for row in rows if row[3] == "met")
    latest = [
        f"## Latest console run: {info['date']}",
        "",
        f"`{command}`: {sizes['journeys']:,} journeys, {sizes['templates']:,} templates, {sizes['profiles']:,} profiles, "
        f"{sizes['messages']:,} messages ({sizes['messages'] // 2:,} treated runs and their holdout), "
        f"{sizes['profiles'] * EVENTS_PER_PERSON + HISTORY:,} events, {SEGMENTS} segments over {sizes['days']} days; the database "
        f"{size_mb:,.0f} MB"
        + (
            f", seeded in {sum(seeded.seconds.values()):.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seeded.seconds.items())})."
            if seeded.built_now
            else f", seeded by an earlier run (`--db {args.db}`)."
        ),
        f"Each page {args.requests} times in-process through the ASGI app, signed in as an admin, after one warm-up: "
        "median / 95th percentile of the process's CPU time per request (what the page costs the server) and of "
        f"the wall time. {met} of {len(rows)} pages within the target (p95 CPU time, and an answer below 400).",
        "",
        "Load average (1, 5, 15 min) before and after measuring: "
        + " and ".join(" ".join(f"{x:.2f}" for x in load) for load in loads)
        + (
            ": **taken under load** (other work shared the cores), so the wall times are inflated; "
            "the CPU times are the figure to judge by."
            if busy
            else ": a quiet spell on a machine shared with other work; the CPU times are still the figure to judge by."
        ),
        "",
        "| page | figure (median / p95) | target | |",
        "| --- | ---: | --- | --- |",
        *[f"| `{m}` | {f} | {t} | {ok} |" for m, f, t, ok in rows],
        "",
        *([f"Not measured (no seeded value for a path parameter): {', '.join(left_out)}.", ""] if left_out else []),
        *ingest_bench.machine_lines(info, f"{info['os']}, Python {info['python']}, SQLite {info['sqlite']}", disk=True),
    ]
    slowest = max(rows, key=lambda r: float(r[1].split("/")[1].split("ms")[0])) if rows else None
    history_line = (
        f"| {info['date']} | {info['commit']} | {sizes['messages']:,} | {met}/{len(rows)} | "
        f"{slowest[0] + ': ' + slowest[1] if slowest else ''} | {info['load']} |"
    )
    ingest_bench.write_section(
        RESULTS,
        "console",
        latest,
        [
            "| date | commit | messages | pages within 300 ms | slowest page (p95 CPU) | load |",
            "| --- | --- | ---: | --- | --- | --- |",
        ],
        history_line,
    )


if __name__ == "__main__":
    main()
