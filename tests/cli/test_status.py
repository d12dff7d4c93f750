"""`nudgeflow status` through typer's CliRunner, on SQLite and PostgreSQL (a database of the
module's own: the workers and leases it shows are not per workspace)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from nudgeflow.cli import app
from nudgeflow.core.clock import SystemClock, to_ms
from nudgeflow.runtime.leases import LeaseKeeper
from nudgeflow.store import partition_leases as leases

OUTBOX_COLUMNS = (
    "workspace_id, idempotency_key, profile_id, run_id, journey_id, journey_version, step, channel, template,"
    " marketing, payload, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms"
)


def status(url: str) -> str:
    # Heartbeats count as alive for 30 s here, leases last 60 s: a slow machine between the
    # ticks and the command does not turn them stale.
    done = CliRunner().invoke(app, ["status", "--database", url, "--lease-ttl-ms", "30000"])
    assert done.exit_code == 0, done.output
    return done.output


def clear_backlog(engine: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM timers"))
        conn.execute(text("DELETE FROM outbox"))


def test_status_shows_workers_partitions_positions_timers_and_the_outbox(
    private_database_url: str, lease_engine: Any
) -> None:
    clear_backlog(lease_engine)
    clock = SystemClock()
    group = [
        LeaseKeeper(lease_engine, name, 64, clock, 60_000, host="node-1", pid=100 + i) for i, name in enumerate("abc")
    ]
    for _ in range(2):  # the first round gives a everything; the second shares it out
        for keeper in group:
            keeper.tick()
    now = to_ms(clock.now())
    with lease_engine.begin() as conn:
        leases.register_worker(conn, "gone", host="node-2", pid=7, now_ms=now - 60_000)
        leases.save_position(conn, 5, 1234, now)
        conn.execute(
            text(
                "INSERT INTO timers (profile_id, key, workspace_id, due_at_ms, payload, partition)"
                " VALUES ('p', 'k', 'ws', :d, '{}', 0)"
            ),
            {"d": now - 30_000},
        )
        for key, due in (("k1", now - 90_000), ("k2", now + 3_600_000)):
            conn.execute(
                text(
                    f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES "
                    "('ws', :k, 'p', 'r', 'j', 1, 's', 'email', 't', 1, '{}', 'pending', 0, :d, 0, 0)"
                ),
                {"k": key, "d": due},
            )

    out = status(private_database_url)
    lines = out.splitlines()
    row = {name: next(line for line in lines if f" {name} " in line) for name in ("a", "b", "c", "gone")}
    assert "22: 0-21" in row["a"] and "node-1" in row["a"] and " 100 " in row["a"] and " yes " in row["a"]
    assert "21: 22-42" in row["b"] and "21: 43-63" in row["c"]
    # Ages in whole seconds, read a moment after the rows were written (a slow machine: a few s).
    assert " no " in row["gone"] and "none" in row["gone"] and re.search(r"\(1 min \d s ago\)", row["gone"])
    assert "engine" in row["a"]  # the role
    five = next(line for line in lines if line.lstrip("│ ").startswith("5 "))
    assert " a " in five and "1234" in five and "expires in" in five
    assert re.search(r"Oldest pending timer: due \S+Z \(3\d s ago\)", out)
    assert re.search(r"Outbox backlog: 2 pending, 1 due now; the oldest due 1 min 3\d s ago", out)

    group[0].drain()
    out = status(private_database_url)
    drained = next(line for line in out.splitlines() if " a " in line and "node-1" in line)
    assert "stopped" in drained and "none" in drained
    assert "free" in out


def test_status_without_workers_says_none_run_here(private_database_url: str, lease_engine: Any) -> None:
    clear_backlog(lease_engine)
    out = status(private_database_url)
    assert "No engine workers are registered" in out and "embedded runtime" in out
    assert "Oldest pending timer: none" in out
    assert "Outbox backlog: 0 pending, 0 due now" in out
    assert "partitions" not in out  # no lease rows: no table of them


def test_status_on_a_database_that_does_not_answer_fails_with_a_message() -> None:
    done = CliRunner().invoke(app, ["status", "--database", "postgresql://nobody@127.0.0.1:1/none"])
    assert done.exit_code == 1
    assert "cannot open the database" in done.output or "database" in done.output
