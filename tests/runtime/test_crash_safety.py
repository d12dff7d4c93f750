"""Crash safety (issue 3, item 10): kill -9 the serving process again and again while a
client feeds events and timers fall due; restart it each time. Afterwards every
acknowledged event was processed, every due timer fired once, and no idempotency key was
sent twice.

The server is a real `nudgeflow serve` process on a real SQLite file with the real clock:
the journey's waits are a second or two, so timers fall due across the kills. The log
channel's sink has no unique constraint on the idempotency key on purpose, so a duplicate
send would show up here rather than being absorbed by the database.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

from nudgeflow.store.schema import events, journey_runs, log_channel_messages, outbox, timers
from tests.runtime.serve_process import cli_command
from tests.support import free_port

KILLS = 20


class Server:
    def __init__(self, db_url: str, log_path: Path) -> None:
        self.db_url = db_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "NUDGEFLOW_LOG_LEVEL": "WARNING", "NUDGEFLOW_ENGINE": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cli_command(), "serve", "--database", self.db_url, "--port", str(self.port)],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise AssertionError("server did not become healthy in 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Feeder(threading.Thread):
    """Sends Crash Probe events one request at a time to whatever server is up."""

    def __init__(self, write_key: str) -> None:
        super().__init__(daemon=True)
        self.write_key = write_key
        self.url = ""
        self.acked: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=2) as client:
            while not self.halt.is_set():
                url = self.url
                if not url:
                    time.sleep(0.01)
                    continue
                message_id = f"probe-{n}"
                body = {
                    "userId": f"user-{n % 7}",
                    "event": "Crash Probe",
                    "messageId": message_id,
                    "properties": {"n": n},
                }
                try:
                    r = client.post(f"{url}/v1/track", json=body, auth=(self.write_key, ""))
                except httpx.HTTPError:
                    time.sleep(0.02)  # the server is down: retry the same event, as SDKs do
                    continue
                if r.status_code == 200:
                    self.acked.append(message_id)
                    n += 1
                    time.sleep(0.005)


def test_kill_9_twenty_times_loses_nothing_and_sends_nothing_twice(crash_db: tuple[str, str], tmp_path: Path) -> None:
    db_url, write_key = crash_db
    rng = random.Random(int(os.environ.get("NUDGEFLOW_CRASH_SEED", "20261128")))
    server = Server(db_url, tmp_path / "server.log")
    feeder = Feeder(write_key)
    feeder.start()
    try:
        for _ in range(KILLS):
            server.start()
            feeder.url = server.url
            time.sleep(rng.uniform(0.2, 1.2))  # a random point: mid-request, mid-commit, mid-timer
            feeder.url = ""
            server.kill()
        feeder.halt.set()
        feeder.join(timeout=10)
        # A last life, long enough for every timer (waits of 1 s + 2 s) to fall due.
        server.start()
        engine = create_engine(db_url)
        # A bound, not a pace: the loop ends as soon as all is done. On a loaded 2-core machine
        # (CI runs two workers) the last life's start and drain took over 60 s once.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending_timers = conn.execute(select(func.count()).select_from(timers)).scalar_one()
                pending_out = conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
                ).scalar_one()
                cursor = conn.execute(text("SELECT position FROM engine_cursors WHERE name = 'events'")).scalar()
                newest = conn.execute(select(func.max(events.c.seq))).scalar()
            if pending_timers == 0 and pending_out == 0 and cursor == newest:
                break
            time.sleep(0.2)
    finally:
        feeder.halt.set()
        server.stop()

    assert len(feeder.acked) > 50, "the feeder got too few events through to test anything"
    with engine.connect() as conn:
        stored = {r[0] for r in conn.execute(select(events.c.message_id).where(events.c.event == "Crash Probe"))}
        runs = conn.execute(select(func.count()).select_from(journey_runs)).scalar_one()
        done = conn.execute(
            select(func.count()).select_from(journey_runs).where(journey_runs.c.status == "done")
        ).scalar_one()
        sent = conn.execute(
            select(log_channel_messages.c.idempotency_key, func.count()).group_by(
                log_channel_messages.c.idempotency_key
            )
        ).all()
        failed = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.status != "logged")  # the log channel
        ).scalar_one()
        left_timers = conn.execute(select(func.count()).select_from(timers)).scalar_one()
        cursor = conn.execute(text("SELECT position FROM engine_cursors WHERE name = 'events'")).scalar()
        newest = conn.execute(select(func.max(events.c.seq))).scalar()
    engine.dispose()

    missing = set(feeder.acked) - stored
    assert not missing, f"acknowledged events lost: {sorted(missing)[:5]}"
    assert cursor == newest, "some committed events were never processed"
    # Every stored probe (acknowledged, or committed just before a kill ate the answer)
    # started one run, and every run went through both timers to the end.
    assert runs == len(stored)
    assert done == runs
    assert left_timers == 0
    assert failed == 0
    duplicates = [key for key, count in sent if count > 1]
    assert not duplicates, f"idempotency keys sent twice: {duplicates[:5]}"
    assert len(sent) == 3 * len(stored), "each run sends exactly three messages"
