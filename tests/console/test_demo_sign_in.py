"""`nudgeflow demo --keep-serving` prints a console sign-in: the user it makes is an admin of
the demo's workspace, and the email and password it prints sign in."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from nudgeflow.demo.run import DEMO_ADMIN, console_sign_in
from nudgeflow.settings import Settings
from tests.console.support import sign_in
from tests.support import NUDGEFLOW, start_server


def test_the_demo_console_user_signs_in_as_an_admin(tmp_path: Path) -> None:
    server = start_server(Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}", engine_enabled=False))
    try:
        workspace = server.workspace("demo")
        email, password = console_sign_in(server.running, workspace.workspace_id)
        assert email == DEMO_ADMIN and len(password) >= 20
        with server.client() as client:
            assert sign_in(client, email=email, password=password).status_code == 303
            page = client.get("/users")
            assert page.status_code == 200 and DEMO_ADMIN in page.text
    finally:
        server.stop()


def test_demo_keep_serving_prints_a_sign_in_that_signs_in(tmp_path: Path) -> None:
    """The command as a user runs it: `nudgeflow demo --keep-serving` prints the console's URL
    and an email and password; those sign in to that console as an admin; Ctrl-C stops it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
    env |= {"COLUMNS": "250", "PYTHONUNBUFFERED": "1"}  # whole lines, printed as they are made
    demo = subprocess.Popen(
        [NUDGEFLOW, "demo", "--users", "5", "--days", "3", "--keep-serving"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C as a terminal would deliver it: a suite started in the background by a
        # non-interactive shell inherits SIGINT ignored, and so would the demo.
        preexec_fn=_sigint_as_a_terminal_has_it,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout or ()], daemon=True).start()
    printed: list[str] = []
    found = None
    try:
        deadline = time.monotonic() + 180
        while found is None:
            try:
                printed.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail("no console sign-in printed:\n" + "".join(printed[-40:]))
            found = re.search(
                r"The console is at (http://\S+)/ : sign in as (\S+) with the password (\S+)", printed[-1]
            )
            assert demo.poll() is None or not lines.empty(), "".join(printed[-40:])
        url, email, password = found.groups()
        assert email == DEMO_ADMIN and len(password) >= 20
        with httpx.Client(base_url=url, timeout=30) as client:
            assert sign_in(client, email=email, password="not the password").status_code == 401
            assert sign_in(client, email=email, password=password).status_code == 303
            page = client.get("/users")
            assert page.status_code == 200 and DEMO_ADMIN in page.text and "admin" in page.text
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def _sigint_as_a_terminal_has_it() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
