#!/usr/bin/env python
"""Distributed benchmark: the roles of `nudgeflow serve` as processes of their own on PostgreSQL.

    .venv/bin/python benchmarks/distributed.py [--quick] [--no-record] [--events N] [--postgres URL] ...

--quick (10,000 events, 3-second /v1/track runs) takes about a minute and a half on a busy
2-core machine; the default (200,000 events, 10-second runs) several minutes. The roles'
processes run the nudgeflow that `python -m nudgeflow.cli` imports (PYTHONPATH=src for a
checkout's own).

Every process is a real `nudgeflow serve --role ...` subprocess on loopback, against a
PostgreSQL database the benchmark creates (a copy of a migrated template with one workspace
and every journey of examples/journeys published) and drops at the end: one per
configuration, so that each starts empty. No dispatch process runs: the engine queues the
messages its journeys send (email and push) in the outbox and nothing sends them, which
changes nothing about events/s (the outbox rows are written either way; sending is the
dispatchers' work, measured by benchmarks/email.py and push.py). There is no NATS in the
event path (docs/design/distributed-runtime.md): an event is acknowledged once PostgreSQL has
committed it, and engine workers read it back by partition and offset. NATS's cost is 0.

  A  end to end, for each configuration of API and engine processes (1 + 1, 1 + 2, 2 + 1,
     2 + 2 by default, --configs): --events generated Segment messages of a shop and its app
     (benchmarks/engine.py's workload: --profiles people, track, identify, page and screen),
     sent through /v1/batch in bodies of --batch messages from --clients concurrent
     keep-alive connections spread evenly over the API processes; the clock runs from the
     first send until every partition's position has reached its head (lag 0 in `nudgeflow
     status`), read off the time the last position was written. The engine workers are
     started first and the measure waits until they share the 64 partitions evenly. Shown
     beside it: the ingest rate alone (first send to last answer) and the lag left when the
     last batch was answered.
     CPU per event of each component, from /proc before and after: the API processes, the
     engine processes (all their threads), PostgreSQL, and the load generator (the thread
     of its event loop) on its own. PostgreSQL is counted two ways: the backends of the
     benchmark's database (the roles' connections, autovacuum) plus the server's WAL
     writer, checkpointer and background writer; and every postgres process on the machine,
     before/after. The machine is shared: the second includes whatever else uses the server
     at that time, the first only the neighbours' share of the three background processes.
  B  /v1/track at saturation, as benchmarks/ingest.py measures it: single-event requests
     from --connections closed-loop connections (split evenly over the API processes) for
     --track-seconds after a --warmup, with 1 API process and then 2, in the same run, each
     on a fresh database. No engine process runs (--track-engine starts one): ingest
     alone. Its CPU per request by component too.

From the per-event costs of the largest configuration measured (2 API + 2 engine processes
by default), a paper estimate of the events/s of a 3-node and a 10-node deployment, its
assumptions printed with it (cores per node, what runs where, PostgreSQL on a node of its
own as the one writer). Results go to the "distributed benchmark" section of
benchmarks/RESULTS.md (with --no-record, nowhere).
"""

from __future__ import annotations

import sys

# Python puts this script's directory first on sys.path, where benchmarks/email.py would
# shadow the standard library's email package (which importlib.metadata needs).
if sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "src"))  # when nudgeflow is not installed
sys.path.insert(0, str(ROOT))  # the benchmarks package (not benchmarks/ itself: see above)
from benchmarks import engine as engine_bench  # noqa: E402
from benchmarks import ingest as ingest_bench  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The server-wide PostgreSQL processes that write and flush what the benchmark's backends
# change (pg_stat_activity.backend_type): counted with them.
PG_BACKGROUND = ("walwriter", "checkpointer", "background writer")

console = Console(width=None if sys.stdout.isatty() else 130)


# -- PostgreSQL: a database of the run's own, and the CPU of its processes ------------------

@contextmanager
def scratch_database(admin_url: str, prefix: str, *, template: str | None = None) -> Iterator[tuple[str, str]]:
    """(name, url) of a new database, a copy of `template` (CREATE DATABASE ... TEMPLATE, a
    file copy) or migrated to the newest schema; dropped on the way out, whoever is still
    connected."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from nudgeflow.store import database

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database.normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if template is None:
            engine = database.create_db_engine(url)
            database.upgrade(engine)
            engine.dispose()
        yield name, url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def proc_cpu(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of a process (all its threads); with `reaped`, also those of
    its children that exited and were waited for. 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / CLK_TCK


def all_postgres_cpu() -> float:
    """CPU seconds of every postgres process on the machine. A backend that exits is reaped
    by the postmaster, whose children's time then counts it: the sum only grows."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += proc_cpu(int(entry.name), reaped=True)
    return total


class PostgresCpu:
    """The CPU of the PostgreSQL processes working for one database: its backends (the roles'
    connections and autovacuum, not the benchmark's own poller) and the server's WAL
    writer, checkpointer and background writer. Read per process id from /proc: a backend
    that starts and exits between two readings is missed (the roles keep pooled connections,
    so few do)."""

    def __init__(self, admin: Any, database: str, exclude: set[int]) -> None:
        self.admin = admin
        self.database = database
        self.exclude = exclude

    def pids(self) -> list[int]:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db OR backend_type = ANY(:bg)"),
                {"db": self.database, "bg": list(PG_BACKGROUND)},
            ).all()
        return [int(r[0]) for r in rows if int(r[0]) not in self.exclude]

    def snapshot(self) -> dict[int, float]:
        return {pid: proc_cpu(pid) for pid in self.pids()}

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def postgres_settings(admin: Any) -> str:
    from sqlalchemy import text

    with admin.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar()
        values = [
            f"{name} {conn.execute(text(f'SHOW {name}')).scalar()}"
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        ]
    return f"PostgreSQL {version} ({', '.join(values)})"


# -- the roles ----------------------------------------------------------------------------------

class RoleServer(ingest_bench.Server):
    """`nudgeflow serve --role ROLE` in a subprocess on a PostgreSQL database already holding
    the benchmark's workspace; ingest's rate limit off, as in benchmarks/ingest.py."""

    def __init__(self, directory: Path, role: str, name: str, url: str, write_key: str) -> None:
        super().__init__(directory, name)
        self.role = role
        self.url = url
        self.write_key = write_key
        self.stop_timeout = 60.0  # an engine finishes its batch and gives its leases back first

    def serve_args(self) -> list[str]:
        return ["serve", "--role", self.role, "--port", str(self.port)]

    def start(self) -> RoleServer:
        self.launch()
        return self


@dataclass
class Deployment:
    """The processes of one configuration, on one fresh database."""

    name: str
    url: str
    db_name: str
    apis: list[RoleServer] = field(default_factory=list)
    engines: list[RoleServer] = field(default_factory=list)
    db: Any = None  # the benchmark's own engine on the database (the poller), pool of one
    poller_pid: int = 0

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of (the API processes, the engine processes)."""
        return sum(s.cpu_seconds() for s in self.apis), sum(s.cpu_seconds() for s in self.engines)

    def lags(self) -> list[tuple[int, int, int]]:
        from nudgeflow.store import partition_work

        with self.db.connect() as conn:
            return partition_work.partition_lags(conn)

    def balanced(self) -> bool:
        """Every engine process registered, and the partitions shared out by the rebalance
        rule (docs/partitions.md): floor(64 / n) each, one more for the first 64 mod n."""
        from nudgeflow.model.partitions import DEFAULT_PARTITIONS
        from nudgeflow.store import partition_leases

        now_ms = int(time.time() * 1000)
        with self.db.connect() as conn:
            workers = [w for w in partition_leases.workers(conn) if w.stopped_at_ms is None]
            held = Counter(lease.owner for lease in partition_leases.leases(conn) if lease.held(now_ms))
        n = len(self.engines)
        if len(workers) != n or sum(held.values()) != DEFAULT_PARTITIONS:
            return False
        want = sorted(DEFAULT_PARTITIONS // n + (1 if i < DEFAULT_PARTITIONS % n else 0) for i in range(n))
        return sorted(held[w.id] for w in workers) == want

    def last_decision_ms(self) -> int:
        from nudgeflow.store import partition_leases

        with self.db.connect() as conn:
            return max((p.updated_at_ms for p in partition_leases.positions(conn).values()), default=0)

    def messages_queued(self) -> int:
        from nudgeflow.store import backlog

        with self.db.connect() as conn:
            return backlog.outbox_backlog(conn, int(time.time() * 1000)).pending


@contextmanager
def deployment(
    args: argparse.Namespace, tmp: Path, template: str, write_key: str, name: str, apis: int, engines: int
) -> Iterator[Deployment]:
    """A fresh copy of the template database with `engines` engine processes (started first,
    and sharing the partitions evenly before this returns) and `apis` API processes."""
    from sqlalchemy import text

    from nudgeflow.store import database

    with ExitStack() as stack:
        db_name, url = stack.enter_context(scratch_database(args.postgres, "nudgeflow_bench", template=template))
        dep = Deployment(name, url, db_name)
        dep.db = database.create_db_engine(url, pool_size=1)
        stack.callback(dep.db.dispose)
        with dep.db.connect() as conn:
            dep.poller_pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        for i in range(engines):
            dep.engines.append(stack.enter_context(RoleServer(tmp, "engine", f"{name}-engine{i}", url, write_key)))
        for i in range(apis):
            dep.apis.append(stack.enter_context(RoleServer(tmp, "api", f"{name}-api{i}", url, write_key)))
        if engines:
            deadline = time.monotonic() + 60
            while not dep.balanced():
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: the engine processes did not share the partitions within 60 s")
                time.sleep(0.1)
        yield dep


# -- the load -------------------------------------------------------------------------------------

def batch_bodies(sent: list[tuple[str, bytes]], per_body: int) -> list[tuple[bytes, int]]:
    """The messages (each with its `type`) packed into /v1/batch bodies of `per_body`, with
    their counts."""
    bodies = []
    for at in range(0, len(sent), per_body):
        chunk = [body for _, body in sent[at : at + per_body]]
        bodies.append((b'{"batch":[' + b",".join(chunk) + b"]}", len(chunk)))
    return bodies


def spread(requests: list[Any], parts: int) -> list[list[Any]]:
    """Every `parts`-th request to each part: the API processes get the load evenly."""
    return [requests[i::parts] for i in range(parts)]


def run_spread(
    servers: list[RoleServer],
    path: str,
    bodies: list[bytes],
    connections: int,
    seconds: float | None,
    warmup: float,
    advance: Callable[[int], None],
) -> list[ingest_bench.LoadResult]:
    """benchmarks/ingest.py's closed loop against every server at once, the bodies and the
    connections shared out evenly; one result per server."""
    parts = spread(bodies, len(servers))
    per_server = max(1, connections // len(servers))

    async def all_of_them() -> list[ingest_bench.LoadResult]:
        return list(
            await asyncio.gather(
                *(
                    ingest_bench.closed_loop(
                        server.port,
                        [ingest_bench.request_bytes(server.port, path, server.write_key, b) for b in part],
                        per_server,
                        seconds,
                        warmup,
                        advance,
                    )
                    for server, part in zip(servers, parts, strict=True)
                )
            )
        )

    return list(ingest_bench.run_async(all_of_them()))


def check(results: list[ingest_bench.LoadResult], what: str, dep: Deployment) -> None:
    for result, server in zip(results, dep.apis, strict=True):
        ingest_bench._check(result, what, server)


# -- phase A: end to end ---------------------------------------------------------------------------

@dataclass
class Costs:
    """CPU seconds spent by each component over a measure, and what they are divided by."""

    units: int = 0  # events (phase A) or requests (phase B)
    wall: float = 0.0
    api: float = 0.0
    engine: float = 0.0
    pg: float = 0.0  # this database's backends + WAL writer, checkpointer, background writer
    pg_all: float = 0.0  # every postgres process on the machine
    client: float = 0.0

    def us(self, seconds: float) -> float:
        return seconds / self.units * 1e6 if self.units else 0.0

    def cores(self, seconds: float) -> float:
        return seconds / self.wall if self.wall else 0.0


@dataclass
class EndToEnd:
    apis: int
    engines: int
    events: int
    seconds: float  # first send to lag 0
    ingest_seconds: float  # first send to last answer
    lag_at_sent: int  # events not yet decided when the last batch was answered
    messages_queued: int
    costs: Costs

    @property
    def label(self) -> str:
        return f"{self.apis} API + {self.engines} engine"

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ingest_rate(self) -> float:
        return self.events / self.ingest_seconds


class Meter:
    """CPU of every component between start() and stop()."""

    def __init__(self, dep: Deployment, admin: Any) -> None:
        self.dep = dep
        self.pg = PostgresCpu(admin, dep.db_name, {dep.poller_pid})

    def start(self) -> None:
        self.t0 = time.time()
        self.client0 = ingest_bench.thread_cpu_seconds()
        self.api0, self.engine0 = self.dep.cpu()
        self.pg0 = self.pg.snapshot()
        self.pg_all0 = all_postgres_cpu()

    def client_done(self) -> None:
        """The load generator's part ends with the load (the wait for lag 0 is not its cost)."""
        self.client = ingest_bench.thread_cpu_seconds() - self.client0

    def stop(self, units: int, wall: float) -> Costs:
        api, engine = self.dep.cpu()
        return Costs(
            units=units,
            wall=wall,
            api=api - self.api0,
            engine=engine - self.engine0,
            pg=PostgresCpu.spent(self.pg0, self.pg.snapshot()),
            pg_all=all_postgres_cpu() - self.pg_all0,
            client=self.client,
        )


def run_end_to_end(
    args: argparse.Namespace, tmp: Path, template: str, write_key: str, admin: Any,
    sent: list[tuple[str, bytes]], apis: int, engines: int, progress: Progress,
) -> EndToEnd:
    bodies = batch_bodies(sent, args.batch)
    task = progress.add_task(f"A: {apis} API + {engines} engine", total=len(bodies), info="starting processes")
    with deployment(args, tmp, template, write_key, f"a{apis}x{engines}", apis, engines) as dep:
        meter = Meter(dep, admin)
        progress.update(task, info="sending")
        meter.start()
        results = run_spread(dep.apis, "/v1/batch", [b for b, _ in bodies], args.clients, None, 0.0, lambda n: progress.advance(task, n))
        sent_at = time.time()
        meter.client_done()
        check(results, "/v1/batch", dep)
        lag_at_sent = sum(head - position for _, head, position in dep.lags())
        progress.update(task, info=f"sent; waiting for lag 0 ({lag_at_sent:,} to decide)")
        deadline = time.monotonic() + args.drain_timeout
        while True:
            lags = dep.lags()
            behind = sum(max(0, head - position) for _, head, position in lags)
            if behind == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{dep.name}: {behind:,} events still undecided {args.drain_timeout:g} s after the last send")
            progress.update(task, info=f"sent; waiting for lag 0 ({behind:,} to decide)")
            time.sleep(0.05)
        # The moment the last partition reached its head, as the engine wrote it (same
        # machine, same clock); never before the last answer.
        done_at = max(dep.last_decision_ms() / 1000, sent_at)
        costs = meter.stop(len(sent), done_at - meter.t0)
        logged = sum(head for _, head, _ in lags)
        if logged != len(sent):
            raise SystemExit(f"{dep.name}: the event log holds {logged:,} events of the {len(sent):,} sent")
        figures = EndToEnd(
            apis, engines, len(sent), done_at - meter.t0, sent_at - meter.t0, lag_at_sent, dep.messages_queued(), costs
        )
    progress.update(task, info=f"{figures.rate:,.0f} events/s end to end (ingest {figures.ingest_rate:,.0f}/s)")
    return figures


# -- phase B: /v1/track at saturation, 1 API process against 2 -------------------------------------

@dataclass
class Track:
    apis: int
    engines: int
    rate: float
    p50: float
    p99: float
    costs: Costs


def run_track(
    args: argparse.Namespace, tmp: Path, template: str, write_key: str, admin: Any,
    tracks: list[bytes], apis: int, progress: Progress,
) -> Track:
    engines = 1 if args.track_engine else 0
    task = progress.add_task(f"B: /v1/track, {apis} API", total=None, info="starting processes")
    with deployment(args, tmp, template, write_key, f"b{apis}", apis, engines) as dep:
        meter = Meter(dep, admin)
        progress.update(task, info="")
        answered = [0]

        def advance(n: int) -> None:
            answered[0] += n
            progress.advance(task, n)

        meter.start()
        t0 = time.perf_counter()
        results = run_spread(dep.apis, "/v1/track", tracks, args.connections, args.track_seconds, args.warmup, advance)
        wall = time.perf_counter() - t0
        meter.client_done()
        check(results, "/v1/track", dep)
        costs = meter.stop(answered[0], wall)
        logged = sum(head for _, head, _ in dep.lags())
        if logged != answered[0]:
            raise SystemExit(f"{dep.name}: the event log holds {logged:,} events of the {answered[0]:,} answered")
    merged = ingest_bench.LoadResult(
        done=sum(r.done for r in results),
        elapsed=max(r.elapsed for r in results),
        latencies=[x for r in results for x in r.latencies],
    )
    progress.update(task, info=f"{merged.rate:,.0f} req/s")
    return Track(apis, engines, merged.rate, merged.pct(0.5), merged.pct(0.99), costs)


# -- the paper estimate ---------------------------------------------------------------------------

@dataclass
class Estimate:
    nodes: int
    rate: float
    bound: str
    pg_bound: float
    app_bound: float
    engine_cap: float
    app_cores: int


def estimate(costs: Costs, nodes: int, node_cores: int, utilization: float) -> Estimate:
    """Events/s of `nodes` nodes of `node_cores` cores each, from the per-event CPU measured:
    PostgreSQL alone on one node; API and engine processes on the others, one process per
    core (a Python process uses one core for its Python: the GIL), in the proportion of
    their costs; every core busy at most `utilization`; engine processes at most one per
    partition (64)."""
    from nudgeflow.model.partitions import DEFAULT_PARTITIONS

    api_us, engine_us, pg_us = costs.us(costs.api), costs.us(costs.engine), costs.us(costs.pg)
    app_cores = (nodes - 1) * node_cores
    pg_bound = node_cores * utilization / pg_us * 1e6
    app_bound = app_cores * utilization / (api_us + engine_us) * 1e6
    engine_cap = DEFAULT_PARTITIONS * utilization / engine_us * 1e6
    rate = min(pg_bound, app_bound, engine_cap)
    bound = "PostgreSQL" if rate == pg_bound else ("API + engine cores" if rate == app_bound else "64 partitions")
    return Estimate(nodes, rate, bound, pg_bound, app_bound, engine_cap, app_cores)


def assumptions(args: argparse.Namespace, basis: EndToEnd) -> list[str]:
    c = basis.costs
    return [
        f"per-event CPU of the {basis.label} run above (/v1/batch bodies of {args.batch}): API {c.us(c.api):.0f} us, "
        f"engine {c.us(c.engine):.0f} us, PostgreSQL {c.us(c.pg):.0f} us (this database's backends and the WAL writer, "
        "checkpointer and background writer), on cores like this machine's;",
        f"every node has {args.node_cores} such cores, used to {args.utilization:.0%} at most (headroom for spikes, "
        "failover and the dispatchers, whose sending is not counted);",
        "PostgreSQL alone on one node, the one writer every event goes through (a 3-node deployment: 1 PostgreSQL + "
        "2 nodes of API and engine processes; 10 nodes: 1 + 9); no replica's or backup's cost;",
        "API and engine processes share the other nodes, one process per core (each runs its Python on one core), "
        "in the proportion of their costs; at most one engine process per partition (64);",
        "CPU alone: no disk or network limit (this machine's fsync is cheap: on a slower disk PostgreSQL's commits "
        "bound it sooner), and the load balancer and clients run elsewhere. Single-event /v1/track ingest costs "
        "more per event than batches (phase B).",
    ]


# -- the run ---------------------------------------------------------------------------------------

@dataclass
class Figures:
    runs: list[EndToEnd] = field(default_factory=list)
    track: list[Track] = field(default_factory=list)
    events: int = 0
    profiles: int = 0
    payload_bytes: float = 0.0
    pg: str = ""
    seconds: float = 0.0


def run(args: argparse.Namespace) -> Figures:
    from sqlalchemy import create_engine

    from nudgeflow.core.clock import SystemClock, to_ms
    from nudgeflow.store import database

    figures = Figures(events=args.events, profiles=args.profiles)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="nudgeflow-bench-"))
    admin = create_engine(database.normalize_url(args.postgres), isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        figures.pg = postgres_settings(admin)
        with ExitStack() as stack:
            with console.status("migrating a template database, publishing the example journeys, generating the events"):
                template, url = stack.enter_context(scratch_database(args.postgres, "nudgeflow_bench_tpl"))
                db = database.create_db_engine(url)
                workspace_id, write_key = engine_bench.publish_examples(db)
                db.dispose()  # CREATE DATABASE ... TEMPLATE wants nobody connected to it
                now_ms = to_ms(SystemClock().now())
                work = engine_bench.generate(
                    args.profiles, args.events, args.seed, now_ms - int(args.span * 1000), now_ms, workspace_id, rows=False
                )
                figures.payload_bytes = work.payload_bytes
                track_work = ingest_bench.generate(args.track_events, args.users, args.seed) if "b" in args.phases else None
                tracks = [track_work.encoded[i] for i in track_work.track_indexes] if track_work else []
            console.print(
                f"{args.events:,} events of {args.profiles:,} people ({work.payload_bytes:.0f} bytes each as stored) for "
                f"phase A; {len(tracks):,} /v1/track bodies for phase B; {figures.pg}"
            )
            progress = Progress(
                TextColumn("[bold]{task.description:<30}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                console=console,
            )
            with progress:
                for apis, engines in args.configs if "a" in args.phases else ():
                    figures.runs.append(
                        run_end_to_end(args, tmp, template, write_key, admin, work.sent, apis, engines, progress)
                    )
                for apis in (1, 2) if tracks and "b" in args.phases else ():
                    figures.track.append(run_track(args, tmp, template, write_key, admin, tracks, apis, progress))
    finally:
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    figures.seconds = time.perf_counter() - started
    return figures


def basis_run(figures: Figures) -> EndToEnd | None:
    """The run the estimate is made from: the one with the most processes (the costs of a
    deployment where every role has company), the latest of equals."""
    return max(reversed(figures.runs), key=lambda r: (r.apis + r.engines, r.engines), default=None)


def report(figures: Figures, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Rows of (measure, figure, ratio / comparison, verdict), for the console and RESULTS.md."""
    rows: list[tuple[str, str, str, str]] = []
    first = figures.runs[0] if figures.runs else None
    for r in figures.runs:
        c = r.costs
        rows.append((
            f"A: {r.label}: event sent -> decided (lag 0), /v1/batch of {args.batch}",
            f"{r.rate:,.0f} events/s",
            f"{r.rate / first.rate:.2f} x {first.label}" if first and r is not first else "",
            "",
        ))
        rows.append((
            "  ingest alone (first send -> last answer); lag then",
            f"{r.ingest_rate:,.0f} events/s",
            f"{r.lag_at_sent:,} events left to decide",
            "",
        ))
        rows.append((
            "  CPU per event: API / engine / PostgreSQL (this db; whole machine)",
            f"{c.us(c.api):.0f} / {c.us(c.engine):.0f} / {c.us(c.pg):.0f} us ({c.us(c.pg_all):.0f})",
            f"load generator {c.us(c.client):.0f} us; NATS 0 (not in the path)",
            "",
        ))
    one = next((t for t in figures.track if t.apis == 1), None)
    for t in figures.track:
        c = t.costs
        rows.append((
            f"B: /v1/track at saturation, {t.apis} API process{'es' if t.apis > 1 else ''}, "
            f"{'1 engine' if t.engines else 'no engine'} ({args.connections} conns)",
            f"{t.rate:,.0f} req/s",
            f"{t.rate / one.rate:.2f} x 1 API" if one and t is not one else f"p50 {t.p50:.1f} ms, p99 {t.p99:.1f} ms",
            "",
        ))
        if one and t is not one:
            rows.append(("  latency", f"p50 {t.p50:.1f} ms, p99 {t.p99:.1f} ms", "", ""))
        rows.append((
            "  CPU per request: API / PostgreSQL (this db; whole machine)" + (" / engine" if t.engines else ""),
            f"{c.us(c.api):.0f} / {c.us(c.pg):.0f} us ({c.us(c.pg_all):.0f})" + (f" / {c.us(c.engine):.0f} us" if t.engines else ""),
            f"load generator {c.us(c.client):.0f} us",
            "",
        ))
    basis = basis_run(figures)
    if basis is not None:
        for nodes in (3, 10):
            e = estimate(basis.costs, nodes, args.node_cores, args.utilization)
            rows.append((
                f"paper estimate: {nodes} nodes of {args.node_cores} cores (PostgreSQL on 1, API + engine on {nodes - 1})",
                f"{e.rate:,.0f} events/s",
                f"bound by {e.bound} (PostgreSQL {e.pg_bound:,.0f}, API + engine {e.app_bound:,.0f})",
                "",
            ))
    return rows


def costs_table(figures: Figures) -> Table:
    """Cores busy by component in each run: what the per-event costs come from."""
    table = Table(title="cores busy while measured (CPU seconds / wall seconds)", title_justify="left")
    for name in ("run", "wall s", "API", "engine", "PostgreSQL (this db)", "PostgreSQL (machine)", "load generator", "NATS"):
        table.add_column(name, justify="left" if name == "run" else "right")
    for label, c in [(f"A: {r.label}", r.costs) for r in figures.runs] + [
        (f"B: {t.apis} API" + (" + 1 engine" if t.engines else ""), t.costs) for t in figures.track
    ]:
        table.add_row(
            label, f"{c.wall:.1f}", f"{c.cores(c.api):.2f}", f"{c.cores(c.engine):.2f}", f"{c.cores(c.pg):.2f}",
            f"{c.cores(c.pg_all):.2f}", f"{c.cores(c.client):.2f}", "0",
        )
    return table


def print_table(rows: list[tuple[str, str, str, str]], figures: Figures, args: argparse.Namespace, info: dict[str, str]) -> None:
    console.print(ingest_bench.results_table("Nudgeflow distributed benchmark", rows))
    console.print(costs_table(figures))
    basis = basis_run(figures)
    if basis is not None:
        console.print("[bold]the paper estimate assumes:[/]")
        for line in assumptions(args, basis):
            console.print(f"  - {line}")
    queued = ", ".join(f"{r.label} {r.messages_queued:,}" for r in figures.runs)
    if queued:
        console.print(f"messages queued by the engine (not sent: no dispatch process): {queued}")
    console.print(
        f"[dim]{info['cpu']}, {info['cores']} cores, {info['ram']}, {info['disk']}; Python {info['python']}; {figures.pg}; "
        f"load {info['load']}; commit {info['commit']}; whole run {figures.seconds:.0f} s[/]"
    )


def write_results(rows: list[tuple[str, str, str, str]], figures: Figures, args: argparse.Namespace, info: dict[str, str]) -> None:
    """Rewrite the distributed section of RESULTS.md, keeping its notes and one history line per run."""
    by = {(r.apis, r.engines): r for r in figures.runs}
    track = {t.apis: t for t in figures.track}
    basis = basis_run(figures)
    estimates = [estimate(basis.costs, n, args.node_cores, args.utilization) for n in (3, 10)] if basis else []

    def rate(key: tuple[int, int]) -> str:
        return f"{by[key].rate:,.0f}" if key in by else "-"

    line = (
        f"| {info['date']} | {info['commit']} | {figures.events:,} | "
        + " | ".join(rate(k) for k in ((1, 1), (1, 2), (2, 1), (2, 2)))
        + " | "
        + " | ".join(f"{track[n].rate:,.0f}" if n in track else "-" for n in (1, 2))
        + " | "
        + " | ".join(f"{e.rate:,.0f}" for e in estimates)
        + (" |" if estimates else "- | - |")
    )
    sizes = QUICK if args.quick else DEFAULTS
    command = "python benchmarks/distributed.py" + (" --quick" if args.quick else "") + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in sizes if getattr(args, name) != sizes[name]
    ) + ("" if args.configs == CONFIGS else " --configs " + ",".join(f"{a}x{e}" for a, e in args.configs)) + (
        " --track-engine" if args.track_engine else ""
    ) + ("" if args.phases == {"a", "b"} else " --phases " + ",".join(sorted(args.phases)))
    lines = [
        "# Distributed benchmark results",
        "",
        "Written by `benchmarks/distributed.py` (its docstring says what each figure means). The machine is shared:",
        "absolute figures move with its load, and PostgreSQL's CPU is counted for the benchmark's database and, beside",
        "it, for the whole machine.",
        "",
        f"## Latest distributed run: {info['date']}",
        "",
        f"`{command}`, {figures.seconds / 60:.1f} minutes. Phase A: {figures.events:,} generated Segment messages of "
        f"{figures.profiles:,} people ({figures.payload_bytes:.0f} bytes each as stored), every journey of "
        f"examples/journeys live, through /v1/batch in bodies of {args.batch} from {args.clients} connections spread "
        "over the API processes, `nudgeflow serve --role api` and `--role engine` processes on a fresh PostgreSQL "
        "database per configuration, no dispatch process (messages queued, not sent), no NATS (not in the event path). "
        f"Phase B: /v1/track from {args.connections} closed-loop connections for {args.track_seconds:g} s after a "
        f"{args.warmup:g} s warm-up, {'one engine process running' if args.track_engine else 'no engine process'}.",
        "",
        "| measure | figure | ratio / comparison | |",
        "| --- | ---: | --- | --- |",
        *[f"| {measure.strip()} | {figure} | {ratio} | {ok} |" for measure, figure, ratio, ok in rows],
        "",
    ]
    if basis is not None:
        lines += ["The paper estimate assumes:", "", *[f"- {a}" for a in assumptions(args, basis)], ""]
    lines += ingest_bench.machine_lines(info, f"{info['os']}; Python {info['python']}; {figures.pg}", disk=True)
    ingest_bench.write_section(args.results, "distributed", lines, [
        "| date | commit | events | 1+1 events/s | 1+2 | 2+1 | 2+2 | track 1 API req/s | 2 API | 3 nodes (paper) | 10 nodes (paper) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ], line)
    console.print(f"results written to {args.results}")


CONFIGS = [(1, 1), (1, 2), (2, 1), (2, 2)]  # phase A's (API, engine) processes by default
DEFAULTS = {"events": 200_000, "profiles": 20_000, "track_events": 200_000, "track_seconds": 10.0}
QUICK = {"events": 10_000, "profiles": 1_000, "track_events": 30_000, "track_seconds": 3.0}


def parse_configs(text: str) -> list[tuple[int, int]]:
    """'1x1,2x2' -> [(1, 1), (2, 2)]: API processes x engine processes."""
    out = []
    for item in text.split(","):
        apis, _, engines = item.strip().partition("x")
        if not apis.isdigit() or not engines.isdigit() or int(apis) < 1 or int(engines) < 1:
            raise ValueError(f"{item!r}: give API x engine processes, each at least 1, like 2x1")
        out.append((int(apis), int(engines)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it works (under ~2 minutes)")
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    parser.add_argument("--postgres", default=os.environ.get("NUDGEFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
                        help="a PostgreSQL server's URL with the right to create databases (default %(default)s)")
    parser.add_argument("--configs", default=",".join(f"{a}x{e}" for a, e in CONFIGS),
                        help="phase A's configurations, API x engine processes, comma-separated (default %(default)s)")
    parser.add_argument("--events", type=int, help="phase A's events (default 200,000; 10,000 with --quick)")
    parser.add_argument("--profiles", type=int, help="the people they come from (default 20,000; 1,000 with --quick)")
    parser.add_argument("--span", type=float, default=300.0, help="seconds of event time the events cover, ending now")
    parser.add_argument("--batch", type=int, default=100, help="messages per /v1/batch body")
    parser.add_argument("--clients", type=int, default=8, help="phase A's concurrent connections, over all API processes")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for lag 0 after the last send")
    parser.add_argument("--track-events", type=int, help="events generated for phase B, its track bodies used (default 200,000; 30,000 with --quick)")
    parser.add_argument("--users", type=int, default=3000, help="the people phase B's events come from")
    parser.add_argument("--track-seconds", type=float, help="measured seconds of each /v1/track run (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of /v1/track before measuring")
    parser.add_argument("--connections", type=int, default=64, help="phase B's concurrent connections, over all API processes")
    parser.add_argument("--track-engine", action="store_true", help="run one engine process during phase B")
    parser.add_argument("--node-cores", type=int, default=8, help="cores per node in the paper estimate")
    parser.add_argument("--utilization", type=float, default=0.7, help="how busy the estimate lets a core be (0-1)")
    parser.add_argument("--phases", default="a,b", help="which phases to run: a (end to end), b (/v1/track), or both (default %(default)s)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file to update (default benchmarks/RESULTS.md)")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.configs = parse_configs(args.configs)
    except ValueError as exc:
        parser.error(f"--configs: {exc}")
    if args.events < 1 or args.profiles < 1 or args.batch < 1 or args.clients < 1 or args.connections < 1:
        parser.error("--events, --profiles, --batch, --clients and --connections must be at least 1")
    args.phases = {p.strip().lower() for p in args.phases.split(",") if p.strip()}
    if not args.phases or args.phases - {"a", "b"}:
        parser.error("--phases takes a, b or a,b")
    if args.track_seconds <= 0:
        parser.error("--track-seconds must be above 0")
    if not 0 < args.utilization <= 1:
        parser.error("--utilization is a fraction of a core, above 0 and at most 1")
    info = ingest_bench.machine()
    ingest_bench.announce("distributed", info, console)
    figures = run(args)
    rows = report(figures, args)
    print_table(rows, figures, args, info)
    if not args.no_record:
        write_results(rows, figures, args, info)


if __name__ == "__main__":
    main()
