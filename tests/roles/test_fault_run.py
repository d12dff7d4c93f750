"""The fault run of issue 17 item 7: `serve --role` processes on one PostgreSQL database of the
test's own, under a load through the real HTTP API, while processes are SIGKILLed on a
schedule; then what was acknowledged is compared with what the database holds and what the
providers received: a real SMTP sink and the local Web Push service (runtime/dev_push.py),
both on loopback.

1. Two `api`, three `engine` and two `dispatch` processes. An engine is killed every
   ENGINE_KILL_S and a dispatcher every DISPATCH_KILL_S, each restarted at once (a new
   process). The engines are partitioned workers: the survivors take a killed one's
   partitions when its leases expire (docs/partitions.md). Two journeys, each an email and
   then a push: one on the event, one after a WAIT_S timer, so timers come due across
   failovers. Every person's browser subscribed (POST /v1/push/subscriptions, as the SDK
   does) before the engines and dispatchers start.
2. One `api` and one `all` process, both `kill -9`ed at once, again and again, under load.
   The first KILL9_PUSH_PEOPLE people have a push subscription; the push of those after them
   is suppressed (no target), their email goes.

Checked at the end, once the system is idle (all messages queued, none pending, no timer),
for email (by Message-ID) and push (by message key) alike: no acknowledged event missing
from `events`; each person's message received; a message received more than once only in
the resend window of docs/roles.md (a process that sends killed within the lease after the
copy before was accepted), counted; every timer's sends queued once; in run 1, p99 from
acknowledgement to the provider's acceptance within P99_BOUND_S, and away from kills within
P99_CALM_BOUND_S when set. A table goes to stdout (pytest -s or -rA shows it), with where
the time goes away from kills (fault_support.STAGES).

Found by the fault run, and fixed: a dispatch round that outlasted its lease was sent again
by another dispatcher with no process dying (a dispatcher now starts no send with less than
half its lease, or the send timeout, left: runtime/dispatcher.Dispatcher.deadlined).

The default is bounded for the suite (2 cores). The issue's scale, by hand, on a machine of
its own (docs/roles.md, "Under fault"):

    NUDGEFLOW_FAULT_EVENTS=20000 NUDGEFLOW_FAULT_RATE=500 NUDGEFLOW_FAULT_ENGINE_KILL_S=10 \
    NUDGEFLOW_FAULT_DISPATCH_KILL_S=15 NUDGEFLOW_FAULT_CYCLES=20 NUDGEFLOW_FAULT_P99_S=15 \
    NUDGEFLOW_FAULT_P99_CALM_S=2 python -m pytest -s tests/roles/test_fault_run.py

(the suite's p99 bound is 30 s and away from kills none: another xdist worker shares the two
cores).
"""

from __future__ import annotations

import fcntl
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nudgeflow.core.clock import to_ms
from nudgeflow.runtime.dev_push import DevPushService, RunningDevPush, serve_dev_push
from nudgeflow.store import database
from tests.channels.smtp_support import start_sink
from tests.roles.fault_support import (
    CHANNELS,
    WAIT_S,
    Arrival,
    Db,
    Fleet,
    Load,
    Report,
    SlowSink,
    TimedSink,
    check,
    duplicates,
    env_float,
    env_int,
    push_arrivals,
    run_load,
    set_up_workspace,
    subscribe_people,
    wait_idle,
)
from tests.roles.support import RoleProcess, message_ids, outbox_rows, queue_messages, smtp_url
from tests.support import make_workspace

# 1,000 people: 2,000 messages (an email and a push each) in 25 s, and 1,000 subscriptions
# before: about the work of the 1,500 emails this ran before push was added.
EVENTS = env_int("NUDGEFLOW_FAULT_EVENTS", 2000)
RATE = env_float("NUDGEFLOW_FAULT_RATE", 80)
# The 10 s for engines: today a takeover is a new process's start, 3 to 12 s on the
# shared two cores, and kills closer together leave the engine down most of the time.
ENGINE_KILL_S = env_float("NUDGEFLOW_FAULT_ENGINE_KILL_S", 10)
DISPATCH_KILL_S = env_float("NUDGEFLOW_FAULT_DISPATCH_KILL_S", 12)
CYCLES = env_int("NUDGEFLOW_FAULT_CYCLES", 5)
# Run 2's load has no set length (it goes on until the last cycle): the first this many people
# have a push subscription (about four seconds of load per cycle), those after them email only
# (their push is suppressed: no target).
KILL9_RATE = min(RATE, 100.0)
KILL9_PUSH_PEOPLE = env_int("NUDGEFLOW_FAULT_KILL9_PUSH_PEOPLE", math.ceil(KILL9_RATE / 2 * CYCLES * 4))
# The lease: how long a killed dispatcher's claims wait before another sends them, which is
# the resend window. Short, so that a run ends in a bounded time; far above a send on loopback.
LEASE_S = 6.0
# The bound is 15 s across failovers; met with room when the run has the machine
# (docs/roles.md, "Under fault"). In the suite another xdist worker shares the 2 cores and a
# process's start alone can take 10 s, so the default checks twice that; set it to 15 for
# the run by hand.
P99_BOUND_S = env_float("NUDGEFLOW_FAULT_P99_S", 30.0)
# The issue's ≤ 2 s away from failovers: not checked by default (on the suite's shared two
# cores it is not met; the run prints it and where the time goes).
P99_CALM_BOUND_S = env_float("NUDGEFLOW_FAULT_P99_CALM_S", math.inf)
IDLE_BOUND_S = 90.0


@pytest.fixture
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The runs of this module one after the other, whichever xdist workers they land on: each
    is seven or so processes under load, and two at once on the suite's two cores measure the
    overload rather than the failovers. (A file lock in the session's base directory, which
    the workers share.)"""
    path = tmp_path_factory.getbasetemp().parent / "nudgeflow-fault-run.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def sink(one_at_a_time: None) -> Iterator[TimedSink]:
    s = TimedSink()
    controller = start_sink(s)
    s.port = controller.port
    yield s
    controller.stop()


@pytest.fixture
def push(one_at_a_time: None) -> Iterator[RunningDevPush]:
    """The local Web Push service, keeping every message it accepts."""
    running = serve_dev_push(DevPushService(keep=10**6))
    yield running
    running.stop()


def _env(sink: TimedSink) -> dict[str, str]:
    return {
        # 16 connections rather than 4: a round of up to 500 messages after a failover's burst
        # ends well within the lease (see test_no_message_is_sent_twice_when_a_round_...).
        "NUDGEFLOW_SMTP_URL": smtp_url(sink.port) + "&pool=16",
        "NUDGEFLOW_DISPATCH_LEASE_SECONDS": str(LEASE_S),
        "NUDGEFLOW_LOG_LEVEL": "WARNING",
        # The local Web Push service listens on loopback: the API accepts subscriptions there
        # (the sender accepts http:// only to a loopback address).
        "NUDGEFLOW_WEBPUSH_HOSTS": "127.0.0.1",
    }


def test_acknowledged_events_survive_engines_and_dispatchers_killed_under_load(
    pg_db: str, sink: TimedSink, push: RunningDevPush, tmp_path: Path
) -> None:
    started = time.monotonic()
    env = _env(sink)
    workspace = set_up_workspace(pg_db, tmp_path, env)
    ws = workspace["workspace_id"]
    people = EVENTS // 2
    # The APIs first: a subscription is stored before the dispatchers start (a dispatcher
    # turns push on at its start once one is), and every person's before the load.
    fleet = Fleet(pg_db, tmp_path, env, {"api": 2})
    db = Db(pg_db)
    try:
        fleet.wait_ready(every=True)  # the subscriptions go to both
        subscribing = time.monotonic()
        urls, key, vapid = fleet.urls("api"), workspace["write_key"], workspace["vapid_public_key"]
        subscribe_people(urls, key, push.service, range(1), vapid)
        # The others while the engines and dispatchers start (seconds of CPU each).
        fleet.add("engine", 3)
        fleet.add("dispatch", 2)
        subscribe_people(urls, key, push.service, range(1, people), vapid)
        subscribe_s = time.monotonic() - subscribing
        fleet.wait_ready()
        fleet.supervise({"engine": ENGINE_KILL_S, "dispatch": DISPATCH_KILL_S})
        load_started, cpu_started = time.monotonic(), time.process_time()
        load = run_load(lambda: fleet.urls("api"), workspace["write_key"], people, RATE)
        load_s = time.monotonic() - load_started
        # Faults go on while the last timers come due, then stop: the end is waited for calmly.
        time.sleep(WAIT_S)
        fleet.stop_faults()
        waited = wait_idle(db, ws, len(load.user_acked) * len(CHANNELS), IDLE_BOUND_S)
        time.sleep(0.5)  # the providers' last acceptances
        # The load, the SMTP sink and the push service share this process (and its GIL): a
        # process near one CPU second per second delays the acceptances it notes.
        cpu = (time.process_time() - cpu_started) / (time.monotonic() - load_started)
        report = check(
            db,
            ws,
            load,
            {"email": sink.arrivals(), "push": push_arrivals(push.service)},
            {},
            fleet.kills,
            window_s=LEASE_S + 5,
            lease_s=LEASE_S,
        )
        print()
        print(
            report.table(
                f"fault run: {EVENTS} events at {RATE:g}/s, 2 api, 3 engine, 2 dispatch",
                {
                    "requests sent / not acknowledged": f"{load.sent} / {sum(load.failed.values())}",
                    "not acknowledged, by answer": dict(load.failed),
                    "  for example": load.failure_sample,
                    "engine kills / starts refused": (
                        f"{sum(1 for _, r, _ in fleet.kills if r == 'engine')} / "
                        f"{sum(s.refused for s in fleet.slots['engine'])}"
                    ),
                    "dispatch kills": sum(1 for _, r, _ in fleet.kills if r == "dispatch"),
                    "kill to an engine answering, s (max)": _max(fleet.recovered.get("engine")),
                    "subscriptions, s / load, s / idle after, s": f"{subscribe_s:.1f} / {load_s:.1f} / {waited:.1f}",
                    "this process (load and providers), CPU s per s": f"{cpu:.2f}",
                    "wall, s": f"{time.monotonic() - started:.1f}",
                },
            )
        )
    finally:
        fleet.stop()
        db.dispose()
    _assert_report(report)


def test_acknowledged_events_survive_kill_9_of_everything_again_and_again(
    pg_db: str, sink: TimedSink, push: RunningDevPush, tmp_path: Path
) -> None:
    started = time.monotonic()
    env = _env(sink)
    workspace = set_up_workspace(pg_db, tmp_path, env)
    ws = workspace["workspace_id"]
    fleet = Fleet(pg_db, tmp_path, env, {"api": 1})
    db = Db(pg_db)
    rate = KILL9_RATE
    result: list[Load] = []
    cycles_done = threading.Event()
    try:
        fleet.wait_ready()
        urls, key, vapid = fleet.urls("api"), workspace["write_key"], workspace["vapid_public_key"]
        subscribe_people(urls, key, push.service, range(1), vapid)  # push in use when `all` starts
        fleet.add("all", 1)
        subscribe_people(urls, key, push.service, range(1, KILL9_PUSH_PEOPLE), vapid)
        fleet.wait_ready()
        fleet.supervise({})  # an `all` refused at start (its predecessor's lock not yet freed) starts again
        loader = threading.Thread(
            daemon=True,
            target=lambda: result.append(
                run_load(lambda: fleet.urls("api"), workspace["write_key"], 10**6, rate, stop=cycles_done)
            ),
        )
        loader.start()
        for _ in range(CYCLES):
            time.sleep(2.0)
            fleet.kill_all_and_restart()
            fleet.wait_ready()
        time.sleep(2.0)  # load on the last ones too
        cycles_done.set()
        loader.join()
        [load] = result
        waited = wait_idle(db, ws, len(load.user_acked) * len(CHANNELS), IDLE_BOUND_S)
        time.sleep(0.5)
        # An `all` that restarts with no dispatch process alive resends its predecessor's
        # unrecorded sends at once: the window is the restart, shorter than the lease.
        report = check(
            db,
            ws,
            load,
            {"email": sink.arrivals(), "push": push_arrivals(push.service)},
            {"push": set(range(KILL9_PUSH_PEOPLE))},
            fleet.kills,
            window_s=LEASE_S + 5,
            lease_s=LEASE_S,
        )
        print()
        print(
            report.table(
                f"kill -9 of api + all at once, {CYCLES} times",
                {
                    "requests sent / not acknowledged": f"{load.sent} / {sum(load.failed.values())}",
                    "not acknowledged, by answer": dict(load.failed),
                    "people with a push subscription": f"{KILL9_PUSH_PEOPLE} (the first)",
                    "idle after, s": f"{waited:.1f}",
                    "wall, s": f"{time.monotonic() - started:.1f}",
                },
            )
        )
    finally:
        cycles_done.set()
        fleet.stop()
        db.dispose()
    # Everything is down at once there, the API too: the latency is the restarts', printed only.
    _assert_report(report, latency=False)


def test_no_message_is_sent_twice_when_a_round_outlasts_the_lease_and_nothing_dies(pg_db: str, tmp_path: Path) -> None:
    # Scaled down: each send takes 0.5 s, the lease is 2 s (four sends' worth); 40 messages on
    # 4 connections make a round of 5 s. The same with the defaults: 500 messages, 4
    # connections, a relay taking 2.5 s each, the 300 s lease. A dispatcher starts no send
    # with less than half the lease (or the send timeout) left, and hands the rest back.
    slow = SlowSink(0.5)
    controller = start_sink(slow)
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db).workspace_id
    keys = queue_messages(db, ws, 40, to_ms(datetime.now(UTC)))
    env = {"NUDGEFLOW_SMTP_URL": smtp_url(controller.port), "NUDGEFLOW_DISPATCH_LEASE_SECONDS": "2"}
    procs = [RoleProcess("dispatch", pg_db, tmp_path / f"dispatch{i}.log", **env) for i in range(2)]
    try:
        # 40 messages at 0.5 s on 4 connections: 5 s for one dispatcher alone, with no takeover;
        # in rounds cut at half the lease, handed back and leased again, a few seconds more.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {r.status for r in outbox_rows(db, ws).values()} != {"sent"}:
            time.sleep(0.25)
        rows = outbox_rows(db, ws)
    finally:
        for proc in procs:
            proc.stop()  # SIGKILL, after the fact: nothing died while they sent
        controller.stop()
        db.dispose()
    copies = Counter(mid for _, mid in message_ids(slow))
    print(
        f"\nround longer than the lease: {len(keys)} queued, {sum(copies.values())} sent,"
        f" {sum(1 for n in copies.values() if n > 1)} more than once (at most {max(copies.values(), default=0)}),"
        f" status {dict(Counter(r.status for r in rows.values()))},"
        f" attempts {dict(Counter(r.attempts for r in rows.values()))},"
        f" claims {dict(Counter(r.claims for r in rows.values()))}"
    )
    assert {mid: n for mid, n in copies.items() if n > 1} == {}
    assert {r.status for r in rows.values()} == {"sent"}


def _max(values: list[float] | None) -> str:
    return f"{max(values):.1f}" if values else "-"


def _assert_report(report: Report, *, latency: bool = True) -> None:
    """Loss, double decisions and duplicates outside the resend window fail the test whatever
    else happened; then the latency bound."""
    assert report.acked_events > 0
    assert report.lost == [], f"acknowledged, not in events: {report.lost[:20]}"
    assert {i: n for i, n in report.timer_rows.items() if n != 1} == {}
    for name, c in report.channels.items():
        assert c.missing_people == [], f"{name}: acknowledged, never sent: {c.missing_people[:20]}"
        assert c.people_with_two == [], f"{name}: two different messages: {c.people_with_two[:20]}"
        assert c.outside_window == [], (
            f"{name}: {len(c.outside_window)} messages received twice with no sender killed within the lease"
            f" before the second copy (e.g. {c.duplicated[c.outside_window[0]]},"
            f" sender kills at {report.sender_kills})"
        )
    if latency:
        assert report.p(0.99) <= P99_BOUND_S
        assert report.p(0.99, report.latencies_calm) <= P99_CALM_BOUND_S


def test_the_check_tells_a_resend_in_the_window_from_one_outside_it() -> None:
    def at(t: float, mid: str) -> Arrival:
        return Arrival(t, "u000001@example.org", mid, "k", "s")

    kills = [(100.0, "dispatch", "dispatch0"), (200.0, "engine", "engine1")]
    arrivals = [
        at(99.9, "<resent>"),
        at(104.0, "<resent>"),  # a dispatcher killed between, within the window
        at(99.0, "<late>"),
        at(120.0, "<late>"),  # killed after it was accepted; resent late, behind a backlog
        at(80.0, "<early>"),
        at(104.0, "<early>"),  # the kill came long after its lease had ended
        at(199.0, "<engine>"),
        at(201.0, "<engine>"),  # only an engine killed between: it sends nothing
        at(300.0, "<twice>"),
        at(300.1, "<twice>"),  # nothing killed at all
        at(50.0, "<once>"),
    ]
    _by_id, duplicated, outside = duplicates(arrivals, kills, window_s=10.0)
    assert set(duplicated) == {"<resent>", "<late>", "<early>", "<engine>", "<twice>"}
    assert sorted(outside) == ["<early>", "<engine>", "<twice>"]
