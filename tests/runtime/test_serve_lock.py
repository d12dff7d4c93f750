"""`nudgeflow serve` as an operator runs it: a second engine on one database exits naming
the first; an ingest-only server and read-only commands still work beside it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import NUDGEFLOW, free_port

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGEFLOW, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, cwd=ROOT
    )


class Serve:
    def __init__(self, database_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [NUDGEFLOW, "serve", "--database", database_url, "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NUDGEFLOW_LOG_LEVEL": "WARNING", **env},
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@pytest.fixture
def engine_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Serve]]:
    created = run("workspace", "create", "lock", "--json", "--database", database_url)
    assert created.returncode == 0, created.stderr
    workspace = json.loads(created.stdout)["workspace_id"]
    applied = run(
        "templates",
        "apply",
        "examples/templates/cart-1h-your-items.yaml",
        "--workspace",
        workspace,
        "--database",
        database_url,
    )
    assert applied.returncode == 0, applied.stderr
    server = Serve(database_url, tmp_path / "engine.log", NUDGEFLOW_ENGINE="1")
    try:
        server.wait_ready()
        yield workspace, server
    finally:
        server.stop()


def test_a_second_engine_exits_naming_the_first_and_everything_else_works_beside_it(
    engine_server: tuple[str, Serve], database_url: str, tmp_path: Path
) -> None:
    workspace, first = engine_server
    second = Serve(database_url, tmp_path / "second.log", NUDGEFLOW_ENGINE="1")
    assert second.proc.wait(60) != 0
    said = " ".join((tmp_path / "second.log").read_text().split())
    assert "another engine is running on this database" in said
    assert f"pid {first.proc.pid}," in said and f"host {socket.gethostname()}" in said and "started 20" in said
    assert "NUDGEFLOW_ENGINE=0" in said and "Traceback" not in said

    ingest_only = Serve(database_url, tmp_path / "ingest.log", NUDGEFLOW_ENGINE="0")
    try:
        ingest_only.wait_ready()
    finally:
        ingest_only.stop()

    validated = run("journeys", "validate", "examples/journeys/welcome.yaml")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    simulated = run("simulate", "-j", "examples/journeys", "-e", "examples/events/sample.jsonl")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    rendered = run(
        "templates", "render", "cart-1h-your-items", "--workspace", workspace, "--sample", "--database", database_url
    )
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert first.proc.poll() is None  # the engine ran throughout
