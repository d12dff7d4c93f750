"""`python -m benchmarks --quick`: every benchmark's quick mode in one command, one table.

Run here on two of the benchmarks (the others have their own smoke tests, and all eight
would take minutes): the table shows their figures with targets and verdicts, a saved run
prints beside a later one, nothing is written to RESULTS.md, and a wrong name is refused.
Nothing is asserted about speed: the machine running the tests is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True, timeout=600, cwd=ROOT
    )


def test_one_table_of_every_benchmark_run_and_a_saved_run_beside_the_next(tmp_path: Path) -> None:
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    saved = tmp_path / "before.json"
    done = runner("--quick", "--only", "push,simulate", "--save", str(saved))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Nudgeflow benchmarks, quick mode" in out
    assert "[1/2] push:" in out and "[2/2] simulate:" in out
    # push has a target: its row and verdict are in the table; simulate's rows have none,
    # so they show only with --all.
    assert "A: nudgeflow WebPushSender" in out
    assert "simulate, real phase" not in out
    data = json.loads(saved.read_text())
    by_name = {o["name"]: o for o in data["outcomes"]}
    assert set(by_name) == {"push", "simulate"}
    assert not by_name["push"]["problem"] and not by_name["simulate"]["problem"]
    assert any(row[3] in ("met", "missed") for row in by_name["push"]["rows"])
    assert {row[0] for row in by_name["simulate"]["rows"]} >= {"simulate, real phase: events/s on CPU time"}

    again = runner("--quick", "--only", "simulate", "--all", "--against", str(saved))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "before" in again.stdout and "simulate, real phase" in again.stdout
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == results


def test_a_wrong_name_or_a_full_run_is_refused_naming_what_is_known() -> None:
    wrong = runner("--quick", "--only", "ingest,warp")
    assert wrong.returncode == 2
    assert "unknown benchmark warp" in wrong.stderr and "distributed" in wrong.stderr
    full = runner()
    assert full.returncode == 2 and "only --quick" in full.stderr
