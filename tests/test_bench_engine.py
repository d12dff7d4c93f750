"""Smoke test of the engine benchmark: every phase runs end to end at tiny sizes.

It asserts nothing about speed (the machine running the tests is shared); only that the
command works, prints its figures, and writes nothing with --no-record.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_benchmark_runs_every_phase_at_tiny_sizes(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "engine.py"),
            "--quick",
            "--no-record",
            "--profiles",
            "200",
            "--events",
            "2000",
            "--match-events",
            "2000",
            "--triggers",
            "200",
            "--timers",
            "200,500",
            "--latency-profiles",
            "200",
            "--latency-events",
            "3000",
            "--saturation-seconds",
            "1",
            "--latency-seconds",
            "1",
            "--connections",
            "8",
            "--backfill-profiles",
            "200",
            "--backfill-events",
            "2000",
            "--backfill-rate",
            "20",
            "--segment-profiles",
            "200",
            "--segment-events",
            "2000",
            "--segments",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for figure in (
        "L: raw SQLite",
        "engine: event committed",
        "trigger matching",
        "naive scan",
        "timers: firing",
        "resident memory",
        "event accepted -> log channel send",
        "pending timers",
        "backfill: publish over 200 profiles",
        "backfill: ingest HTTP p99",
        "segments: apply one over 200 profiles",
        "segments: engine with 12 live segments",
    ):
        assert figure in out, f"{figure!r} missing from the output:\n{out[-3000:]}"
    assert (results.read_text() if results.exists() else None) == before


def test_the_rollups_phase_measures_the_engine_with_and_without_counting_rollups(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "engine.py"),
            "--quick",
            "--no-record",
            "--phases",
            "rollups",
            "--rollup-sizes",
            "200x2000",
            "--rollup-rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The run stops unless both modes decided the same work and only "on" wrote rollups.
    for figure in ("rollups: engine events/s with / without", "CPU per event with / without", "rollups off"):
        assert figure in done.stdout, f"{figure!r} missing from the output:\n{done.stdout[-3000:]}"
    assert (results.read_text() if results.exists() else None) == before
