"""Smoke test of the email benchmark: every phase runs end to end at a tiny size.

It asserts nothing about speed (the machine running the tests is shared); only that the
command works, prints its figures, and writes nothing with --no-record.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_email_benchmark_runs_every_phase_quickly(tmp_path: Path) -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "email.py"),
            "--quick",
            "--no-record",
            "--messages",
            "40",
            "--stage-messages",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for figure in (
        "B: bare aiosmtplib",
        "A in the serving process",
        "A with DKIM",
        "A before",
        "p50",
        "p99",
        "render (Liquid",
        "text part from each rendered HTML",
        "DKIM sign",
    ):
        assert figure in out, f"{figure!r} missing from the output:\n{out[-3000:]}"
    # The build-process phases are the default on 2 or more cores (auto), with issue 18's target.
    assert "A by default (auto: 1 build process" in out or "A with 1 build process" in out
    assert "target >= 0.8" in out or "A with 1 build process" in out
    assert (results.read_text() if results.exists() else None) == before
