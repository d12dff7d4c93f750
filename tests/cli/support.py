"""Running the `nudgeflow` console script as a user runs it: a real process per command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import NUDGEFLOW


def run(
    args: list[str], env: dict[str, str], cwd: Path, *, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGEFLOW, *args],
        env=env,
        cwd=cwd,
        input=stdin.decode() if stdin else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def create_workspace(env: dict[str, str], cwd: Path, name: str = "shop") -> dict[str, str]:
    done = run(["workspace", "create", name, "--json"], env, cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def workspace(env: dict[str, str], cwd: Path) -> str:
    """A new workspace named shop; its id."""
    return str(create_workspace(env, cwd)["workspace_id"])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
