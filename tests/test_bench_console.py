"""Smoke test of the console benchmark at tiny sizes: it seeds its workspace, finds the
console's pages (and their heavier forms), signs in, requests each one (every answer a page, not an error), keeps a
--db database and measures it again without seeding. Nothing about speed (the machine is
shared)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = ("--journeys", "3", "--templates", "20", "--profiles", "200", "--messages", "2000", "--days", "5")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "console.py"), "--no-record", "--requests", "2", *SIZES, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_console_benchmark_seeds_measures_every_page_and_reuses_its_database(tmp_path: Path) -> None:
    db = tmp_path / "console.db"
    done = _run(tmp_path, "--db", str(db))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Seeding 3 journeys, 20 templates, 200 profiles, 2,000 messages" in done.stdout
    measured = dict(re.findall(r"^  (/\S*)\s+(\d{3})  median", done.stdout, re.M))
    for page in ("/", "/?days=90", "/journeys/journey-000/report", "/settings/email", "/settings/policies"):
        assert page in measured, done.stdout[-3000:]
    assert "/people?q=user-4242" in measured, done.stdout[-3000:]
    assert any(p.startswith("/people/") and p.endswith("?journey=journey-000") for p in measured), measured
    # The heavier forms: two template versions compared, the segment's why-panel for a person in
    # it and one not, and the seeded person's older timeline pages (by the page's Older link).
    assert "/templates/t000-a?from=1&to=2" in measured, done.stdout[-3000:]
    assert {"/segments/segment-00?person=user-3", "/segments/segment-00?person=user-1"} <= measured.keys()
    older = [p for p in measured if p.startswith("/people/user-1?before=")]
    assert len(older) == 2, measured
    assert all(status in ("200", "303") for status in measured.values()), measured
    again = _run(tmp_path, "--db", str(db))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Reusing the database seeded earlier" in again.stdout
    assert dict(re.findall(r"^  (/\S*)\s+(\d{3})  median", again.stdout, re.M)) == measured
