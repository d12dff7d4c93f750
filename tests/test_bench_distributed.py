"""Smoke test of the distributed benchmark: its smallest path runs end to end on PostgreSQL.

One configuration of phase A (1 API + 1 engine process, a few hundred events to lag 0) and
phase B (/v1/track with 1 API process, then 2), each on a database of its own that the
benchmark creates and drops. It asserts nothing about speed (the machine running the tests
is shared); only that the command works, prints its figures, and writes nothing with
--no-record.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_distributed_benchmark_runs_its_smallest_path(tmp_path: Path, postgres_admin_url: str) -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "distributed.py"),
            "--quick",
            "--no-record",
            "--postgres",
            postgres_admin_url,
            "--configs",
            "1x1",
            "--events",
            "500",
            "--profiles",
            "50",
            "--clients",
            "2",
            "--track-events",
            "3000",
            "--track-seconds",
            "0.5",
            "--warmup",
            "0.2",
            "--connections",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for figure in (
        "A: 1 API + 1 engine: event sent -> decided",
        "CPU per event: API / engine / PostgreSQL",
        "NATS 0 (not in the path)",
        "B: /v1/track at saturation, 1 API process",
        "B: /v1/track at saturation, 2 API processes",
        "x 1 API",
        "paper estimate: 3 nodes",
        "paper estimate: 10 nodes",
        "the paper estimate assumes",
    ):
        assert figure in out, f"{figure!r} missing from the output:\n{out[-3000:]}"
    assert (results.read_text() if results.exists() else None) == before
