"""What the fault run (tests/roles/test_fault_run.py, issue 17 item 7) is made of: a sink that
notes when it accepted each message, `serve --role` processes kept running by slots as a
process manager would (with SIGKILLs on a schedule), a paced load on the HTTP API that
records what was acknowledged, and the checks on what came out.

It looks at the system only from outside: the CLI, HTTP, the SMTP sink and SQL on the
database. No runtime module is imported, so it holds for one engine holding the engine lock
as for engines sharing partitions.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import create_engine, text

from nudgeflow.runtime.dev_push import DevPushService
from tests.channels.smtp_support import Sink
from tests.roles.support import RoleProcess
from tests.runtime.serve_process import run

# The two journeys: one sends on the event, one waits WAIT_S of real time first (a timer that
# comes due while engines are being killed). Each sends an email and then a push: two outbox
# messages per person, to two providers (the SMTP sink and the local Web Push service).
NOW_EVENT, LATER_EVENT = "Signed Up", "Trial Started"
WAIT_S = 3.0
# An engine worker's partitions move once its leases run out: the TTL (6 s,
# runtime/leases.DEFAULT_TTL_MS) and at most one heartbeat of the others (2 s).
ENGINE_FAILOVER_S = 8.0
JOURNEYS = {
    "fault-now": {
        "id": "fault-now",
        "name": "Fault run: right away",
        "trigger": {"type": "event", "event": NOW_EVENT},
        "steps": {
            "hello": {
                "type": "send",
                "channel": "email",
                "template": "fault-hello",
                "marketing": False,
                "next": "hello-push",
            },
            "hello-push": {"type": "send", "channel": "push", "template": "fault-hello-push", "marketing": False},
        },
    },
    "fault-later": {
        "id": "fault-later",
        "name": "Fault run: after a wait",
        "trigger": {"type": "event", "event": LATER_EVENT},
        "steps": {
            "wait": {"type": "wait", "duration": f"{WAIT_S:g}s", "next": "later"},
            "later": {
                "type": "send",
                "channel": "email",
                "template": "fault-later",
                "marketing": False,
                "next": "later-push",
            },
            "later-push": {"type": "send", "channel": "push", "template": "fault-later-push", "marketing": False},
        },
    },
}
TEMPLATES = {
    "fault-hello": {"channel": "email", "subject": "Hello {{ profile.first_name }}", "body": "<p>Hello.</p>"},
    "fault-later": {"channel": "email", "subject": "Later {{ profile.first_name }}", "body": "<p>Later.</p>"},
    "fault-hello-push": {"channel": "push", "title": "Hello {{ profile.first_name }}", "body": "Hello."},
    "fault-later-push": {"channel": "push", "title": "Later {{ profile.first_name }}", "body": "Later."},
}
CHANNELS = ("email", "push")


# -- the sink ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float  # time.time() when the sink accepted it
    rcpt: str
    message_id: str
    key: str  # X-Nudgeflow-Message-Key
    subject: str


class TimedSink(Sink):
    """The loopback SMTP sink of the roles tests, noting the wall-clock time of each acceptance
    (the end of a trigger-to-send latency)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        self.times.append(time.time())  # appended right after its message: the lists stay in step
        return reply

    def arrivals(self) -> list[Arrival]:
        out = []
        for received, at in zip(list(self.received), list(self.times), strict=False):
            parsed = message_from_bytes(received.raw, policy=policy.default)
            out.append(
                Arrival(
                    at,
                    received.rcpt_tos[0],
                    str(parsed["Message-ID"]),
                    str(parsed["X-Nudgeflow-Message-Key"]),
                    str(parsed["Subject"]),
                )
            )
        return out


class SlowSink(Sink):
    """A provider that takes `delay_s` to accept each message (a slow relay, a rate limit)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.port = 0

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


# -- the push service ---------------------------------------------------------------------------


def subscription_id(i: int) -> str:
    """Person i's subscription at the local Web Push service (its endpoint's last segment)."""
    return f"p{i:06d}"


def push_arrivals(service: DevPushService) -> list[Arrival]:
    """What the local Web Push service accepted (and decrypted), as arrivals: the person from
    the subscription, and the message key the notification carries (`key`, the same on a
    resend) in place of a Message-ID."""
    out = []
    for r in service.received:
        notification = r.notification if isinstance(r.notification, dict) else {}
        key = str(notification.get("key"))
        title = str(notification.get("title"))
        out.append(Arrival(r.received_at_ms / 1000, address(int(r.subscription_id[1:])), key, key, title))
    return out


def subscribe_people(
    urls: list[str],
    write_key: str,
    service: DevPushService,
    people: range,
    vapid_public_key: str,
    concurrency: int = 32,
) -> None:
    """Each person's browser subscribes at the local push service with the workspace's VAPID
    key, and hands the subscription to `POST /v1/push/subscriptions` as the SDK does. Setup,
    before any fault: every one must be stored."""

    async def main() -> None:
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(auth=(write_key, ""), timeout=30) as client:

            async def one(i: int) -> None:
                sub = service.subscribe(subscription_id(i), application_server_key=vapid_public_key)
                url = f"{urls[i % len(urls)]}/v1/push/subscriptions"
                body = {"userId": f"u{i}", "subscription": sub.info()}
                async with semaphore:
                    # Storing it again is harmless (the same endpoint, the same event id): a
                    # request the overloaded machine dropped is sent again.
                    for attempt in range(5):
                        try:
                            answer = await client.post(url, json=body)
                            break
                        except httpx.TransportError:
                            if attempt == 4:
                                raise
                            await asyncio.sleep(1.0)
                assert answer.status_code == 200, f"subscription of u{i}: {answer.status_code} {answer.text}"

            await asyncio.gather(*(one(i) for i in people))

    asyncio.run(main())


# -- setup through the CLI ---------------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    done = run(*args, env=env)
    assert done.returncode == 0, f"nudgeflow {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def set_up_workspace(database_url: str, directory: Path, env: dict[str, str]) -> dict[str, str]:
    """A workspace with the templates and the two journeys published, through the CLI; its ids
    and keys (`nudgeflow workspace create --json`) and its VAPID public key."""
    created = json.loads(cli("workspace", "create", "fault-run", "--json", "--database", database_url, env=env))
    ws = created["workspace_id"]
    (directory / "templates").mkdir()
    (directory / "journeys").mkdir()
    for name, template in TEMPLATES.items():
        (directory / "templates" / f"{name}.yaml").write_text(json.dumps(template))  # JSON is YAML
    for name, journey in JOURNEYS.items():
        (directory / "journeys" / f"{name}.yaml").write_text(json.dumps(journey))
    common = ("--workspace", ws, "--database", database_url)
    cli("templates", "apply", str(directory / "templates"), *common, env=env)
    cli("journeys", "apply", str(directory / "journeys"), "--publish", *common, env=env)
    # The Web Push keys: browsers subscribe with the public one.
    vapid = json.loads(cli("workspace", "vapid", "show", ws, "--json", "--database", database_url, env=env))
    return {**created, "vapid_public_key": vapid["public_key"]}


# -- processes, kept running -------------------------------------------------------------------


class Slot:
    """One process of a role, kept running as a process manager would: restarted (a new
    process, on a new port) when it is killed. One that exits on its own (an engine refused
    at start because another holds the engine lock) is started again by Fleet once no
    process of its role runs at all."""

    def __init__(self, role: str, name: str, database_url: str, logs: Path, env: dict[str, str]) -> None:
        self.role, self.name, self.database_url, self.logs, self.env = role, name, database_url, logs, env
        self.starts = 0
        self.procs: list[RoleProcess] = []  # every process this slot ran
        self.proc: RoleProcess | None = None
        self.ready = False  # the current process has answered /healthz
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.ready = False
        self.proc = RoleProcess(self.role, self.database_url, self.logs / f"{self.name}.{self.starts}.log", **self.env)
        self.procs.append(self.proc)

    @property
    def refused(self) -> int:
        """Its processes that exited with status 1: refused at start (the engine lock held)."""
        return sum(1 for p in self.procs if p.proc.poll() == 1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None

    def healthy(self) -> bool:
        if not self.alive():
            return False
        assert self.proc is not None
        try:
            self.ready = httpx.get(f"{self.proc.url}/healthz", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False
        return self.ready

    def kill(self) -> None:
        """SIGKILL, and a new process at once (the process manager's restart)."""
        assert self.proc is not None
        self.proc.proc.send_signal(signal.SIGKILL)
        self.proc.proc.wait(30)
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Fleet:
    """The processes of a run, by role, with a supervisor thread that restarts standbys and a
    schedule of SIGKILLs: `every` maps a role to seconds between kills of one of its
    processes (a healthy one, chosen at random; the engine holding the lock, today)."""

    def __init__(self, database_url: str, logs: Path, env: dict[str, str], counts: dict[str, int]) -> None:
        self.database_url, self.logs, self.env = database_url, logs, env
        self.slots: dict[str, list[Slot]] = {
            role: [Slot(role, f"{role}{i}", database_url, logs, env) for i in range(n)] for role, n in counts.items()
        }
        self.kills: list[tuple[float, str, str]] = []  # (time.time(), role, slot name)
        self.recovered: dict[str, list[float]] = {}  # role -> seconds from each kill to a process answering
        self._stop = threading.Event()
        self._faults_off = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rng = random.Random(17)
        self._lock = threading.Lock()

    def add(self, role: str, count: int) -> None:
        """Processes of another role, started now (before `supervise`)."""
        self.slots[role] = [Slot(role, f"{role}{i}", self.database_url, self.logs, self.env) for i in range(count)]

    def wait_ready(self, seconds: float = 90, every: bool = False) -> None:
        """Until every role has at least one healthy process (a refused standby is not waited
        for); with `every`, until each process is."""
        deadline = time.monotonic() + seconds
        ready = all if every else any
        for role, slots in self.slots.items():
            while not ready(s.healthy() for s in slots):
                assert time.monotonic() < deadline, f"no {role} process became ready: " + self.tail(role)
                for s in slots:
                    if not s.alive() and s.proc is not None and s.proc.proc.returncode not in (None, 1):
                        raise AssertionError(f"{s.name} exited with {s.proc.proc.returncode}: {self.tail(role)}")
                time.sleep(0.1)

    def tail(self, role: str) -> str:
        return "\n".join(
            f"--- {s.name}: {s.proc.log.read_text()[-2000:]}" for s in self.slots[role] if s.proc is not None
        )

    def urls(self, role: str) -> list[str]:
        return [s.proc.url for s in self.slots[role] if s.proc is not None]

    def supervise(self, every: dict[str, float]) -> None:
        self._threads.append(threading.Thread(target=self._standbys, daemon=True))
        for role, seconds in every.items():
            self._threads.append(threading.Thread(target=self._killer, args=(role, seconds), daemon=True))
        for thread in self._threads:
            thread.start()

    def _standbys(self) -> None:
        # Only when no process of the role is running at all: a killed process is started
        # again at once (Slot.kill), and standbys started beside it would only compete with
        # it for the two cores (each start costs a second and a half of CPU).
        while not self._stop.wait(0.25):
            for slots in self.slots.values():
                with self._lock:
                    if not any(s.alive() for s in slots):
                        for s in slots:
                            s.start()

    def _killer(self, role: str, seconds: float) -> None:
        next_at = time.monotonic() + seconds
        while not self._faults_off.wait(max(0.0, next_at - time.monotonic())):
            next_at += seconds
            with self._lock:
                # Once ready, a process counts as live until it exits (a busy engine may be slow
                # to answer /healthz).
                live = [s for s in self.slots[role] if s.alive() and (s.ready or s.healthy())]
                if not live:
                    continue
                victim = self._rng.choice(live)
                killed_at = time.time()
                self.kills.append((killed_at, role, victim.name))
                victim.kill()
            # Until a process of the role answers again (its new one, or another already up).
            while not self._faults_off.is_set() and not any(s.healthy() for s in self.slots[role]):
                time.sleep(0.1)
            self.recovered.setdefault(role, []).append(time.time() - killed_at)

    def kill_all_and_restart(self) -> float:
        """`kill -9` of every process at once, then all started again; when they were killed."""
        with self._lock:
            procs = [s.proc.proc for slots in self.slots.values() for s in slots if s.alive() and s.proc]
            at = time.time()
            for p in procs:
                p.send_signal(signal.SIGKILL)
            for p in procs:
                p.wait(30)
            for slots in self.slots.values():
                for s in slots:
                    self.kills.append((at, s.role, s.name))
                    s.start()
        return at

    def stop_faults(self) -> None:
        self._faults_off.set()

    def stop(self) -> None:
        self._faults_off.set()
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        for slots in self.slots.values():
            for s in slots:
                s.stop()


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Load:
    """What the load sent and what was acknowledged. Person i sends one /v1/batch request: an
    identify (their email) and a track, NOW_EVENT for even i, LATER_EVENT for odd i."""

    sent: int = 0
    acked: dict[str, float] = field(default_factory=dict)  # messageId -> time.time() of the 200
    failed: Counter[str] = field(default_factory=Counter)  # what the other answers were
    failure_sample: dict[str, str] = field(default_factory=dict)  # one message of each
    user_acked: dict[int, float] = field(default_factory=dict)


def address(i: int) -> str:
    return f"u{i:06d}@example.org"


def person_of(rcpt: str) -> int:
    return int(rcpt.split("@")[0][1:])


def event_of(i: int) -> str:
    return NOW_EVENT if i % 2 == 0 else LATER_EVENT


def run_load(
    urls: Any,
    write_key: str,
    people: int,
    rate: float,
    stop: threading.Event | None = None,
    concurrency: int = 64,
) -> Load:
    """`people` requests of 2 events each at `rate` events/s (fewer if `stop` is set first),
    round robin over `urls()` (called per request: the addresses change as processes are
    restarted). Each request is sent once: one that fails is not acknowledged, and not retried
    (the client's retry is not what is under test)."""
    load = Load()

    async def main() -> None:
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(auth=(write_key, ""), timeout=30) as client:

            async def one(i: int) -> None:
                async with semaphore:
                    bases = urls()
                    batch = [
                        {
                            "type": "identify",
                            "userId": f"u{i}",
                            "messageId": f"id-{i}",
                            "traits": {"email": address(i), "first_name": f"P{i}"},
                        },
                        {"type": "track", "userId": f"u{i}", "messageId": f"tr-{i}", "event": event_of(i)},
                    ]
                    try:
                        response = await client.post(f"{bases[i % len(bases)]}/v1/batch", json={"batch": batch})
                    except httpx.HTTPError as exc:
                        load.failed[type(exc).__name__] += 1
                        load.failure_sample.setdefault(type(exc).__name__, str(exc)[:200])
                        return
                    if response.status_code != 200:
                        load.failed[str(response.status_code)] += 1
                        return
                    at = time.time()
                    load.acked[f"id-{i}"] = at
                    load.acked[f"tr-{i}"] = at
                    load.user_acked[i] = at

            interval = 2 / rate  # two events a request
            started = time.monotonic()
            tasks = []
            for i in range(people):
                if stop is not None and stop.is_set():
                    break
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                load.sent += 1
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

    asyncio.run(main())
    return load


# -- the database, read with SQL ---------------------------------------------------------------


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def dispose(self) -> None:
        self.engine.dispose()


def idle(db: Db, ws: str, expected_messages: int) -> bool:
    """Nothing left to do: every message queued and none pending, no timer left."""
    queued = db.scalar("SELECT count(*) FROM outbox WHERE workspace_id = :ws", ws=ws)
    pending = db.scalar("SELECT count(*) FROM outbox WHERE workspace_id = :ws AND status = 'pending'", ws=ws)
    timers = db.scalar("SELECT count(*) FROM timers WHERE workspace_id = :ws", ws=ws)
    return bool(queued >= expected_messages and pending == 0 and timers == 0)


def wait_idle(db: Db, ws: str, expected_messages: int, seconds: float) -> float:
    """Until idle, or `seconds`; how long it took (the checks then say what is missing)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds and not idle(db, ws, expected_messages):
        time.sleep(0.25)
    return time.monotonic() - started


# -- the checks ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class ChannelReport:
    """What one channel's provider (the SMTP sink, the Web Push service) received. A message is
    told by its Message-ID (email) or its message key (push): the same on every attempt."""

    messages: int  # distinct messages received
    copies: int  # messages received in all
    duplicated: dict[str, list[float]]  # message -> arrival times, for those received more than once
    outside_window: list[str]
    missing_people: list[int]  # acknowledged (and reachable on the channel), never received
    people_with_two: list[int]  # people who received more than one distinct message (one was due)
    latencies: list[float]
    latencies_calm: list[float]  # those of people acknowledged away from any kill


# The stages of a message's trigger-to-send latency, from the timestamps the database keeps
# (`Report.stages`): the API's receipt of the request (events.received_at_ms) to the client's
# 200; to the engine queuing the message (outbox.created_at_ms, the engine's clock when it
# decided: on the event, or when the timer fired, less the wait); to a dispatcher's claim (the
# lease's end less the lease); to the provider's acceptance (the sink's clock). The last, not
# part of the latency: from the acceptance to the dispatcher recording the round (sent_at_ms).
STAGES = (
    ("received->acked", "api: received -> 200"),
    ("acked->queued", "engine: 200 -> queued"),
    ("queued->claimed", "dispatch: queued -> claimed"),
    ("claimed->accepted", "send: claimed -> accepted"),
    ("acked->accepted", "total: 200 -> accepted"),
    ("accepted->recorded", "accepted -> recorded"),
)


@dataclass(frozen=True)
class Round:
    """A dispatch round, as the outbox keeps it: the messages one claim leased (one lease end),
    sent on their first claim. From the claim to the provider's first acceptance is the
    claiming transaction and one send; from the first acceptance to the last, the round's
    sending."""

    messages: int
    to_first_s: float
    first_to_last_s: float


@dataclass
class Report:
    acked_events: int
    lost: list[str]
    channels: dict[str, ChannelReport]
    timer_rows: Counter[tuple[int, str]]  # (person, channel) -> outbox rows of the timer journey
    retaken: int  # outbox rows claimed more than once: claimed by a process that was killed
    sender_kills: list[float]  # when a process that sends was killed
    # (journey, channel) -> one dict of STAGES per message sent on its first claim to a person
    # acknowledged away from any kill.
    stages: dict[tuple[str, str], list[dict[str, float]]] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [x for c in self.channels.values() for x in c.latencies]

    @property
    def latencies_calm(self) -> list[float]:
        return [x for c in self.channels.values() for x in c.latencies_calm]

    def p(self, q: float, which: list[float] | None = None) -> float:
        return percentile(self.latencies if which is None else which, q)

    def table(self, title: str, extra: dict[str, Any]) -> str:
        rows: list[tuple[str, Any]] = [
            ("events acknowledged", self.acked_events),
            ("acknowledged, not in events", len(self.lost)),
            ("sends tried again (their sender killed)", self.retaken),
            ("timer sends queued != 1", sum(1 for n in self.timer_rows.values() if n != 1)),
        ]
        for name, c in self.channels.items():
            rows += [
                (f"{name}: messages (distinct)", c.messages),
                (f"{name}: received in all", c.copies),
                (f"{name}: received more than once", len(c.duplicated)),
                (f"{name}:   of them outside the resend window", len(c.outside_window)),
                (f"{name}: people without their message", len(c.missing_people)),
                (f"{name}: people with two different messages", len(c.people_with_two)),
                (
                    f"{name}: trigger->send p50 / p99 / max, s",
                    f"{percentile(c.latencies, 0.5):.2f} / {percentile(c.latencies, 0.99):.2f}"
                    f" / {percentile(c.latencies, 1.0):.2f}",
                ),
                (f"{name}: p99 away from kills, s", f"{percentile(c.latencies_calm, 0.99):.2f}"),
            ]
        rows += [
            ("p50 trigger->send, s", f"{self.p(0.50):.2f}"),
            ("p99 trigger->send, s", f"{self.p(0.99):.2f}"),
            ("max trigger->send, s", f"{self.p(1.0):.2f}"),
            ("p99 away from kills, s", f"{self.p(0.99, self.latencies_calm):.2f}"),
            *extra.items(),
        ]
        width = max(len(str(k)) for k, _ in rows)
        lines = [title, "-" * len(title)] + [f"{k:<{width}}  {v}" for k, v in rows]
        return "\n".join([*lines, "", self.stage_table()])

    def stage_table(self) -> str:
        """Where the time goes away from kills: per journey and channel, each stage's p50 and
        p99, and its mean over the slowest 1% of messages by total (what the tail is made of)."""
        title = "where trigger->send goes away from kills, s: p50 / p99 / mean of the slowest 1%"
        head = ["", "n", *(label for _, label in STAGES)]
        body = []
        for (journey, channel), per in sorted(self.stages.items()):
            ordered = sorted(per, key=lambda m: m["acked->accepted"])
            tail = ordered[-max(1, len(ordered) // 100) :]
            cells = [f"{journey}, {channel}", str(len(per))]
            for stage, _ in STAGES:
                values = [m[stage] for m in per if stage in m]
                tail_values = [m[stage] for m in tail if stage in m]
                mean = sum(tail_values) / len(tail_values) if tail_values else math.nan
                cells.append(f"{percentile(values, 0.5):.2f} / {percentile(values, 0.99):.2f} / {mean:.2f}")
            body.append(cells)
        widths = [max(len(row[k]) for row in [head, *body]) for k in range(len(head))]
        lines = [title, "-" * len(title)]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [head, *body]]
        if self.rounds:
            sizes = [float(r.messages) for r in self.rounds]
            to_first = [r.to_first_s for r in self.rounds]
            spans = [r.first_to_last_s for r in self.rounds]
            lines.append(
                f"dispatch rounds (first attempts, all): {len(self.rounds)}, messages each p50 / max"
                f" {percentile(sizes, 0.5):.0f} / {percentile(sizes, 1.0):.0f};"
                f" claim -> first accepted p50 / p99 {percentile(to_first, 0.5):.2f}"
                f" / {percentile(to_first, 0.99):.2f} s; first -> last accepted p50 / p99"
                f" {percentile(spans, 0.5):.2f} / {percentile(spans, 0.99):.2f} s"
            )
        return "\n".join(lines)


def duplicates(
    arrivals: list[Arrival], kills: list[tuple[float, str, str]], window_s: float
) -> tuple[dict[str, list[Arrival]], dict[str, list[float]], list[str]]:
    """The arrivals by Message-ID; the arrival times of those received more than once; and
    those of them outside the resend window.

    The window (docs/roles.md): a process that sends (dispatch, all) dies after the provider
    accepted a message and before it recorded that, while its lease runs; another sends it
    again once the lease has ended. So each copy after the first needs a kill of a sender
    after the copy before it was accepted and within `window_s` (the lease, and a margin) of
    it. When the resend comes is not bounded by the lease: it is due then, and goes when a
    dispatcher next gets to it (behind a backlog, later)."""
    by_id: dict[str, list[Arrival]] = defaultdict(list)
    for a in arrivals:
        by_id[a.message_id].append(a)
    sender_kills = sorted(at for at, role, _ in kills if role in ("dispatch", "all"))
    duplicated: dict[str, list[float]] = {}
    outside: list[str] = []
    for mid, copies in by_id.items():
        if len(copies) < 2:
            continue
        times = sorted(c.at for c in copies)
        duplicated[mid] = times
        for before, after in pairwise(times):
            # The kill is noted just before the signal; the sink notes an acceptance a moment
            # after the sender saw it: hence the half second.
            if not any(before - 0.5 <= k <= min(after, before + window_s) for k in sender_kills):
                outside.append(mid)
                break
    return by_id, duplicated, outside


def check(
    db: Db,
    ws: str,
    load: Load,
    arrivals: dict[str, list[Arrival]],
    reachable: dict[str, set[int]],
    kills: list[tuple[float, str, str]],
    window_s: float,
    lease_s: float,
    failover_s: Mapping[str, float] | None = None,
) -> Report:
    """What came out, against what was acknowledged.

    - lost: acknowledged messageIds not in `events`;
    - per channel (`arrivals` by channel; `reachable`: the people the channel can reach, all
      others acknowledged if not named): duplicates, a message received more than once, each
      copy after the first within the resend window (`duplicates`); people acknowledged and
      reachable whose message never came;
    - latency: from the acknowledgement of a person's request to the provider's acceptance of
      their message's first copy, less the wait for the timer journey; and its stages
      (`stage_breakdown`).
    """
    present = {r.message_id for r in db.rows("SELECT message_id FROM events WHERE workspace_id = :ws", ws=ws)}
    lost = sorted(set(load.acked) - present)
    # A kill's failover lasts until the dead process's work has moved: an engine worker's
    # partitions after the lease TTL plus a heartbeat (runtime/leases.py: 6 + 2 s), a
    # dispatcher's leased rows after their lease (plus a poll). A person's message is "away
    # from kills" when its way from due to sent overlaps no failover: a kill at k spans
    # [k, k + failover], so it touches a message when due - failover <= k <= due + latency.
    # (A window of a fixed 2 s before the due time counted messages stuck behind an
    # engine's lease for up to 6 s as calm.)
    spans = {"engine": ENGINE_FAILOVER_S, "dispatch": lease_s + 1.0, **(failover_s or {})}
    longest = max(spans.values())
    all_kills = sorted((at, spans.get(role, longest)) for at, role, _ in kills)

    def calm(i: int, latency: float) -> bool:
        due = load.user_acked[i] + (WAIT_S if i % 2 else 0.0)
        return not any(due - span <= k <= due + latency for k, span in all_kills)

    channels: dict[str, ChannelReport] = {}
    firsts: dict[str, dict[int, float]] = {}
    for name, got in arrivals.items():
        by_id, duplicated, outside = duplicates(got, kills, window_s)
        first: dict[int, float] = {}
        distinct: dict[int, set[str]] = defaultdict(set)
        for a in got:
            i = person_of(a.rcpt)
            first[i] = min(first.get(i, a.at), a.at)
            distinct[i].add(a.message_id)
        expected = set(load.user_acked) & reachable.get(name, set(load.user_acked))
        latencies, latencies_calm = [], []
        for i, acked in load.user_acked.items():
            if i not in first:
                continue
            latency = first[i] - acked - (WAIT_S if i % 2 else 0.0)
            latencies.append(latency)
            if calm(i, latency):
                latencies_calm.append(latency)
        channels[name] = ChannelReport(
            messages=len(by_id),
            copies=len(got),
            duplicated=duplicated,
            outside_window=outside,
            missing_people=sorted(expected - set(first)),
            people_with_two=sorted(i for i, ids in distinct.items() if len(ids) > 1),
            latencies=latencies,
            latencies_calm=latencies_calm,
        )
        firsts[name] = first
    timer_rows: Counter[tuple[int, str]] = Counter(
        (person_of(json.loads(r.traits)["email"]), r.channel)
        for r in db.rows(
            "SELECT p.traits, o.channel FROM outbox o JOIN profiles p ON p.id = o.profile_id"
            " WHERE o.workspace_id = :ws AND o.journey_id = 'fault-later'",
            ws=ws,
        )
    )
    for i in load.user_acked:
        if i % 2 == 1:
            for name in arrivals:
                timer_rows.setdefault((i, name), 0)
    return Report(
        acked_events=len(load.acked),
        lost=lost,
        channels=channels,
        timer_rows=timer_rows,
        retaken=db.scalar("SELECT count(*) FROM outbox WHERE workspace_id = :ws AND claims > 1", ws=ws),
        sender_kills=sorted(at for at, role, _ in kills if role in ("dispatch", "all")),
        stages=stage_breakdown(db, ws, load, firsts, lease_s, calm),
        rounds=dispatch_rounds(db, ws, firsts, lease_s),
    )


def stage_breakdown(
    db: Db, ws: str, load: Load, firsts: dict[str, dict[int, float]], lease_s: float, calm: Any
) -> dict[tuple[str, str], list[dict[str, float]]]:
    """The STAGES of each message sent on its first claim to a person acknowledged away from
    any kill (`calm(person, latency)`), by (journey, channel). For the timer journey the
    engine's stage is from the 200 plus the wait to the queuing: the event's decision and the
    timer's firing together (the timer's due time is not kept once it fired)."""
    rows = db.rows(
        "SELECT e.message_id, e.received_at_ms, o.journey_id, o.channel, o.created_at_ms, o.leased_until_ms,"
        " o.sent_at_ms FROM outbox o JOIN events e ON e.workspace_id = o.workspace_id"
        " AND e.profile_id = o.profile_id AND e.type = 'track' AND e.event IN (:now, :later)"
        " WHERE o.workspace_id = :ws AND o.status = 'sent' AND o.claims = 1",
        ws=ws,
        now=NOW_EVENT,
        later=LATER_EVENT,
    )
    out: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for r in rows:
        i = int(r.message_id.split("-", 1)[1])
        acked = load.user_acked.get(i)
        accepted = firsts.get(r.channel, {}).get(i)
        if acked is None or accepted is None:
            continue
        wait = WAIT_S if i % 2 else 0.0
        total = accepted - acked - wait
        if not calm(i, total):
            continue
        queued = r.created_at_ms / 1000
        stages = {
            "received->acked": acked - r.received_at_ms / 1000,
            "acked->queued": queued - acked - wait,
            "acked->accepted": total,
            "accepted->recorded": r.sent_at_ms / 1000 - accepted,
        }
        if r.leased_until_ms is not None:
            claimed = r.leased_until_ms / 1000 - lease_s
            stages["queued->claimed"] = claimed - queued
            stages["claimed->accepted"] = accepted - claimed
        out[("on event" if i % 2 == 0 else "after wait", r.channel)].append(stages)
    return dict(out)


def dispatch_rounds(db: Db, ws: str, firsts: dict[str, dict[int, float]], lease_s: float) -> list[Round]:
    """The dispatch rounds of the messages sent on their first claim (`Round`): the rows one
    claim leased share their lease end (the claim's clock plus the lease)."""
    rows = db.rows(
        "SELECT e.message_id, o.channel, o.leased_until_ms FROM outbox o JOIN events e"
        " ON e.workspace_id = o.workspace_id AND e.profile_id = o.profile_id AND e.type = 'track'"
        " AND e.event IN (:now, :later)"
        " WHERE o.workspace_id = :ws AND o.status = 'sent' AND o.claims = 1 AND o.leased_until_ms IS NOT NULL",
        ws=ws,
        now=NOW_EVENT,
        later=LATER_EVENT,
    )
    accepted: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        at = firsts.get(r.channel, {}).get(int(r.message_id.split("-", 1)[1]))
        if at is not None:
            accepted[r.leased_until_ms].append(at)
    out = []
    for until_ms, times in accepted.items():
        claimed = until_ms / 1000 - lease_s
        out.append(Round(len(times), min(times) - claimed, max(times) - min(times)))
    return out


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
