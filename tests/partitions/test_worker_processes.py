"""`nudgeflow serve --role engine` as an operator runs it: two worker processes share the
partitions, one is SIGKILLed and the other takes its partitions within the 10 s of issue 17
item 4, every acknowledged event is decided, SIGTERM gives the leases back, and `--role all`
is refused on the database afterwards."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from nudgeflow.store import database
from tests.roles.support import RoleProcess, wait_for
from tests.support import NUDGEFLOW, free_port, make_workspace

FAILOVER_BOUND_S = 10.0  # issue 17 item 4
PARTITIONS = 64


def owners(db: Engine) -> Counter[str | None]:
    with db.connect() as conn:
        return Counter(r[0] for r in conn.execute(text("SELECT owner FROM partition_leases")))


def undecided(db: Engine) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT COALESCE(SUM(h.head - COALESCE(p.stream_seq, 0)), 0) FROM partition_heads h"
                    " LEFT JOIN partition_positions p ON p.partition = h.partition"
                )
            ).scalar_one()
        )


def send(url: str, write_key: str, users: range, event: str) -> None:
    with httpx.Client(base_url=url, timeout=30, auth=(write_key, "")) as client:
        for i in users:
            batch = [{"type": "track", "userId": f"u{i}", "event": event, "messageId": f"{event}-{i}"}]
            assert client.post("/v1/batch", json={"batch": batch}).status_code == 200


def test_two_engine_processes_share_the_partitions_and_one_takes_over_when_the_other_is_killed(
    pg_url: str, tmp_path: Path
) -> None:
    db = database.create_db_engine(pg_url)
    ws = make_workspace(db)
    api = RoleProcess("api", pg_url, tmp_path / "api.log")
    one = RoleProcess("engine", pg_url, tmp_path / "engine1.log")
    two = RoleProcess("engine", pg_url, tmp_path / "engine2.log")
    try:
        for proc in (api, one, two):
            proc.wait_ready()
        wait_for("two workers holding 32 partitions each", lambda: sorted(owners(db).values()) == [32, 32], 30)
        send(api.url, ws.write_key, range(200), "Signed Up")
        wait_for("every event decided", lambda: undecided(db) == 0, 30)
        with db.connect() as conn:
            decided_by = {
                r[0] for r in conn.execute(text("SELECT owner FROM partition_leases WHERE owner IS NOT NULL"))
            }
        assert len(decided_by) == 2
        metrics = httpx.get(f"{one.url}/metrics").text
        assert "nudgeflow_partitions_owned 32.0" in metrics
        assert 'nudgeflow_partition_lag_events{partition="63"} 0.0' in metrics
        assert "nudgeflow_partition_lease_moves_total" in metrics and "nudgeflow_engine_lag_events 0.0" in metrics

        one.proc.kill()  # SIGKILL: no drain, its leases must expire
        killed = time.monotonic()
        send(api.url, ws.write_key, range(200, 400), "Signed Up")
        wait_for("the survivor holding every partition", lambda: list(owners(db).values()) == [PARTITIONS], 20)
        moved = time.monotonic() - killed
        assert moved <= FAILOVER_BOUND_S, f"partitions moved {moved:.1f} s after the kill"
        wait_for("every event decided after the failover", lambda: undecided(db) == 0, 30)
        with db.connect() as conn:
            people = conn.execute(text("SELECT count(*) FROM profile_state")).scalar_one()
        assert people == 400  # each person's Signed Up decided (a state each): none lost
        print(f"partitions moved {moved:.1f} s after the SIGKILL")

        two.terminate()
        assert two.proc.wait(30) == 0, two.log.read_text()
        assert set(owners(db)) == {None}  # given back at once, not left to expire
    finally:
        for proc in (api, one, two):
            proc.stop()
    refused = subprocess.run(
        [NUDGEFLOW, "serve", "--role", "all", "--database", pg_url, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "partitioned engine workers" in refused.stderr
    db.dispose()
