"""Every benchmark in one command, and one table of what each measured against its target.

    .venv/bin/python -m benchmarks --quick [--only ingest,engine] [--all] [--save FILE] [--against FILE]

Runs each benchmark's quick mode (`benchmarks/<name>.py --quick --no-record`) in its own
process, one after another so that none measures beside another, and prints one table: each
figure that has a target, its ratio and target, and whether it was met or missed (`--all`
adds the baselines and breakdowns each benchmark prints beside them). Nothing is
written to RESULTS.md: a quick run uses small sizes, and its figures are for comparing two
versions of the code on one machine, not for the record.

- `--save FILE` keeps the table as JSON; `--against FILE` prints a saved run's figures beside
  this run's, for measuring a change before and after (run each side in turn, alternating,
  in the same minutes: this machine is shared, and only figures taken close together compare).
- Each benchmark's own output goes to a log file (named at the end) while a line shows which
  one is running and for how long.
- A benchmark that fails or overruns its time is a row saying so; the others still run.

The benchmarks hand their tables over through the file BENCHMARKS_ROWS_FILE names
(benchmarks/ingest.py, `keep_rows`), so this reads what they printed, not their terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROWS_FILE_ENV = "BENCHMARKS_ROWS_FILE"  # the same name as benchmarks/ingest.py's

# In the order they run; the seconds are each quick mode's limit on a busy 2-core machine
# (a quick run normally takes a half or less of it). Simulate has no target of its own:
# its rows are there to compare runs.
BENCHMARKS: dict[str, tuple[list[str], float]] = {
    "ingest": (["--quick", "--no-record"], 150.0),
    "engine": (["--quick", "--no-record"], 240.0),
    "email": (["--quick", "--no-record"], 150.0),
    "push": (["--quick", "--no-record"], 120.0),
    "report": (["--quick", "--no-record"], 150.0),
    "console": (["--quick", "--no-record"], 150.0),
    "distributed": (["--quick", "--no-record"], 240.0),
    "simulate": (["--quick"], 120.0),
}

Row = tuple[str, str, str, str]


@dataclass
class Outcome:
    """What one benchmark gave: its tables' rows, or why it gave none."""

    name: str
    seconds: float
    rows: list[Row] = field(default_factory=list)
    problem: str = ""


def run_one(name: str, args: list[str], limit_s: float, log_dir: Path, console: Console) -> Outcome:
    """Run benchmarks/<name>.py with `args`, its output to a log; its rows from the rows file."""
    rows_file = log_dir / f"{name}.rows.jsonl"
    log = log_dir / f"{name}.log"
    env = {**os.environ, ROWS_FILE_ENV: str(rows_file)}
    started = time.monotonic()
    with log.open("wb") as out, console.status(f"{name}…") as status:
        child = subprocess.Popen([sys.executable, str(HERE / f"{name}.py"), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        problem = ""
        while child.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > limit_s:
                child.kill()
                child.wait()
                problem = f"stopped after {limit_s:.0f} s (its limit)"
                break
            status.update(f"{name}: {elapsed:.0f} s (limit {limit_s:.0f} s)")
            time.sleep(0.5)
        if not problem and child.returncode != 0:
            problem = f"exited {child.returncode}: see {log}"
    seconds = time.monotonic() - started
    rows: list[Row] = []
    if rows_file.exists():
        for line in rows_file.read_text(encoding="utf-8").splitlines():
            for row in json.loads(line)["rows"]:
                rows.append((str(row[0]), str(row[1]), str(row[2]), str(row[3])))
    if not rows and not problem:
        problem = f"printed no table: see {log}"
    return Outcome(name, seconds, rows, problem)


def saved(path: Path) -> dict[tuple[str, str], str]:
    """A saved run's figures by (benchmark, measure)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {(o["name"], row[0]): row[1] for o in data["outcomes"] for row in o["rows"]}


def table(outcomes: list[Outcome], before: dict[tuple[str, str], str] | None, every_row: bool) -> Table:
    result = Table(title="Nudgeflow benchmarks, quick mode", title_justify="left")
    result.add_column("benchmark")
    result.add_column("measure")
    if before is not None:
        result.add_column("before", justify="right")
    result.add_column("figure", justify="right")
    result.add_column("ratio / target")
    result.add_column("")
    styles = {"met": "green", "stretch met": "bold green", "missed": "red"}
    for o in outcomes:
        if o.problem:
            cells = [o.name, o.problem, *([""] if before is not None else []), "", "", "[red]failed[/]"]
            result.add_row(*cells)
        for measure, figure, ratio, verdict in o.rows:
            if not verdict and not every_row:
                continue  # a figure without a target (a baseline, a breakdown): in the log, or with --all
            style = styles.get(verdict, "")
            shown = f"[{style}]{verdict}[/]" if style else verdict
            old = [before.get((o.name, measure), "—")] if before is not None else []
            result.add_row(o.name, measure, *old, figure, ratio, shown)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick mode (the only mode this command runs)")
    parser.add_argument("--only", help=f"a comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--all", action="store_true", help="also the rows without a target (baselines, breakdowns)")
    parser.add_argument("--save", type=Path, help="keep this run's table as JSON in FILE")
    parser.add_argument("--against", type=Path, help="print a run saved with --save beside this one")
    args = parser.parse_args()
    # Piped to a file or CI's log, rich would wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if not args.quick:
        # The full modes take from minutes to an hour each and record into RESULTS.md: run
        # them one at a time, as benchmarks/RESULTS.md says.
        parser.error("only --quick is supported: run a benchmark's full mode as benchmarks/<name>.py")
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    before = saved(args.against) if args.against else None
    log_dir = Path(tempfile.mkdtemp(prefix="nudgeflow-benchmarks-"))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    for n, name in enumerate(names, 1):
        bench_args, limit_s = BENCHMARKS[name]
        outcome = run_one(name, bench_args, limit_s, log_dir, console)
        outcomes.append(outcome)
        state = outcome.problem or f"{sum(1 for r in outcome.rows if r[3] in ('met', 'stretch met'))} met, {sum(1 for r in outcome.rows if r[3] == 'missed')} missed"
        console.print(f"[{n}/{len(names)}] {name}: {outcome.seconds:.0f} s — {state}")
    total = time.monotonic() - started
    console.print(table(outcomes, before, args.all))
    verdicts = [r[3] for o in outcomes for r in o.rows]
    failed = [o.name for o in outcomes if o.problem]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"{sum(v in ('met', 'stretch met') for v in verdicts)} met, {sum(v == 'missed' for v in verdicts)} missed"
        f"{', failed: ' + ', '.join(failed) if failed else ''}; {total:.0f} s in all; load average now {load}; logs in {log_dir}"
    )
    if args.save:
        args.save.write_text(
            json.dumps({"seconds": total, "outcomes": [{"name": o.name, "seconds": o.seconds, "rows": o.rows, "problem": o.problem} for o in outcomes]}, indent=1),
            encoding="utf-8",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
