"""The few distribution functions measure needs, in the standard library only.

scipy is not a runtime dependency of Nudgeflow, and these are all the statistics here ask of
it: normal quantiles and tails (the standard library has them), Student's t (Welch intervals)
and chi-square tails (the sample-ratio check). The t and chi-square functions go through the
regularized incomplete beta and gamma functions, evaluated as in Numerical Recipes (3rd ed.,
§6.2 and §6.4: series and Lentz continued fractions); tests/measure compares them with scipy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from nudgeflow.measure.errors import MeasureError

_NORMAL = NormalDist()
_EPS = 1e-16
_TINY = 1e-300
_MAX_ITERATIONS = 100_000
# From this many degrees of freedom on, Student's t quantile is the Cornish-Fisher expansion
# (four terms: its error is far below 1e-12 there); below, the incomplete beta is inverted.
_T_EXPANSION_FROM = 1000.0


def normal_quantile(p: float) -> float:
    """The standard normal distribution's p-quantile (0 < p < 1)."""
    return _NORMAL.inv_cdf(p)


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z; erfc keeps the far tail's precision."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITERATIONS):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise MeasureError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def _stirling_tail(x: float) -> float:
    # log Gamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2]: Stirling's series, exact to double
    # precision for x >= 100 (the next term is below 1e-17 there).
    x2 = x * x
    return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * x2)) / x2) / x2) / x


def _log_gamma_ratio(a: float, b: float) -> float:
    """log Gamma(a + b) - log Gamma(a), without the cancellation of two huge lgammas when a is large."""
    if a < 100.0:
        return math.lgamma(a + b) - math.lgamma(a)
    # (a + b - 1/2) log(a + b) - (a - 1/2) log a - b, rearranged to keep its digits.
    return (a - 0.5) * math.log1p(b / a) + b * math.log(a + b) - b + _stirling_tail(a + b) - _stirling_tail(a)


def regularized_beta(a: float, b: float, x: float, complement: float | None = None) -> float:
    """I_x(a, b), the regularized incomplete beta function (a, b > 0, 0 <= x <= 1).

    `complement` is 1 - x when the caller knows it more exactly than 1 - x computes it (x near
    1, as for Student's t with many degrees of freedom).
    """
    y = 1.0 - x if complement is None else complement
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_x = math.log1p(-y) if x > 0.5 else math.log(x)
    log_y = math.log1p(-x) if y > 0.5 else math.log(y)
    # -log B(a, b), the larger argument's lgammas taken as one ratio (they cancel to few digits).
    big, small = max(a, b), min(a, b)
    log_beta = _log_gamma_ratio(big, small) - math.lgamma(small)
    front = math.exp(log_beta + a * log_x + b * log_y)
    # The fraction converges fast on this side of the mean; the other side goes by symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df > 0, not necessarily whole)."""
    if math.isinf(df):
        return normal_two_sided_p(t)
    t2 = t * t
    return regularized_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def _t_cornish_fisher(z: float, df: float) -> float:
    # Abramowitz & Stegun 26.7.5: the t quantile as a series in 1/df around the normal one.
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def student_t_quantile(p: float, df: float) -> float:
    """Student's t p-quantile with df degrees of freedom (0 < p < 1, df > 0)."""
    if not 0.0 < p < 1.0:
        raise MeasureError(f"a quantile needs 0 < p < 1, not {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    if math.isinf(df):
        return normal_quantile(p)
    if df >= _T_EXPANSION_FROM:
        return _t_cornish_fisher(normal_quantile(p), df)
    tail = 2.0 * (1.0 - p)  # the two-sided tail the quantile leaves out
    # P(|T| >= t) falls as t grows: bracket it, then bisect to the last bit.
    low, high = 0.0, max(1.0, normal_quantile(p))
    while student_t_two_sided_p(high, df) > tail:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if student_t_two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def _gamma_series(a: float, x: float) -> float:
    # P(a, x) by its series; converges fast for x < a + 1.
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(_MAX_ITERATIONS):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    raise MeasureError(f"incomplete gamma series did not converge (a={a}, x={x})")


def _gamma_continued_fraction(a: float, x: float) -> float:
    # Q(a, x) by its continued fraction (modified Lentz); converges fast for x >= a + 1.
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    raise MeasureError(f"incomplete gamma fraction did not converge (a={a}, x={x})")


def chi_square_survival(x: float, df: int) -> float:
    """P(X >= x) for a chi-square X with df degrees of freedom (df >= 1)."""
    if df < 1:
        raise MeasureError(f"a chi-square needs at least one degree of freedom, not {df}")
    if x <= 0.0:
        return 1.0
    a, half = df / 2.0, x / 2.0
    if half < a + 1.0:
        return 1.0 - _gamma_series(a, half)
    return _gamma_continued_fraction(a, half)
