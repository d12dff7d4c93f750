"""The cyclic garbage collector, set for a long-running engine (`nudgeflow serve`).

What a busy engine allocates is nearly all freed by reference counting the moment a batch
is done with it: parsed events, loaded state documents, effects, rows. CPython's default
thresholds (700, 10, 10) still start a young collection every 700 net allocations, and a
full one every hundred of those, which walks every object the process holds (SQLAlchemy,
pydantic, the journey catalogs). Measured on the engine benchmark's traffic, that was a
sixth of the engine thread's CPU (benchmarks/RESULTS.md, issue 18 items 5-6).

So, once the process has loaded what it keeps for its lifetime:
- that heap is frozen (moved to the permanent generation, never walked again);
- young collections wait for ENGINE_THRESHOLDS[0] net allocations: a batch of the engine
  stays under it, and a collection still comes within a few MB of garbage in cycles;
- full collections are rarer by as much.

`serve` and benchmarks/engine.py's engine phase both call `settle_heap`, so the benchmark
measures the engine as it runs in production.
"""

from __future__ import annotations

import gc

# (young, middle, old): the collector's gc.set_threshold arguments.
ENGINE_THRESHOLDS = (50_000, 20, 100)


def settle_heap() -> tuple[int, int, int]:
    """Collect once, freeze what is left, and set ENGINE_THRESHOLDS; returns the thresholds
    it replaced (for a caller that measures, then puts them back)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*ENGINE_THRESHOLDS)
    return before
