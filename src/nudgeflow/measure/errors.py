"""measure's one error class: numbers that cannot be measured (impossible counts, bad settings)."""

from __future__ import annotations

from nudgeflow.errors import NudgeflowError


class MeasureError(NudgeflowError, ValueError):
    """Counts or settings that no statistic can take: more conversions than people, a negative
    count, a confidence outside (0, 1), arms without distinct names. Also a ValueError."""
