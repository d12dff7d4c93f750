#!/usr/bin/env python
"""Simulation benchmark: how fast `nudgeflow simulate` replays a large event file.

    .venv/bin/python benchmarks/simulate.py [--users 42000] [--days 14] [--quick] [--events FILE] [--shuffled] [--write]

One run generates Segment traffic with the demo's generator (25 to 30 messages per person,
so 42,000 people give a million events or more; or replays FILE), then replays the same file
through `nudgeflow.runtime.replay.replay_file`, each time in a fresh process:

  null     a core that decides nothing: the simulator's own cost (read and check every
           line, sort by time, read again, resolve identities, build the core's inputs);
  timers   a stand-in core that re-arms one timer per person on every event (as
           inactivity triggers do) and plans a message when one fires: the simulator's
           cost with its timer heap and message list busy;
  shuffled (with --shuffled) the null core on the same lines in random order: the
           sorted second pass, reading lines by offset;
  real     the production core with every journey in examples/journeys live, timers
           fired up to 30 days after the last event: what a user waits for.

For each: events/s on the wall clock and on the process's CPU time (the machine is
shared, so CPU time is the steadier figure), and peak resident memory. --write appends
the results to benchmarks/RESULTS-simulate.md.
"""

from __future__ import annotations

# Python puts this script's directory first on sys.path, where benchmarks/email.py would
# shadow the standard library's `email` package: drop it before anything imports that.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _HERE]

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS-simulate.md"
HORIZON_MS = 30 * 86_400_000


def _cores() -> dict[str, Any]:
    from nudgeflow.core.effects import Effect, ScheduleTimer, SendMessage
    from nudgeflow.core.inputs import EventInput, TimerInput
    from nudgeflow.core.state import ProfileState

    class Null:
        def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
            return []

        def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
            return []

    class Timers:
        def on_event(self, state: ProfileState, event: EventInput, now_ms: int) -> list[Effect]:
            return [ScheduleTimer("idle", now_ms + 3_600_000, {"kind": "idle"})]

        def on_timer(self, state: ProfileState, timer: TimerInput, now_ms: int) -> list[Effect]:
            return [SendMessage(f"{state.profile_id}:{now_ms}", "run", "bench", 1, "nudge", "push", "t", None, True, now_ms)]

    return {"null": Null(), "timers": Timers(), "shuffled": Null(), "real": None}


def phase(name: str, path: str) -> dict[str, Any]:
    """One measurement, in this process (the parent runs each in a fresh one)."""
    from rich.console import Console

    from nudgeflow.runtime.replay import load_journeys, replay_file

    journeys = load_journeys([ROOT / "examples" / "journeys"])
    engine = _cores()[name]
    cpu, wall = time.process_time(), time.perf_counter()
    report = replay_file(journeys, path, horizon_ms=HORIZON_MS, console=Console(stderr=True, quiet=True), engine=engine)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "phase": name,
        "events": report.sim.events,
        "bad_lines": len(report.bad_lines),
        "messages": len(report.sim.messages),
        "timers_fired": report.sim.timers_fired,
        "profiles": len(report.sim.states),
        "wall_s": wall,
        "cpu_s": cpu,
        "read_s": report.read_seconds,
        "replay_s": report.replay_seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    # VmHWM is this process's own high-water mark; ru_maxrss would carry the parent's
    # across fork and exec.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, users: int, days: float) -> int:
    import orjson

    from nudgeflow.demo.traffic import generate_traffic

    count = 0
    with path.open("wb") as out:
        for message in generate_traffic(users=users, seed=11, days=days):
            out.write(orjson.dumps(message) + b"\n")
            count += 1
    return count


def shuffle(source: Path, target: Path) -> None:
    lines = source.read_bytes().splitlines(keepends=True)
    random.Random(5).shuffle(lines)
    target.write_bytes(b"".join(lines))


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; RAM {mem:.1f} GiB",
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"load average when the run started (1, 5, 15 min): {load}",
        f"commit: {commit or 'unknown'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=None, help="people in the generated traffic (default 42,000; 1,500 with --quick)")
    parser.add_argument("--days", type=float, default=None, help="days it covers (default 14; 7 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small traffic file, to compare two versions of the code")
    parser.add_argument("--events", help="replay this file instead of generating one")
    parser.add_argument("--shuffled", action="store_true", help="also replay the lines in random order")
    parser.add_argument("--write", action="store_true", help=f"append the results to {RESULTS.name}")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.events)))
        return
    if args.users is None:
        args.users = 1_500 if args.quick else 42_000
    if args.days is None:
        args.days = 7.0 if args.quick else 14.0

    started = datetime.now(timezone.utc)
    about = machine()
    with tempfile.TemporaryDirectory(prefix="nudgeflow-bench-") as tmp:
        if args.events:
            path = Path(args.events)
            size = sum(1 for _ in path.open("rb"))
            origin = f"`{path.name}` ({size:,} lines)"
        else:
            path = Path(tmp) / "events.jsonl"
            print(f"generating traffic for {args.users:,} people over {args.days:g} days…", file=sys.stderr)
            size = generate(path, args.users, args.days)
            origin = f"demo traffic: {size:,} events for {args.users:,} people over {args.days:g} days"
        mb = path.stat().st_size / 2**20
        phases = ["null", "timers"] + (["shuffled"] if args.shuffled else []) + ["real"]
        results = []
        for name in phases:
            target = path
            if name == "shuffled":
                target = Path(tmp) / "shuffled.jsonl"
                shuffle(path, target)
            print(f"{name}…", file=sys.stderr)
            done = subprocess.run([sys.executable, __file__, "--phase", name, "--events", str(target)],
                                  capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"  {result['events'] / result['wall_s']:,.0f} events/s wall, "
                  f"{result['events'] / result['cpu_s']:,.0f} events/s CPU, {result['wall_s']:.1f} s, "
                  f"peak {result['peak_rss_mb']:,.0f} MB", file=sys.stderr)

    lines = [
        f"## Run of {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`python benchmarks/simulate.py{' --shuffled' if args.shuffled else ''}`: {origin}, {mb:,.0f} MB of JSON Lines; "
        "each phase in a fresh process; horizon 30 days after the last event.",
        "",
        "| phase | events | wall | events/s (wall) | events/s (CPU) | read pass | replay pass | planned messages | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['phase']} | {r['events']:,} | {r['wall_s']:.1f} s | {r['events'] / r['wall_s']:,.0f} | "
            f"{r['events'] / r['cpu_s']:,.0f} | {r['read_s']:.1f} s | {r['replay_s']:.1f} s | {r['messages']:,} | "
            f"{r['peak_rss_mb']:,.0f} MB |"
        )
    if os.environ.get("BENCHMARKS_ROWS_FILE"):
        # For `python -m benchmarks`: the simulator has no target; its rows are there to compare runs.
        sys.path.insert(0, str(ROOT))
        from benchmarks.ingest import keep_rows

        keep_rows("Simulation benchmark", [
            (f"simulate, {r['phase']} phase: events/s on CPU time", f"{r['events'] / r['cpu_s']:,.0f}", "no target", "")
            for r in results
        ])
    ended = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", "Machine:", ""] + [f"- {line}" for line in about] + [f"- load average when it ended: {ended}", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        if not RESULTS.exists():
            RESULTS.write_text(
                "# Simulation benchmark results\n\n"
                "Written by `benchmarks/simulate.py` (its docstring says what each phase measures). "
                "The machine is shared: CPU-time rates are the steadier figures.\n\n"
            )
        with RESULTS.open("a") as out:
            out.write("\n" + text)


if __name__ == "__main__":
    main()
