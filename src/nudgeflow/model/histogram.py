"""Log-spaced latency buckets: how reports keep p50/p90 of a duration in counters alone.

A duration of d milliseconds falls in bucket 0 when d < 1 s, else in bucket
1 + floor(4 · log2(d / 1 s)): four buckets per doubling, so each bucket's upper bound is
2^(1/4) ≈ 1.19 times its lower one. A percentile is read as the geometric middle of the
bucket it falls in, which is within 9.1 % (2^(1/8)) of every duration in that bucket: the precision
docs/measurement.md states. The last bucket holds everything from 2^31 s (68 years) on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PER_DOUBLING = 4
LAST = 1 + 31 * PER_DOUBLING


def bucket_of(duration_ms: int) -> int:
    """The bucket of a duration; a negative one (clocks disagreeing) counts as zero."""
    if duration_ms < 1000:
        return 0
    return min(LAST, 1 + math.floor(PER_DOUBLING * math.log2(duration_ms / 1000.0)))


def bounds_ms(bucket: int) -> tuple[float, float]:
    """[lower, upper) of a bucket in milliseconds."""
    if bucket <= 0:
        return 0.0, 1000.0
    return 1000.0 * 2 ** ((bucket - 1) / PER_DOUBLING), 1000.0 * 2 ** (bucket / PER_DOUBLING)


def middle_ms(bucket: int) -> float:
    """The value a percentile falling in this bucket is reported as."""
    low, high = bounds_ms(bucket)
    return 500.0 if bucket <= 0 else math.sqrt(low * high)


def percentile_ms(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q < 1) of the durations counted in `counts` (bucket -> count):
    the middle of the bucket holding the ceil(q · n)-th smallest; None when there are none."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return middle_ms(bucket)
    return middle_ms(max(counts))
