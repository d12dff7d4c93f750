"""Headless Chromium for the browser tests (the SDK's, the console's): Debian's chromium,
driven by Playwright. The fixtures (`chromium_path`, `browser`) are in tests/conftest.py.

Playwright's own browser downloads are never used: the tests launch /usr/bin/chromium by
its path. A fresh machine has no chromium, so the session installs Debian's package
(`apt-get update && apt-get install -y chromium`, as root, which is how CI runs) and fails
loudly, naming what to do, if that is not possible. These tests never skip silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import debian

CHROMIUM = Path(os.environ.get("NUDGEFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))


def install_chromium() -> str:
    """Install Debian's chromium; returns what went wrong, or "" when it is there."""
    return debian.install("chromium", CHROMIUM)


def chromium_or_fail() -> str:
    """The path of Debian's chromium, installed if need be; else the test fails, saying why."""
    if not CHROMIUM.exists():
        problem = install_chromium()
        if problem or not CHROMIUM.exists():
            pytest.fail(
                f"The browser tests need Debian's chromium at {CHROMIUM}, and it could not be installed: "
                f"{problem} (or set NUDGEFLOW_TEST_CHROMIUM to a Chromium's path)",
                pytrace=False,
            )
    return str(CHROMIUM)
