"""The service worker's and the SDK's JavaScript tests (tests/js/*.test.mjs) run under Node's
own test runner; this runs them from pytest, so the one pytest command covers them too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_javascript_tests_pass_under_node() -> None:
    node = shutil.which("node") or "/usr/bin/node"
    assert Path(node).exists(), "Node.js (20 or later) is needed for tests/js: apt-get install -y nodejs"
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    assert len(files) >= 2, files
    done = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-4000:]
    assert "# fail 0" in done.stdout, done.stdout[-4000:]
