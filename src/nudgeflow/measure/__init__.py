"""Measurement: the statistics that reports show — holdout lift, experiments, delay experiments —
and the reports themselves.

The statistics are pure functions of counts and sums (no SQL, no I/O, no clock): rollups feed
them, reports show what they return. Each method is named in its docstring and in
docs/measurement.md.

- statistics.py: lift of treated over held out (Newcomb, Katz log, pooled z, Welch).
- experiments.py: arms of a variant or split step (Wilson rates, sample-ratio check, winner
  calls and guardrails that survive daily looks).
- sequential.py: the always-valid confidence sequence behind those calls.
- delays.py: a split whose paths differ only in waits, recognized as a delay experiment.
- distributions.py: normal, Student t and chi-square functions in the standard library.
- errors.py: MeasureError, what they raise on impossible counts or settings.
- report.py: each report metric from the rollups' counters and latency buckets (pure).
- send_time_report.py: the journey report's send-time section, optimized against explore (pure).
"""

from nudgeflow.measure.delays import DelayExperiment, DelayPath, delay_experiment
from nudgeflow.measure.errors import MeasureError
from nudgeflow.measure.experiments import (
    MINIMUM_PER_ARM,
    SRM_THRESHOLD,
    Arm,
    ArmReport,
    Comparison,
    ExperimentReport,
    GuardrailBreach,
    Rate,
    SampleRatio,
    WinnerCall,
    analyze_experiment,
    arms_of,
    call_winner,
    guardrail_breaches,
    rate,
    sample_ratio_check,
)
from nudgeflow.measure.sequential import TUNED_FOR, SequenceBounds, difference_sequence
from nudgeflow.measure.statistics import (
    ConversionLift,
    Estimate,
    RevenueLift,
    RevenueSums,
    conversion_lift,
    newcomb_interval,
    pooled_z_test,
    revenue_lift,
    risk_ratio_interval,
    wilson_interval,
)

__all__ = [
    "MINIMUM_PER_ARM",
    "SRM_THRESHOLD",
    "TUNED_FOR",
    "Arm",
    "ArmReport",
    "Comparison",
    "ConversionLift",
    "DelayExperiment",
    "DelayPath",
    "Estimate",
    "ExperimentReport",
    "GuardrailBreach",
    "MeasureError",
    "Rate",
    "RevenueLift",
    "RevenueSums",
    "SampleRatio",
    "SequenceBounds",
    "WinnerCall",
    "analyze_experiment",
    "arms_of",
    "call_winner",
    "conversion_lift",
    "delay_experiment",
    "difference_sequence",
    "guardrail_breaches",
    "newcomb_interval",
    "pooled_z_test",
    "rate",
    "revenue_lift",
    "risk_ratio_interval",
    "sample_ratio_check",
    "wilson_interval",
]
