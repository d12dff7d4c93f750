"""`nudgeflow` in processes of its own, as an operator runs it: a command, a `serve` server.

Shared by the runtime tests that run it and their fixtures in conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support import NUDGEFLOW, free_port

# The checkout: commands run here, so the examples/ paths they are given resolve.
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`nudgeflow *args` to its end, its output captured."""
    return subprocess.run(
        [NUDGEFLOW, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, cwd=ROOT
    )


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, seconds: float = 60) -> None:
    """Until `serve` on `port` answers /healthz with 200 (polling another process, with a
    deadline); its log in the error if it exits or never gets there."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"serve did not become ready: {log.read_text()}")


class Serve:
    """`nudgeflow serve` on a free port, its output in `log`; `env` adds to the environment."""

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
        wait_healthy(self.proc, self.port, self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def cli_command() -> list[str]:
    """The console script beside this Python, or the package's main() where it is not installed."""
    script = Path(sys.executable).with_name("nudgeflow")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from nudgeflow.cli import main; main()"]
