"""Fixtures of the CLI tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nudgeflow.store import database
from tests.cli.serve_support import Served
from tests.cli.simulate_data import CART, WELCOME
from tests.support import NUDGEFLOW, free_port


def _environment() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
    out["COLUMNS"] = "250"  # rich wraps at the terminal width; keep lines whole for the asserts
    return out


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**_environment(), "NUDGEFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


@pytest.fixture
def db_env(database_url: str) -> dict[str, str]:
    """The environment on each database the tests run against (SQLite and PostgreSQL)."""
    if database_url.startswith("postgresql"):  # PostgreSQL is upgraded explicitly
        engine = database.create_db_engine(database_url)
        database.upgrade(engine)
        engine.dispose()
    return {**_environment(), "NUDGEFLOW_DATABASE_URL": database_url}


@pytest.fixture
def journeys(tmp_path: Path) -> Path:
    """A folder of journeys for `simulate`, with a file in it that is not one."""
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "welcome.yaml").write_text(WELCOME)
    (folder / "cart.yml").write_text(CART)
    (folder / "README.md").write_text("not a journey")
    return folder


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(base: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not become ready: " + log.read_text()
        time.sleep(0.05)  # polling a subprocess for readiness, with a deadline


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """`nudgeflow serve` on a new SQLite file, logging requests: (base URL, process, log file)."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'served' / 'nudgeflow.db'}"  # a new file: serve migrates it
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [NUDGEFLOW, "serve", "--port", str(port), "--database", url, "--log-requests"],
            env={**env, "NUDGEFLOW_DATABASE_URL": url},
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, proc, log)
            yield base, proc, log
        finally:
            _stop(proc)


@pytest.fixture
def start(env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """Launches `nudgeflow serve` with the arguments and extra environment given; stops them all after."""
    procs: list[subprocess.Popen[str]] = []

    def launch(args: list[str], extra_env: dict[str, str] | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        sink = log.open("w")
        proc = subprocess.Popen(
            [NUDGEFLOW, "serve", "--port", str(port), *args],
            env={**env, **(extra_env or {})},
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, proc, log)
        return Served(base, proc, log)

    yield launch
    for proc in procs:
        _stop(proc)
