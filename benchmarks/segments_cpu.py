"""Thread CPU of the engine with and without live segments (issue 14 item 5), repeatable on a
shared machine.

The segments phase of benchmarks/engine.py measures wall time, which other work on the same
cores adds to. This harness builds the same workload (engine.py's generator, every example
journey live, engine.py's 50 benchmark segments), decides the first half of the events on
both databases unmeasured, then decides the second half ("people known", the target's figure)
batch after batch in this thread, each batch one transaction, and reports
`time.thread_time()` spent in `process_events` and in the whole transaction (with its
commit). Another process's load does not add to a thread's CPU time. Python's cyclic
collector is set the same on both sides (everything built before the measured part frozen,
thresholds 100,000/50/1,000), as the third and fourth passes of RESULTS.md did, so that its
share does not depend on when it happened to run.

    python benchmarks/segments_cpu.py [--profiles 10000] [--events 100000] [--cprofile OUT]

With `--cprofile OUT`, the first round of the measured half is also profiled on each side
(cProfile, OUT.with and OUT.without) for where its time goes; the CPU figures of a profiled
run are not comparable.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this directory comes first on the path, and its email.py would hide the
# standard library's: the benchmarks are imported as a package instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from benchmarks import engine as bench  # noqa: E402

BREAKDOWN = (
    # (module, attribute path): wrapped with an inclusive thread-CPU timer by --breakdown
    ("nudgeflow.core.engine", "Engine.on_event"),
    ("nudgeflow.core.segments", "on_event"),
    ("nudgeflow.core.segments", "catch_up"),
    ("nudgeflow.core.segments", "arm_lapse_timer"),
    ("nudgeflow.core.segments", "start"),
    ("nudgeflow.core.segments", "end_runs"),
    ("nudgeflow.core.triggers", "on_event"),
    ("nudgeflow.runtime.processor", "_read_next"),
    ("nudgeflow.runtime.processor", "_load"),
    ("nudgeflow.core.state", "ProfileState.from_json"),
    ("nudgeflow.core.state", "ProfileState.to_json"),
    ("nudgeflow.store.effects_writer", "EffectsBatch.add"),
    ("nudgeflow.store.effects_writer", "EffectsBatch.add_state"),
    ("nudgeflow.store.effects_writer", "EffectsBatch.write"),
    ("nudgeflow.store.effects_writer", "_append_segment_events"),
    ("nudgeflow.store.segments", "write_changes"),
)
SPENT: dict[str, float] = {}


def instrument() -> None:
    """Wrap BREAKDOWN's functions with inclusive thread-CPU timers (a little slower)."""
    import functools
    import importlib

    for module_name, path in BREAKDOWN:
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        raw = owner.__dict__[name]
        is_class = isinstance(raw, classmethod)
        fn = raw.__func__ if is_class else raw
        label = f"{module_name.rsplit('.', 1)[-1]}.{path}"
        SPENT[label] = 0.0

        def timed(*a: Any, _fn: Any = fn, _label: str = label, **k: Any) -> Any:
            t = time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                SPENT[_label] += time.thread_time() - t

        wrapped = functools.wraps(fn)(timed)
        setattr(owner, name, classmethod(wrapped) if is_class else wrapped)


def decide_all(db: Any, batch: int, measure: bool, profiler: Any = None) -> dict[str, float]:
    """Decide every event of the log, one transaction a batch, in this thread."""
    from nudgeflow.core.clock import SystemClock
    from nudgeflow.runtime.processor import EngineCache, RuntimeStats, process_events

    clock = SystemClock()
    engines = EngineCache()
    stats = RuntimeStats()
    inner = outer = 0.0
    batches = 0
    if measure:
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 1_000)
    wall = time.perf_counter()
    while True:
        t0 = time.thread_time()
        with db.begin() as conn:
            if profiler is not None:
                profiler.enable()
            t1 = time.thread_time()
            done = process_events(conn, engines, clock, batch, stats)
            inner += time.thread_time() - t1
            if profiler is not None:
                profiler.disable()
        outer += time.thread_time() - t0
        if done == 0:
            break
        batches += 1
    wall = time.perf_counter() - wall
    if measure:
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)
    return {
        "process_events": inner,
        "transaction": outer,
        "wall": wall,
        "batches": batches,
        "decided": stats.events_processed,
        "own": stats.own_events_passed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--span", type=float, default=300.0, help="seconds of event time, ending now")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cprofile", help="also profile the measured half into OUT.with / OUT.without")
    parser.add_argument("--breakdown", action="store_true", help="thread CPU of the main parts (inclusive)")
    parser.add_argument("--sql", action="append", help="(experiments) SQL run on the database with segments first")
    parser.add_argument("--rounds", type=int, default=3, help="the steady half decided again from its start")
    parser.add_argument("--only", choices=("with", "without"), help="measure one side only")
    args = parser.parse_args()

    from nudgeflow.store import database

    if args.breakdown:
        instrument()
    directory = Path(tempfile.mkdtemp(prefix="segcpu-"))
    try:
        plain, segmented = directory / "plain.db", directory / "segments.db"
        end_ms = int(time.time() * 1000)
        db, workspace_id, _ = bench.new_database(plain)
        work = bench.generate(
            args.profiles, args.events, args.seed + 5, end_ms - int(args.span * 1000), end_ms, workspace_id, sent=False
        )
        half = len(work.rows) // 2
        first, second = work.rows[:half], work.rows[half:]
        bench.load_events(
            plain, bench.Workload(first, [], work.profiles, work.identities, {}, 0.0), workspace_id, lambda n: None
        )
        db.dispose()
        for suffix in ("", ".key"):
            shutil.copyfile(str(plain) + suffix, str(segmented) + suffix)
        dbs = {
            "without": database.create_db_engine(f"sqlite:///{plain}"),
            "with": database.create_db_engine(f"sqlite:///{segmented}"),
        }
        bench.apply_segments(dbs["with"], workspace_id, bench.bench_segments(args.segments))
        sides = [args.only] if args.only else ["without", "with"]
        for label in sides:
            decide_all(dbs[label], args.batch, measure=False)
            bench._append_rows(plain if label == "without" else segmented, second)
        if args.sql:
            with dbs["with"].begin() as conn:
                for statement in args.sql:
                    conn.exec_driver_sql(statement)
        paths = {"without": plain, "with": segmented}
        for label, d in dbs.items():  # snapshots of the steady half's start, one per side
            with d.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            d.dispose()
            for suffix in ("", ".key"):
                shutil.copyfile(str(paths[label]) + suffix, str(paths[label]) + ".snap" + suffix)
        results: dict[str, list[dict[str, float]]] = {label: [] for label in sides}
        for round_ in range(args.rounds):
            for label in sides:
                path = paths[label]
                for suffix in ("-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
                for suffix in ("", ".key"):
                    shutil.copyfile(str(path) + ".snap" + suffix, str(path) + suffix)
                dbs[label] = database.create_db_engine(f"sqlite:///{path}")
                profiler = None
                if args.cprofile and round_ == 0:
                    import cProfile

                    profiler = cProfile.Profile()
                if args.breakdown:
                    for key in SPENT:
                        SPENT[key] = 0.0
                r = decide_all(dbs[label], args.batch, measure=True, profiler=profiler)
                results[label].append(r)
                print(
                    f"round {round_ + 1} {label:8} process_events {r['process_events']:6.2f} s  transaction "
                    f"{r['transaction']:6.2f} s  wall {r['wall']:6.2f} s  batches {r['batches']:.0f}  decided "
                    f"{r['decided']:.0f} (own {r['own']:.0f})",
                    flush=True,
                )
                if args.breakdown:
                    print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in SPENT.items() if v), flush=True)
                if profiler is not None:
                    profiler.dump_stats(f"{args.cprofile}.{label}")
        with dbs["with"].connect() as conn:
            appended = int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM events WHERE event IN ('Segment Entered', 'Segment Exited')"
                ).scalar_one()
            )
        best = {
            label: {k: min(r[k] for r in rs) for k in ("process_events", "transaction", "wall")}
            for label, rs in results.items()
        }
        for label, b in best.items():
            print(
                f"best of {args.rounds}, {label:8}: process_events {b['process_events']:6.2f} s  "
                f"transaction {b['transaction']:6.2f} s  wall {b['wall']:6.2f} s"
            )
        if len(best) == 2:
            w, wo = best["with"], best["without"]
            print(
                f"ratio (best CPU without / with): process_events {wo['process_events'] / w['process_events']:.3f}  "
                f"transaction {wo['transaction'] / w['transaction']:.3f}  wall {wo['wall'] / w['wall']:.3f}"
            )
        print(f"Segment Entered / Exited in the log (both halves): {appended:,}")
        for d in dbs.values():
            d.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
