"""`serve --role api --reuse-port`: several API processes listening on one host and port
(SO_REUSEPORT), as an operator runs them, on PostgreSQL (issue 17, item 2).

Two processes on one port; events sent over HTTP, each on a fresh connection, so the kernel
picks a process for each. Both processes serve some (their request logs say which), every
acknowledged event is stored once, and when one stops the other goes on serving the port.
Where it makes no sense (`--role all`, the ops-only roles, a system without a spreading
SO_REUSEPORT), `serve` refuses before it opens anything.
"""

from __future__ import annotations

import socket
import sys
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text

from nudgeflow.cli.serve import reuse_port_option
from nudgeflow.store import database
from tests.roles.support import RoleProcess, wait_for
from tests.runtime.serve_process import run
from tests.support import free_port, make_workspace

EVENTS = 120
PG = "postgresql://postgres@127.0.0.1:5432/postgres"  # never opened: each refusal comes first

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux"
)


def requests_served(log: Path) -> Counter[str]:
    """Requests a process logged (--log-requests), by route."""
    served: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = orjson.loads(line)
            if record.get("msg") == "request":
                served[record["route"]] += 1
    return served


def _said(done: object) -> str:
    return " ".join((done.stdout + done.stderr).split())  # type: ignore[attr-defined]


def test_two_api_processes_share_one_port_and_store_every_event_once(pg_db: str, tmp_path: Path) -> None:
    db = database.create_db_engine(pg_db)
    ws = make_workspace(db)
    port = free_port()
    procs = [
        RoleProcess("api", pg_db, tmp_path / f"api{i}.log", "--reuse-port", "--log-requests", port=port)
        for i in range(2)
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        # Ready when each has answered a /healthz: new connections until both have.
        def both_answered() -> bool:
            for p in procs:
                if p.proc.poll() is not None:
                    raise AssertionError(f"serve exited with {p.proc.returncode}: {p.log.read_text()}")
            try:
                httpx.get(f"{url}/healthz", timeout=2)
            except httpx.HTTPError:
                return False
            return all(requests_served(p.log)["/healthz"] for p in procs)

        wait_for("both processes answering on the shared port", both_answered, seconds=90)

        acknowledged = []
        for i in range(EVENTS):
            # httpx.post: a connection of its own each, so the kernel picks a process for each.
            answer = httpx.post(
                f"{url}/v1/track",
                json={"userId": f"u{i % 10}", "event": "Shared Port", "messageId": f"rp-{i}"},
                auth=(ws.write_key, ""),
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            acknowledged.append(f"rp-{i}")
        served = [requests_served(p.log)["/v1/track"] for p in procs]
        assert sum(served) == EVENTS and all(n > 0 for n in served), served

        # One stops (SIGTERM, exit 0); the other goes on serving the port alone.
        procs[0].terminate()
        assert procs[0].proc.wait(30) == 0, procs[0].log.read_text()
        before = requests_served(procs[1].log)["/v1/track"]
        for i in range(EVENTS, EVENTS + 20):
            answer = httpx.post(
                f"{url}/v1/track",
                json={"userId": "u0", "event": "Shared Port", "messageId": f"rp-{i}"},
                auth=(ws.write_key, ""),
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            acknowledged.append(f"rp-{i}")
        assert requests_served(procs[1].log)["/v1/track"] == before + 20
        procs[1].terminate()
        assert procs[1].proc.wait(30) == 0, procs[1].log.read_text()
    finally:
        for p in procs:
            p.stop()
    with db.connect() as conn:
        stored = Counter(
            dict(
                conn.execute(
                    text("SELECT message_id, count(*) FROM events WHERE workspace_id = :ws GROUP BY message_id"),
                    {"ws": ws.workspace_id},
                ).all()
            )
        )
    assert stored == Counter(dict.fromkeys(acknowledged, 1))
    for p in procs:
        said = p.log.read_text()
        assert "with SO_REUSEPORT" in said and "Traceback" not in said
    db.dispose()


REFUSED = [
    (["--role", "all", "--reuse-port"], {}, "--reuse-port (NUDGEFLOW_REUSE_PORT) with --role all"),
    ([], {"NUDGEFLOW_REUSE_PORT": "1"}, "--reuse-port (NUDGEFLOW_REUSE_PORT) with --role all"),
    (["--role", "engine", "--reuse-port"], {}, "--reuse-port (NUDGEFLOW_REUSE_PORT) with --role engine"),
    (
        ["--role", "dispatch"],
        {"NUDGEFLOW_REUSE_PORT": "yes"},
        "--reuse-port (NUDGEFLOW_REUSE_PORT) with --role dispatch",
    ),
]


@pytest.mark.parametrize(("args", "env", "says"), REFUSED, ids=[f"{' '.join(a)} {e}" for a, e, _ in REFUSED])
def test_reuse_port_is_refused_but_for_role_api(args: list[str], env: dict[str, str], says: str) -> None:
    done = run("serve", "--database", PG, *args, env=env)
    said = _said(done)
    assert done.returncode == 2, said
    assert says in said and "Traceback" not in said


def test_a_port_held_without_so_reuseport_is_said_before_the_database_is_opened() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = run("serve", "--role", "api", "--reuse-port", "--database", PG, "--port", str(port))
    said = _said(done)
    assert done.returncode == 1, said
    assert f"--reuse-port: cannot bind 127.0.0.1:{port}" in said and "without SO_REUSEPORT" in said
    assert "Traceback" not in said


def test_systems_whose_so_reuseport_does_not_spread_connections_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reuse_port_option() == socket.SO_REUSEPORT  # here, on Linux
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ValueError, match="on darwin, SO_REUSEPORT lets processes bind one port without spreading"):
        reuse_port_option()
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ValueError, match=r"this system \(win32\) has no SO_REUSEPORT"):
        reuse_port_option()
