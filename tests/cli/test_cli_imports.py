"""What the `nudgeflow` command loads before it runs any command (cli/common.py, "Start-up cost").

Every command, `--help` included, imports all of cli/ and builds every command's parameters
from its signature. Checked by the modules loaded, not by timing: deterministic on any machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Third-party packages that cost tens to hundreds of milliseconds to import, each needed only
# by the commands that open a database, render, deliver, serve or parse journeys.
HEAVY = {
    "sqlalchemy",
    "alembic",
    "liquid",
    "fastapi",
    "starlette",
    "mrml",
    "httpx",
    "aiosmtplib",
    "uvicorn",
    "pydantic",
    "yaml",
    "cryptography",
}
# The parts of nudgeflow a command's body loads (store/ is SQLAlchemy; content/ Liquid and
# MJML; the rest build on those): none of them at start.
BODY_ONLY = {"store", "content", "channels", "ingest", "runtime", "web", "demo"}

_LOADED = """
import json, sys
import typer.main
import nudgeflow.cli
typer.main.get_command(nudgeflow.cli.app)  # resolves every command's signature, as a run does
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_at_start() -> list[str]:
    done = subprocess.run([sys.executable, "-c", _LOADED], capture_output=True, text=True, timeout=60, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_no_heavy_dependency_is_loaded_before_a_command_runs() -> None:
    loaded = _loaded_at_start()
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
    assert [m for m in loaded if m.startswith("nudgeflow.") and m.split(".")[1] in BODY_ONLY] == []
