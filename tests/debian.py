"""Debian packages the tests need beside the Python ones (Chromium for the browser tests,
OpenDKIM's tools for the independent DKIM verifier): installed by the test session when
missing, as CI runs (as root, with apt-get), and otherwise a failure naming what to do.
These tests never skip silently.

Two xdist workers may both find a package missing: an exclusive lock file makes the second
wait for the first's install (apt-get itself refuses a second dpkg at once), then find the
package there.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "nudgeflow-tests-apt.lock"


def install(package: str, binary: Path) -> str:
    """Install Debian's `package` unless `binary` exists; returns what went wrong, or ""."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return ""
        command = f"apt-get update && apt-get install -y {package}"
        if os.geteuid() != 0:
            return f"not root, so cannot run `{command}`; run it as root (or with sudo) once"
        if shutil.which("apt-get") is None:
            return f"no apt-get on this machine: install {package} by other means"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
            done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=1200)
            if done.returncode != 0:
                return f"`{' '.join(step)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        return "" if binary.exists() else f"{package} installed, but {binary} is not there"
