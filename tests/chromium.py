"""Headless Chromium for the browser tests (the SDK's, the console's): Debian's chromium,
driven by Playwright. The fixtures (`chromium_path`, `browser`) are in tests/conftest.py.

Playwright's own browser downloads are never used: the tests launch /usr/bin/chromium by
its path. A fresh machine has no chromium, so the session installs Debian's package
(`apt-get update && apt-get install -y chromium`, as root, which is how CI runs) and fails
loudly, naming what to do, if that is not possible. These tests never skip silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("NUDGEFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get update && apt-get install -y chromium"


def install_chromium() -> str:
    """Install Debian's chromium; returns what went wrong, or "" when it is there."""
    if os.geteuid() != 0:
        return f"not root, so cannot run `{INSTALL}`; run it as root (or with sudo) once"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine: install Chromium and set NUDGEFLOW_TEST_CHROMIUM to its path"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
    return ""


def chromium_or_fail() -> str:
    """The path of Debian's chromium, installed if need be; else the test fails, saying why."""
    if not CHROMIUM.exists():
        problem = install_chromium()
        if problem or not CHROMIUM.exists():
            pytest.fail(
                f"The browser tests need Debian's chromium at {CHROMIUM}, and it could not be installed: "
                f"{problem or 'the package installed, but the binary is not there'}",
                pytrace=False,
            )
    return str(CHROMIUM)
