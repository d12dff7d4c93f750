"""Smoke test of the report benchmark at tiny sizes: it builds its history, measures the
reports, keeps a --db database and measures it again without building, and refuses a
database built for other sizes. Nothing about speed (the machine is shared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "report.py"),
            "--no-record",
            "--journeys",
            "2",
            "--days",
            "3",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_report_benchmark_builds_keeps_and_reuses_its_database(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    db = tmp_path / "report.db"
    sizes = ("--messages", "400", "--events", "250000", "--repeats", "2")

    done = _run(tmp_path, *sizes, "--db", str(db))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "building 400 messages and 250,000 events" in done.stdout
    for figure in ("report: journey, by", "report: overview", "p90"):
        assert figure in done.stdout, done.stdout[-3000:]

    again = _run(tmp_path, *sizes, "--db", str(db))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming" in again.stdout and "events         built earlier" in again.stdout
    assert "report: overview" in again.stdout

    other = _run(tmp_path, "--messages", "400", "--events", "1000", "--db", str(db))
    assert other.returncode != 0 and "was built for" in other.stderr
    inside = _run(tmp_path, *sizes, "--db", str(ROOT / "report.db"))
    assert inside.returncode != 0 and "inside the repository" in inside.stderr
    assert (results.read_text() if results.exists() else None) == before
