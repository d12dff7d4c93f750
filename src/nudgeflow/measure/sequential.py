"""Always-valid confidence sequences for the difference of two proportions.

An ordinary 95 % interval is right 95 % of the time when it is looked at once, at a sample
size fixed in advance. Looked at every day, and acted on the first day it excludes zero, it
calls a winner between two identical arms far more often than 5 % of the time. A confidence
sequence is an interval for every sample size at once: the chance that it *ever* excludes the
true difference, however often it is looked at and whenever one stops, is at most alpha.

The one here is the normal-mixture boundary (Robbins 1970), in the form of the asymptotic
confidence sequences of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central
limit theory and asymptotic confidence sequences", Annals of Statistics (2024), Theorem 2.2
(the Gaussian mixture), applied to the difference of two observed rates with its plug-in
variance — which is the mixture sequential probability ratio test of Johari, Koomen, Pekelis
& Walsh, "Peeking at A/B tests: why it matters, and what to do about it", KDD 2017 (and
Operations Research 70(3), 2022), with the mixing variance proportional to the variance of
one recipient. Its tuning parameter is chosen as in Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of Statistics 49(2)
(2021), and Waudby-Smith et al.: to make the boundary (nearly) narrowest at a planned sample
size. The mixture is symmetric, so one boundary at alpha bounds both sides (Ville's inequality
on a single nonnegative martingale).

Two choices keep it honest at the small counts experiments start with:
- each rate's variance is computed as if it had one more success and one more failure
  ((x + 1) / (n + 2)), so an arm with no conversions yet does not claim zero variance;
- callers hold calls back until each arm has a minimum of recipients (experiments.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nudgeflow.measure.errors import MeasureError

NORMAL_MIXTURE = "always-valid normal-mixture confidence sequence (Waudby-Smith et al. 2024; mSPRT, Johari et al. 2017)"
# The pair of arms compared is expected to reach this many recipients together; the sequence is
# narrowest there. A wrong guess costs some width, never validity.
TUNED_FOR = 10_000


@dataclass(frozen=True)
class SequenceBounds:
    """A confidence sequence's value at the current sample sizes.

    difference: rate1 - rate0, the observed difference (a share: 0.01 is one percentage point).
    low, high: the bounds, within [-1, 1]; the true difference lies between them at every look,
        all at once, with probability at least 1 - alpha.
    alpha: the error allowed to this one sequence (after any split between several).
    """

    difference: float
    low: float
    high: float
    alpha: float


def mixture_precision(alpha: float, tuned_for: float) -> float:
    """rho², the normal mixture's precision per recipient, narrowest at `tuned_for` recipients.

    The closed-form approximation of the minimizer of the half-width at m (Howard et al. 2021;
    Waudby-Smith et al. 2024): rho² = (-2 log alpha + log(-2 log alpha + 1)) / m.
    """
    if not 0.0 < alpha < 1.0:
        raise MeasureError(f"alpha must be between 0 and 1, not {alpha}")
    if tuned_for <= 0:
        raise MeasureError(f"the sample size to tune for must be positive, not {tuned_for}")
    two_log = -2.0 * math.log(alpha)
    return (two_log + math.log(two_log + 1.0)) / tuned_for


def difference_sequence(
    count1: int, total1: int, count0: int, total0: int, *, alpha: float = 0.05, tuned_for: float = TUNED_FOR
) -> SequenceBounds:
    """The always-valid (1 - alpha) confidence sequence for p1 - p0 at the counts given.

    With t = total1 + total0 recipients, V the variance of the observed difference and
    rho² from `mixture_precision`, the half-width is

        sqrt( V × 2 (t rho² + 1) / (t rho²) × log( sqrt(t rho² + 1) / alpha ) ),

    Waudby-Smith et al. (2024)'s boundary with their sigma²/t written as V, the variance of a
    difference of two independent rates, its bounds clipped to [-1, 1], the differences two
    rates can have. Both totals must be positive.
    """
    if total1 <= 0 or total0 <= 0:
        raise MeasureError("a difference of rates needs recipients on both sides")
    if not (0 <= count1 <= total1 and 0 <= count0 <= total0):
        raise MeasureError(f"impossible counts: {count1} of {total1}, {count0} of {total0}")
    rate1, rate0 = count1 / total1, count0 / total0
    smoothed1, smoothed0 = (count1 + 1.0) / (total1 + 2.0), (count0 + 1.0) / (total0 + 2.0)
    variance = smoothed1 * (1.0 - smoothed1) / total1 + smoothed0 * (1.0 - smoothed0) / total0
    scaled = (total1 + total0) * mixture_precision(alpha, tuned_for)
    half = math.sqrt(variance * 2.0 * (scaled + 1.0) / scaled * math.log(math.sqrt(scaled + 1.0) / alpha))
    difference = rate1 - rate0
    # A difference of two rates lies in [-1, 1] whatever the data: beyond it the boundary
    # (wide at small counts) says nothing, so it is clipped there. Clipping moves only bounds
    # that are beyond ±1, so no call changes and the coverage is the same.
    return SequenceBounds(difference, max(-1.0, difference - half), min(1.0, difference + half), alpha)
