"""What the `start` fixture hands its tests: a `nudgeflow serve` process it launched."""

from __future__ import annotations

import subprocess
from pathlib import Path


class Served:
    def __init__(self, base: str, proc: subprocess.Popen[str], log: Path) -> None:
        self.base, self.proc, self.log = base, proc, log
