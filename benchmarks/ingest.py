#!/usr/bin/env python
"""Ingest benchmark: what durable HTTP ingest achieves next to what SQLite alone can do.

    .venv/bin/python benchmarks/ingest.py [--events N] [--quick]

One run, on one set of generated Segment messages (track, identify and page for a few
thousand users, a few hundred bytes each), measures:

  L      raw SQLite batched inserts, rows/s: Python sqlite3, WAL, synchronous=FULL,
         1,000-row transactions, into a table with the columns and indexes of the
         nudgeflow events table, rows prepared in advance, with the page cache size and
         checkpoint threshold nudgeflow sets on its own connections;
  batch  durable /v1/batch ingest, events/s, ~500 KB bodies over a few keep-alive
         connections, against a `nudgeflow serve` subprocess with default settings
         (SQLite, synchronous=FULL) and the rate limit disabled; target >= 0.35 x L;
  C      one-row durable commits/s: one INSERT + COMMIT each, WAL, synchronous=FULL,
         same table and settings as L;
  track  single-event /v1/track requests/s from concurrent closed-loop clients at
         saturation, with p50/p99 latency; target >= 3 x C; then an open-loop, paced
         run at half that rate, where latency counts from each request's scheduled
         send time (no coordinated omission); target p99 <= 20 ms;
  E      the same /v1/track load against an empty ASGI app (it reads the body and
         answers 200) on uvicorn as `nudgeflow serve` runs it: the HTTP stack's own
         ceiling. Issue 18's targets: /v1/track at saturation >= 0.25 x E, and the
         server's CPU per /v1/track request <= 100 us (user + system time of the whole
         server process, every thread, over the phase, per request answered).

The server runs in its own process so that the load generator's CPU is not charged to
it. The load generator is a lean asyncio client (raw keep-alive sockets, uvloop when
installed, bodies built before the clock starts). Every HTTP phase starts the server on
a fresh database and checks afterwards that exactly the events sent were stored.

Ratios are the figures that travel: the machine is shared and noisy, and both sides of a
ratio come from the same run. Results go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

# Python puts this script's directory first on sys.path, where benchmarks/email.py would
# shadow the standard library's `email` package: drop it before anything imports that.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
MAX_BODY = 500 * 1024  # the server's request limit (Settings.max_request_bytes)
BODY_TARGET = 490 * 1024  # batches are filled up to here, like an SDK's ~500 KB batches

console = Console(width=None if sys.stdout.isatty() else 130)


# -- the generated events -----------------------------------------------------------------

PRODUCTS = [
    ("507f1f77bcf86cd799439011", "Monopoly: 3rd Edition", "Games", "Hasbro", 19.0),
    ("505bd76785ebb509fc183733", "Uno Card Game", "Games", "Mattel", 3.0),
    ("5f2a9c1e8b7d4a0012ab34cd", "Trail Running Shoes", "Footwear", "Salomon", 129.99),
    ("61c0ffee0000aa11bb22cc33", "Merino Wool Socks (3-pack)", "Apparel", "Smartwool", 34.5),
    ("60d5ecb8b392d7001f8e4c21", "Espresso Machine Pro", "Kitchen", "Breville", 499.95),
    ("62aa3f90c1d2e3f4a5b6c7d8", "Noise Cancelling Headphones", "Electronics", "Sony", 349.0),
    ("63bb4e01d2e3f4a5b6c7d8e9", "Yoga Mat, 6 mm", "Fitness", "Manduka", 89.0),
    ("64cc5f12e3f4a5b6c7d8e9fa", 'Cast Iron Skillet 12"', "Kitchen", "Lodge", 44.9),
]
PAGES = [
    ("Home", "/", "Acme Shop"),
    ("Pricing", "/pricing", "Pricing - Acme Shop"),
    ("Product", "/products/{sku}", "{name} - Acme Shop"),
    ("Cart", "/cart", "Your cart - Acme Shop"),
    ("Blog", "/blog/spring-collection", "Spring collection - Acme Shop"),
]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
]
TRACKS = (
    ["Product Viewed"] * 6
    + ["Product Added"] * 3
    + ["Checkout Started", "Order Completed", "Application Opened", "Signed Up"]
)
PLANS = ["free", "pro", "team"]
TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Europe/Berlin", "America/Sao_Paulo"]


@dataclass
class User:
    anonymous_id: str
    user_id: str
    email: str
    first_name: str
    ip: str
    agent: str | None  # a browser's user agent; None for a server-side source
    identified: bool = False


@dataclass
class Workload:
    messages: list[dict[str, Any]]  # every message, in order
    encoded: list[bytes]  # each message as JSON, as a client sends it
    users: int

    @property
    def track_indexes(self) -> list[int]:
        return [i for i, m in enumerate(self.messages) if m["type"] == "track"]


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def generate(events: int, users: int, seed: int) -> Workload:
    """Segment analytics.js-shaped messages: anonymous browsing, sign-ups, shopping."""
    rng = random.Random(seed)
    people = [
        User(
            anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            user_id=f"user_{i:06d}",
            email=f"customer{i}@example.com",
            first_name=rng.choice(["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus"]),
            ip=f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            # Two in five people come from a browser (analytics.js); the rest from a backend.
            agent=rng.choice(USER_AGENTS) if rng.random() < 0.4 else None,
        )
        for i in range(users)
    ]
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    messages: list[dict[str, Any]] = []
    for n in range(events):
        person = rng.choice(people)
        when = start + timedelta(milliseconds=n * 7 + rng.randrange(5))
        base: dict[str, Any] = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "anonymousId": person.anonymous_id,
            "timestamp": _iso(when),
            "sentAt": _iso(when + timedelta(milliseconds=rng.randrange(20, 400))),
            "context": (
                {
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "ip": person.ip,
                    "userAgent": person.agent,
                    "locale": "en-US",
                }
                if person.agent
                else {"library": {"name": "analytics-python", "version": "2.3.3"}}
            ),
        }
        if person.identified:
            base["userId"] = person.user_id
        roll = rng.random()
        if roll < 0.08 or (not person.identified and roll < 0.12):
            person.identified = True
            base["userId"] = person.user_id
            message = {
                "type": "identify",
                **base,
                "traits": {
                    "email": person.email,
                    "first_name": person.first_name,
                    "plan": rng.choice(PLANS),
                    "timezone": rng.choice(TIMEZONES),
                    "logins": rng.randrange(1, 200),
                },
            }
        elif roll < 0.3:
            name, path, title = rng.choice(PAGES)
            product = rng.choice(PRODUCTS)
            path = path.format(sku=product[0][:8])
            message = {
                "type": "page",
                **base,
                "name": name,
                "properties": {
                    "path": path,
                    "url": "https://shop.example.com" + path,
                    "title": title.format(name=product[1]),
                    "referrer": rng.choice(["", "https://www.google.com/", "https://news.example.org/"]),
                },
            }
        else:
            product_id, product_name, category, brand, price = rng.choice(PRODUCTS)
            quantity = rng.randrange(1, 4)
            message = {
                "type": "track",
                **base,
                "event": rng.choice(TRACKS),
                "properties": {
                    "product_id": product_id,
                    "sku": product_id[:8].upper(),
                    "category": category,
                    "name": product_name,
                    "brand": brand,
                    "price": price,
                    "quantity": quantity,
                    "currency": "USD",
                },
            }
        messages.append(message)
    encoded = [json.dumps(m, separators=(",", ":")).encode() for m in messages]
    return Workload(messages, encoded, users)


# -- the raw SQLite figures -----------------------------------------------------------------


def events_table_ddl() -> list[str]:
    """CREATE statements for a table identical to nudgeflow's events table, indexes included."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    from nudgeflow.store.schema import events

    dialect = sqlite_dialect.dialect()
    ddl = [str(CreateTable(events).compile(dialect=dialect)).strip()]
    ddl += [str(CreateIndex(index).compile(dialect=dialect)).strip() for index in events.indexes]
    return ddl


INSERT_ROW = (
    "INSERT INTO events (workspace_id, message_id, profile_id, type, event, user_id, anonymous_id,"
    " timestamp_ms, received_at_ms, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def prepared_rows(work: Workload) -> list[tuple[Any, ...]]:
    """The rows nudgeflow would store for these messages, built before any clock starts."""
    now_ms = int(time.time() * 1000)
    profile_of: dict[str, str] = {}
    rows = []
    for message, raw in zip(work.messages, work.encoded):
        anon = message["anonymousId"]
        profile = profile_of.setdefault(anon, "prf_" + uuid.uuid5(uuid.NAMESPACE_URL, anon).hex[:24])
        ts = int(datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)
        # The stored payload carries receivedAt and the corrected timestamp besides what was sent.
        payload = (
            raw[:-1].decode()
            + ',"receivedAt":"2026-01-01T00:00:00.000000Z","originalTimestamp":"'
            + message["timestamp"]
            + '"}'
        )
        rows.append(
            (
                "ws_benchmark0000000",
                message["messageId"],
                profile,
                message["type"],
                message.get("event") or message.get("name"),
                message.get("userId"),
                anon,
                ts,
                now_ms,
                payload,
            )
        )
    return rows


def sqlite_tuning() -> list[str]:
    from nudgeflow.store import database

    out = []
    if hasattr(database, "SQLITE_CACHE_KIB"):
        out.append(f"PRAGMA cache_size=-{database.SQLITE_CACHE_KIB}")
    if hasattr(database, "WAL_AUTOCHECKPOINT_PAGES"):
        out.append(f"PRAGMA wal_autocheckpoint={database.WAL_AUTOCHECKPOINT_PAGES}")
    return out


def _fresh_sqlite(directory: Path, name: str) -> sqlite3.Connection:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # The page cache and checkpoint threshold nudgeflow gives its own connections, so that
    # a ratio measures what nudgeflow adds on top of SQLite, not how it tunes SQLite.
    for pragma in sqlite_tuning():
        conn.execute(pragma)
    for statement in events_table_ddl():
        conn.execute(statement)
    return conn


def measure_batched_inserts(directory: Path, rows: list[tuple[Any, ...]], advance: Callable[[int], None]) -> float:
    """L: rows/s in 1,000-row transactions."""
    conn = _fresh_sqlite(directory, "raw_batched.db")
    start = time.perf_counter()
    for offset in range(0, len(rows), 1000):
        chunk = rows[offset : offset + 1000]
        conn.execute("BEGIN")
        conn.executemany(INSERT_ROW, chunk)
        conn.execute("COMMIT")
        advance(len(chunk))
    elapsed = time.perf_counter() - start
    stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert stored == len(rows), f"stored {stored} of {len(rows)} rows"
    return len(rows) / elapsed


def measure_single_commits(
    directory: Path, rows: list[tuple[Any, ...]], seconds: float, advance: Callable[[float], None]
) -> float:
    """C: one INSERT + COMMIT each, for `seconds`."""
    conn = _fresh_sqlite(directory, "raw_single.db")
    done = 0
    start = time.perf_counter()
    last = start
    deadline = start + seconds
    while True:
        now = time.perf_counter()
        if now >= deadline or done >= len(rows):
            break
        conn.execute("BEGIN")
        conn.execute(INSERT_ROW, rows[done])
        conn.execute("COMMIT")
        done += 1
        if done % 200 == 0:
            advance(now - last)
            last = now
    elapsed = time.perf_counter() - start
    conn.close()
    return done / elapsed


# -- the server under test ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`nudgeflow serve` in a subprocess, on a fresh SQLite file with default settings."""

    def __init__(self, directory: Path, name: str) -> None:
        self.db_path = directory / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.db_path) + suffix).unlink(missing_ok=True)
        self.url = f"sqlite:///{self.db_path}"
        self.port = free_port()
        self.env = {**os.environ, "NUDGEFLOW_INGEST_RATE": "0", "NUDGEFLOW_LOG_LEVEL": "WARNING"}
        self.env.pop("NUDGEFLOW_DATABASE_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_key = ""
        self.workspace_id = ""
        self.stop_timeout = 30.0

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "nudgeflow.cli", *args, "--database", self.url]

    def start(self) -> "Server":
        created = subprocess.run(
            self._cli("workspace", "create", "benchmark", "--json"), env=self.env, capture_output=True, check=True
        )
        keys = json.loads(created.stdout)
        self.write_key, self.workspace_id = keys["write_key"], keys["workspace_id"]
        return self.launch()

    def serve_args(self) -> list[str]:
        """The `nudgeflow` command line that runs the server (a subclass adds its --role)."""
        return ["serve", "--port", str(self.port)]

    def launch(self) -> "Server":
        """Start `nudgeflow serve` on the prepared database and wait until /healthz answers."""
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self._cli(*self.serve_args()), env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _ = http_get(self.port, "/healthz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready within 60 s")

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def commit_stats(self) -> tuple[float, float]:
        """(events, requests) per group commit on average, from the server's /metrics."""
        _, body = http_get(self.port, "/metrics")
        text = body.decode()

        def value(name: str) -> float:
            match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
            return float(match.group(1)) if match else 0.0

        commits = value("nudgeflow_commit_batch_events_count") or 1.0
        return value("nudgeflow_commit_batch_events_sum") / commits, value(
            "nudgeflow_commit_batch_requests_sum"
        ) / commits

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stored_events(self) -> int:
        conn = sqlite3.connect(self.db_path)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


BARE_APP = """
import sys

import uvicorn


async def app(scope, receive, send):
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-length", b"16")]})
    await send({"type": "http.response.body", "body": b'{"success":true}'})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, lifespan="off")
"""


class BareServer:
    """An ASGI app that reads the body and answers 200, on uvicorn as `nudgeflow serve` runs it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "BareServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(self.port, "/")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the bare uvicorn app did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the empty app's process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


# -- the load generator ---------------------------------------------------------------------


def request_bytes(port: int, path: str, write_key: str, body: bytes) -> bytes:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: nudgeflow-bench\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight; as little Python as can be."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 : head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    def request(self, data: bytes) -> "asyncio.Future[tuple[int, bytes]]":
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter


async def connect(port: int, count: int) -> list[Connection]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(count):
        _, proto = await loop.create_connection(lambda: Connection(loop), "127.0.0.1", port)
        conns.append(proto)
    return conns


@dataclass
class LoadResult:
    done: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, of measured requests

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def closed_loop(
    port: int,
    requests: list[bytes],
    connections: int,
    seconds: float | None,
    warmup: float,
    advance: Callable[[int], None],
) -> LoadResult:
    """Each connection sends its next request as soon as the last one is answered.

    Requests are taken in order from `requests`, each sent once; the run ends when they are
    all sent or `seconds` have passed after the warm-up. Only requests answered after the
    warm-up count towards the rate and latencies.
    """
    conns = await connect(port, connections)
    result = LoadResult()
    cursor = iter(range(len(requests)))
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + seconds if seconds is not None else None

    async def worker(conn: Connection) -> None:
        for index in cursor:
            sent = time.perf_counter()
            if deadline is not None and sent >= deadline:
                return
            try:
                status, body = await conn.request(requests[index])
            except ConnectionError as exc:
                result.errors.append(str(exc))
                return
            answered = time.perf_counter()
            if status != 200:
                result.errors.append(f"{status}: {body[:200]!r}")
            if sent >= measure_from:
                result.done += 1
                result.latencies.append(answered - sent)
            advance(1)

    await asyncio.gather(*(worker(c) for c in conns))
    end = time.perf_counter()
    result.elapsed = max(0.0, end - max(measure_from, start))
    if result.elapsed == 0.0:
        raise SystemExit("the requests ran out during the warm-up: generate more events (--events)")
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return result


async def open_loop(
    port: int, requests: list[bytes], rate: float, seconds: float, connections: int, advance: Callable[[int], None]
) -> LoadResult:
    """Requests are sent on a fixed schedule, whether or not earlier ones are answered.

    A request's latency runs from its scheduled time, so a server that stalls is charged for
    every request the stall delayed, not just the one it was serving.
    """
    conns = await connect(port, connections)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    result = LoadResult()
    total = min(len(requests), int(rate * seconds))
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            status, body = await conn.request(requests[index])
        except ConnectionError as exc:
            result.errors.append(str(exc))
            return  # the run stops at the first failure, so nothing waits for this connection
        result.latencies.append(time.perf_counter() - scheduled)
        idle.put_nowait(conn)
        result.done += 1
        if status != 200:
            result.errors.append(f"{status}: {body[:200]!r}")
        advance(1)

    start = time.perf_counter()
    interval = 1.0 / rate
    index = 0
    while index < total and not result.errors:
        now = time.perf_counter()
        while index < total and start + index * interval <= now:
            task = asyncio.ensure_future(one(index, start + index * interval))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
        if index < total:
            await asyncio.sleep(max(0.0, start + index * interval - time.perf_counter()))
    while pending and not result.errors:
        await asyncio.wait(pending, timeout=0.5)
    for task in pending:
        task.cancel()
    result.elapsed = time.perf_counter() - start
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return result


def thread_cpu_seconds() -> float:
    """CPU time of the calling thread: the load generator's loop, without rich's refresh thread."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def run_async(coro: Any, limit: float = 600.0) -> Any:
    """Run a load phase on uvloop when installed; a phase that hangs fails after `limit` s."""

    async def bounded() -> Any:
        try:
            return await asyncio.wait_for(coro, limit)
        except asyncio.TimeoutError:
            raise SystemExit(f"a load phase did not finish within {limit:g} s") from None

    try:
        import uvloop
    except ImportError:
        return asyncio.run(bounded())
    return uvloop.run(bounded())


def batch_bodies(work: Workload) -> list[tuple[bytes, int]]:
    """The messages packed into /v1/batch bodies just under the 500 KB limit, with their counts."""
    bodies = []
    sent_at = _iso(datetime.now(timezone.utc))
    head = b'{"sentAt":"' + sent_at.encode() + b'","batch":['
    tail = b"]}"
    current: list[bytes] = []
    size = len(head) + len(tail)
    for raw in work.encoded:
        if current and size + len(raw) + 1 > BODY_TARGET:
            bodies.append((head + b",".join(current) + tail, len(current)))
            current, size = [], len(head) + len(tail)
        current.append(raw)
        size += len(raw) + 1
    if current:
        bodies.append((head + b",".join(current) + tail, len(current)))
    assert all(len(b) <= MAX_BODY for b, _ in bodies)
    return bodies


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Figures:
    L: float = 0.0
    C: float = 0.0
    batch_rate: float = 0.0
    batch_events_per_commit: float = 0.0
    batch_server_cpu: float = 0.0
    batch_bodies: int = 0
    batch_body_kb: float = 0.0
    track: LoadResult | None = None
    track_server_cpu: float = 0.0
    track_requests_per_commit: float = 0.0
    # CPU seconds per /v1/track request at saturation: the server process (all threads)
    # and the load generator's own thread, to say what 3 x C would leave the server.
    track_server_us: float = 0.0
    track_client_us: float = 0.0
    bare: LoadResult | None = None
    bare_server_us: float = 0.0  # the empty ASGI app's CPU per request, measured as the server's
    half: LoadResult | None = None
    half_rate: float = 0.0
    half_server_cpu: float = 0.0
    events: int = 0
    users: int = 0
    avg_event_bytes: float = 0.0
    connections: int = 0
    batch_connections: int = 0


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    where = Path(tempfile.gettempdir()).resolve()
    best = ("", "", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        if str(where).startswith(mount) and len(mount) >= len(best[1]):
            best = (device, mount, fstype)
    device, mount, fstype = best
    disk = f"{device} ({fstype}, mounted on {mount})"
    name = Path(device).name
    rotational = Path(f"/sys/block/{name}/queue/rotational")
    if rotational.exists():
        disk += ", rotational" if rotational.read_text().strip() == "1" else ", non-rotational"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        commit += " (with uncommitted changes in src/)" if dirty else ""
    except OSError:
        commit = "unknown"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "disk": disk,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": commit or "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# `python -m benchmarks` (benchmarks/__main__.py) runs each benchmark in its own process and
# names a file here; every table of figures a benchmark prints is also appended to it, as one
# JSON line, so that the runner reads what was printed rather than parsing the terminal.
ROWS_FILE_ENV = "BENCHMARKS_ROWS_FILE"


def keep_rows(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Append (title, rows) to the file BENCHMARKS_ROWS_FILE names, when it names one."""
    target = os.environ.get(ROWS_FILE_ENV)
    if not target:
        return
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps({"title": title, "rows": [list(row) for row in rows]}) + "\n")


def results_table(title: str, rows: list[tuple[str, str, str, str]]) -> Table:
    """(measure, figure, ratio / target, verdict) rows as every benchmark prints them."""
    keep_rows(title, rows)
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column("ratio / target")
    table.add_column("")
    for measure, figure, ratio, ok in rows:
        style = {"met": "green", "stretch met": "bold green", "missed": "red"}.get(ok, "")
        table.add_row(measure, figure, ratio, f"[{style}]{ok}[/]" if style else ok)
    return table


def machine_lines(info: dict[str, str], software: str, *, disk: bool = False) -> list[str]:
    """The Machine block of a RESULTS.md section (`software`: the OS, Python and what matters;
    `disk`: where the databases were, for the benchmarks that write them)."""
    return [
        "Machine:",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores; RAM {info['ram']}",
        *([f"- disk: {info['disk']}"] if disk else []),
        f"- {software}",
        f"- load average when the run started (1, 5, 15 min): {info['load']}",
        f"- commit: {info['commit']}",
        "",
    ]


def announce(name: str, info: dict[str, str], out: Console) -> None:
    """The first lines of every benchmark: what runs where, and a warning on a busy machine."""
    out.print(f"[bold]Nudgeflow {name} benchmark[/] on {info['cpu']}, {info['cores']} cores; commit {info['commit']}")
    if os.getloadavg()[0] > 0.5:
        out.print(
            f"[yellow]the machine is busy (load average {info['load']}): other work shares its "
            f"{info['cores']} cores, so absolute figures will be low; the ratios suffer less[/]"
        )


def between(text: str, start: str, end: str) -> str | None:
    if start in text and end in text:
        return text.split(start, 1)[1].split(end, 1)[0].strip("\n")
    return None


def write_section(results: Path, name: str, latest: list[str], history_head: list[str], history_line: str) -> None:
    """Rewrite benchmark `name`'s section of RESULTS.md where it stands (appended when new),
    every other section kept as it is: `latest` (the latest run), the hand-written notes
    found between the section's notes markers, then its history table, one line per run,
    newest first (`history_head`: the table's header and alignment rows)."""
    start, end = f"<!-- {name} benchmark: written by benchmarks/{name}.py -->", f"<!-- end of {name} benchmark -->"
    notes_start, notes_end = f"<!-- {name} notes: kept as written -->", f"<!-- end of {name} notes -->"
    marker = f"<!-- {name} history: one line per run, newest first; the benchmark adds them -->"
    text = results.read_text() if results.exists() else ""
    old = between(text, start, end) or ""
    before = text.split(start, 1)[0].rstrip("\n") if start in text else text.rstrip("\n")
    after = text.split(end, 1)[1].strip("\n") if end in text else ""
    notes = between(old, notes_start, notes_end)
    history = (
        [line for line in old.split(marker, 1)[1].splitlines() if line.startswith("| 20")] if marker in old else []
    )
    lines = [start, "", *latest]
    if notes is not None:
        lines += [notes_start, notes, notes_end, ""]
    lines += [f"## All {name} runs", "", marker, "", *history_head, history_line, *history, "", end]
    results.write_text(
        (before + "\n\n" if before else "") + "\n".join(lines) + "\n" + (("\n" + after + "\n") if after else "")
    )


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(
        events=args.events, users=args.users, connections=args.connections, batch_connections=args.batch_connections
    )
    tmp = Path(tempfile.mkdtemp(prefix="nudgeflow-bench-"))
    try:
        with console.status(f"generating {args.events:,} events for {args.users:,} users"):
            work = generate(args.events, args.users, args.seed)
            rows = prepared_rows(work)
            bodies = batch_bodies(work)
            tracks = [work.encoded[i] for i in work.track_indexes]
        figures.avg_event_bytes = sum(map(len, work.encoded)) / len(work.encoded)
        figures.batch_bodies = len(bodies)
        figures.batch_body_kb = sum(len(b) for b, _ in bodies) / len(bodies) / 1024
        console.print(
            f"{len(work.messages):,} events ({len(tracks):,} track), {figures.avg_event_bytes:.0f} bytes on average; "
            f"{len(bodies)} batch bodies of {figures.batch_body_kb:.0f} KB on average"
        )
        gc.collect()
        gc.freeze()  # the workload is long-lived: keep the collector off it while measuring

        progress = Progress(
            TextColumn("[bold]{task.description:<34}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            # L
            task = progress.add_task("L: raw SQLite 1,000-row txns", total=len(rows), info="")
            figures.L = measure_batched_inserts(tmp, rows, lambda n: progress.advance(task, n))
            progress.update(task, info=f"{figures.L:,.0f} rows/s")

            # /v1/batch
            task = progress.add_task("/v1/batch over HTTP", total=len(work.encoded), info="starting server")
            with Server(tmp, "batch") as server:
                requests = [request_bytes(server.port, "/v1/batch", server.write_key, body) for body, _ in bodies]
                counts = [n for _, n in bodies]
                progress.update(task, info="")
                cpu0 = server.cpu_seconds()
                result = run_async(
                    closed_loop(
                        server.port,
                        requests,
                        args.batch_connections,
                        None,
                        0.0,
                        lambda _n, it=iter(counts): progress.advance(task, next(it)),
                    )
                )
                cpu = server.cpu_seconds() - cpu0
                figures.batch_events_per_commit, _ = server.commit_stats()
                server.stop()
                _check(result, "/v1/batch", server)
                stored = server.stored_events()
            if stored != len(work.encoded):
                raise SystemExit(f"/v1/batch stored {stored} events of the {len(work.encoded)} sent")
            figures.batch_rate = len(work.encoded) / result.elapsed
            figures.batch_server_cpu = cpu / result.elapsed
            progress.update(task, info=f"{figures.batch_rate:,.0f} events/s")

            # C
            task = progress.add_task("C: one-row durable commits", total=args.commit_seconds, info="")
            figures.C = measure_single_commits(tmp, rows, args.commit_seconds, lambda s: progress.advance(task, s))
            progress.update(task, completed=args.commit_seconds, info=f"{figures.C:,.0f} commits/s")

            # /v1/track at saturation
            task = progress.add_task(
                f"/v1/track, {args.connections} closed-loop conns", total=None, info="starting server"
            )
            with Server(tmp, "track") as server:
                requests = [request_bytes(server.port, "/v1/track", server.write_key, body) for body in tracks]
                progress.update(task, info="")
                cpu0, client0 = server.cpu_seconds(), thread_cpu_seconds()
                t0 = time.perf_counter()
                result = run_async(
                    closed_loop(
                        server.port,
                        requests,
                        args.connections,
                        args.seconds,
                        args.warmup,
                        lambda n: progress.advance(task, n),
                    )
                )
                cpu, client_cpu = server.cpu_seconds() - cpu0, thread_cpu_seconds() - client0
                _, figures.track_requests_per_commit = server.commit_stats()
                wall = time.perf_counter() - t0
                server.stop()
                _check(result, "/v1/track", server)
                sent = progress.tasks[task].completed
                stored = server.stored_events()
            if stored != sent:
                raise SystemExit(f"/v1/track stored {stored} events of the {sent:.0f} answered")
            figures.track = result
            figures.track_server_cpu = cpu / wall
            figures.track_server_us = cpu / sent * 1e6
            figures.track_client_us = client_cpu / sent * 1e6
            progress.update(task, info=f"{result.rate:,.0f} req/s")

            # The same load against an ASGI app that does nothing: the HTTP stack's own ceiling
            task = progress.add_task("bare uvicorn app, same load", total=None, info="starting server")
            with BareServer() as bare:
                # It stores nothing, so the same requests can go round several times.
                requests = [request_bytes(bare.port, "/v1/track", "none", body) for body in tracks] * 20
                progress.update(task, info="")
                answered = [0]

                def count(n: int) -> None:
                    answered[0] += n
                    progress.advance(task, n)

                cpu0 = bare.cpu_seconds()
                figures.bare = run_async(
                    closed_loop(bare.port, requests, args.connections, args.seconds / 2, args.warmup, count)
                )
                figures.bare_server_us = (bare.cpu_seconds() - cpu0) / max(answered[0], 1) * 1e6
            _check(figures.bare, "bare uvicorn app")
            progress.update(task, info=f"{figures.bare.rate:,.0f} req/s")

            # /v1/track paced at half the saturation rate
            figures.half_rate = result.rate / 2
            total = min(len(tracks), int(figures.half_rate * args.seconds))
            task = progress.add_task(
                f"/v1/track paced at {figures.half_rate:,.0f}/s", total=total, info="starting server"
            )
            with Server(tmp, "track_half") as server:
                requests = [request_bytes(server.port, "/v1/track", server.write_key, body) for body in tracks]
                progress.update(task, info="")
                cpu0 = server.cpu_seconds()
                half = run_async(
                    open_loop(
                        server.port,
                        requests,
                        figures.half_rate,
                        args.seconds,
                        args.connections,
                        lambda n: progress.advance(task, n),
                    )
                )
                figures.half_server_cpu = (server.cpu_seconds() - cpu0) / half.elapsed
                server.stop()
                _check(half, "/v1/track paced", server)
                stored = server.stored_events()
            if stored != half.done:
                raise SystemExit(f"paced /v1/track stored {stored} events of the {half.done} answered")
            figures.half = half
            progress.update(task, info=f"{half.rate:,.0f} req/s")
        gc.unfreeze()
        return figures
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check(result: LoadResult, what: str, server: "Server | None" = None) -> None:
    if result.errors:
        log = f"\nserver output:\n{server.log_tail()}" if server is not None else ""
        raise SystemExit(f"{what}: {len(result.errors)} requests failed, first: {result.errors[0]}{log}")


def verdict(ok: bool) -> str:
    return "[green]met[/]" if ok else "[red]missed[/]"


def report(figures: Figures, args: argparse.Namespace, info: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """Rows of (measure, figure, ratio / target, verdict), for the console and RESULTS.md."""
    track, half = figures.track, figures.half
    assert track is not None and half is not None
    batch_ratio = figures.batch_rate / figures.L
    track_ratio = track.rate / figures.C
    # At 3 x C requests/s, the machine's cores are shared by the load generator (at its own
    # measured cost per request) and the server: what is left is the server's budget.
    cores = int(info["cores"])
    budget = cores / (3 * figures.C) * 1e6 - figures.track_client_us
    bare_rate = figures.bare.rate if figures.bare else float("nan")
    track_vs_bare = track.rate / bare_rate
    rows = [
        ("L: raw SQLite batched inserts (1,000-row txns, FULL)", f"{figures.L:,.0f} rows/s", "", ""),
        (
            f"/v1/batch durable ingest ({figures.batch_body_kb:.0f} KB bodies, {figures.batch_connections} conns)",
            f"{figures.batch_rate:,.0f} events/s",
            f"{batch_ratio:.2f} x L (target >= 0.35, stretch 0.5)",
            "stretch met" if batch_ratio >= 0.5 else ("met" if batch_ratio >= 0.35 else "missed"),
        ),
        ("C: one-row durable commits (FULL)", f"{figures.C:,.0f} commits/s", "", ""),
        (
            f"/v1/track at saturation ({figures.connections} conns)",
            f"{track.rate:,.0f} req/s",
            f"{track_ratio:.2f} x C (target >= 3)",
            "met" if track_ratio >= 3 else "missed",
        ),
        ("  latency at saturation", f"p50 {track.pct(0.5):.1f} ms, p99 {track.pct(0.99):.1f} ms", "", ""),
        (
            "E: an empty ASGI app on uvicorn, same load",
            f"{bare_rate:,.0f} req/s, {figures.bare_server_us:.0f} us CPU each",
            "",
            "",
        ),
        (
            "/v1/track at saturation against E",
            f"{track.rate:,.0f} req/s",
            f"{track_vs_bare:.2f} x E (target >= 0.25)",
            "met" if track_vs_bare >= 0.25 else "missed",
        ),
        (
            "server CPU per /v1/track request at saturation",
            f"{figures.track_server_us:.0f} us",
            "<= 100 us",
            "met" if figures.track_server_us <= 100 else "missed",
        ),
        (
            "  load generator's CPU per request",
            f"{figures.track_client_us:.0f} us",
            f"3 x C on {cores} cores leaves the server {budget:.0f} us",
            "",
        ),
        (
            f"/v1/track paced at half ({figures.half_rate:,.0f} req/s, open loop)",
            f"p50 {half.pct(0.5):.1f} ms, p99 {half.pct(0.99):.1f} ms",
            "p99 <= 20 ms",
            "met" if half.pct(0.99) <= 20 else "missed",
        ),
    ]
    return rows


def print_table(rows: list[tuple[str, str, str, str]], figures: Figures, info: dict[str, str]) -> None:
    console.print(results_table("Nudgeflow ingest benchmark", rows))
    assert figures.track is not None and figures.half is not None
    console.print(
        f"server CPU (cores busy): batch {figures.batch_server_cpu:.2f}, track {figures.track_server_cpu:.2f}, "
        f"paced {figures.half_server_cpu:.2f}; group commits: {figures.batch_events_per_commit:.0f} events each in the "
        f"batch run, {figures.track_requests_per_commit:.1f} requests each at saturation"
    )
    console.print(
        f"[dim]{info['cpu']}, {info['cores']} cores, {info['ram']}, {info['disk']}; Python {info['python']}, "
        f"SQLite {info['sqlite']}; commit {info['commit']}[/]"
    )


def write_results(
    rows: list[tuple[str, str, str, str]], figures: Figures, args: argparse.Namespace, info: dict[str, str]
) -> None:
    """Rewrite the latest run at the top of RESULTS.md and keep one line per run below it."""
    track, half = figures.track, figures.half
    assert track is not None and half is not None
    history_line = (
        f"| {info['date']} | {info['commit']} | {figures.events:,} | {figures.L:,.0f} | {figures.batch_rate:,.0f} "
        f"| {figures.batch_rate / figures.L:.2f} | {figures.C:,.0f} | {track.rate:,.0f} | {track.rate / figures.C:.2f} "
        f"| {track.pct(0.5):.1f} / {track.pct(0.99):.1f} | {half.pct(0.5):.1f} / {half.pct(0.99):.1f} |"
    )
    marker = "<!-- history: one line per run, newest first; the benchmark adds them -->"
    old_history: list[str] = []
    # Everything after this section (the other benchmarks' sections, notes written between
    # them) is carried over as it is, byte for byte.
    end = "<!-- end of ingest benchmark -->"
    tail: str | None = None
    other_sections: list[str] = []
    if RESULTS.exists() and end in RESULTS.read_text():
        text, tail = RESULTS.read_text().split(end, 1)
        if marker in text:
            after = text.split(marker, 1)[1].splitlines()
            old_history = [line for line in after if line.startswith("| 20")]
    elif RESULTS.exists():
        # A file from before the end marker: the other benchmarks' marked sections are kept.
        text = RESULTS.read_text()
        other_sections = [
            m.group(0)
            for m in re.finditer(
                r"<!-- (\w+) benchmark: written by benchmarks/[\w.]+ -->.*?<!-- end of \1 benchmark -->", text, re.S
            )
        ]
        for section in other_sections:
            text = text.replace(section, "")
        if marker in text:
            after = text.split(marker, 1)[1].splitlines()
            old_history = [line for line in after if line.startswith("| 20")]
    command = (
        "python benchmarks/ingest.py"
        + (" --quick" if args.quick else "")
        + (f" --events {args.events}" if not args.quick else "")
    )
    lines = [
        "# Ingest benchmark results",
        "",
        "Written by `benchmarks/ingest.py` (see its docstring for what each figure means). The machine",
        "is shared and noisy, so absolute figures move from run to run; the ratios compare figures",
        "measured in the same run and are the ones to quote.",
        "",
        f"## Latest run: {info['date']}",
        "",
        f"`{command}`: {figures.events:,} generated Segment messages (track, identify, page) for "
        f"{figures.users:,} users, {figures.avg_event_bytes:.0f} bytes each on average; /v1/batch bodies of "
        f"{figures.batch_body_kb:.0f} KB over {figures.batch_connections} keep-alive connections; /v1/track from "
        f"{figures.connections} connections for {args.seconds:g} s after a {args.warmup:g} s warm-up, then paced "
        "(open loop) at half the rate reached. Server: `nudgeflow serve` in its own process, default settings "
        "(SQLite WAL, synchronous=FULL, group commit), rate limit off, a fresh database per phase.",
        "",
        "| measure | figure | ratio / target | |",
        "| --- | ---: | --- | --- |",
        *[f"| {m.strip()} | {f} | {r} | {ok} |" for m, f, r, ok in rows],
        "",
        f"Server CPU, in cores busy: {figures.batch_server_cpu:.2f} during /v1/batch, {figures.track_server_cpu:.2f} "
        f"at /v1/track saturation, {figures.half_server_cpu:.2f} at half rate. Group commits carried "
        f"{figures.batch_events_per_commit:.0f} events each during /v1/batch and "
        f"{figures.track_requests_per_commit:.1f} requests each at /v1/track saturation.",
        "",
        *machine_lines(info, f"{info['os']}; Python {info['python']}; SQLite {info['sqlite']}", disk=True),
    ]
    # Notes written by hand between these markers survive a new run.
    notes_start, notes_end = "<!-- notes: kept as written -->", "<!-- end of notes -->"
    if RESULTS.exists() and notes_start in RESULTS.read_text() and notes_end in RESULTS.read_text():
        notes = RESULTS.read_text().split(notes_start, 1)[1].split(notes_end, 1)[0].strip("\n")
        lines += [notes_start, notes, notes_end, ""]
    lines += [
        "## All runs",
        "",
        marker,
        "",
        "| date | commit | events | L rows/s | batch events/s | batch / L | C commits/s | track req/s | track / C "
        "| saturation p50 / p99 ms | half rate p50 / p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        history_line,
        *old_history,
        "",
        end,
    ]
    if tail is not None:
        RESULTS.write_text("\n".join(lines) + tail)
    else:
        lines.append("")
        for section in other_sections:
            lines += [section, ""]
        RESULTS.write_text("\n".join(lines))
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=None, help="how many events to generate (default 200,000; 40,000 with --quick)"
    )
    parser.add_argument("--users", type=int, default=3000, help="how many people the events come from")
    parser.add_argument("--quick", action="store_true", help="a short run, to check that it works")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds of each /v1/track phase (default 10; 3 with --quick)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of /v1/track before measuring")
    parser.add_argument(
        "--commit-seconds",
        type=float,
        default=None,
        help="seconds of one-row commits for C (default 5; 2 with --quick)",
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent /v1/track connections")
    parser.add_argument("--batch-connections", type=int, default=4, help="concurrent /v1/batch connections")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.events is None:
        args.events = 40_000 if args.quick else 200_000
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 10.0
    if args.commit_seconds is None:
        args.commit_seconds = 2.0 if args.quick else 5.0
    info = machine()
    announce("ingest", info, console)
    figures = run(args)
    rows = report(figures, args, info)
    print_table(rows, figures, info)
    if not args.no_record:
        write_results(rows, figures, args, info)


if __name__ == "__main__":
    main()
