"""Fixtures of the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NUDGEFLOW_")}
    out["NUDGEFLOW_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    out["COLUMNS"] = "200"  # rich wraps at the terminal width; keep lines whole for the asserts
    return out
