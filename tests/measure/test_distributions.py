"""measure/distributions.py against scipy: Student's t quantiles and tails, chi-square tails."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nudgeflow.measure.distributions import (
    chi_square_survival,
    normal_quantile,
    normal_two_sided_p,
    regularized_beta,
    student_t_quantile,
    student_t_two_sided_p,
)

DEGREES = [0.7, 1, 1.5, 2, 3, 4.2, 7, 12.5, 30, 99.9, 500, 999, 1000, 1001, 4321.5, 1e5, 1e7, 1e9]
PROBABILITIES = [0.5, 0.6, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9999, 0.025, 0.001]


@pytest.mark.parametrize("df", DEGREES)
def test_t_quantile_matches_scipy(df: float) -> None:
    for p in PROBABILITIES:
        ours, theirs = student_t_quantile(p, df), float(stats.t.ppf(p, df))
        assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9), (p, df, ours, theirs)


@pytest.mark.parametrize("df", DEGREES)
def test_t_two_sided_p_matches_scipy(df: float) -> None:
    for t in [0.0, 0.01, 0.5, 1.0, 1.96, 2.5, -3.0, 6.0, 15.0, 40.0]:
        ours, theirs = student_t_two_sided_p(t, df), float(2 * stats.t.sf(abs(t), df))
        assert math.isclose(ours, theirs, rel_tol=1e-7, abs_tol=1e-12), (t, df, ours, theirs)


def test_chi_square_survival_matches_scipy() -> None:
    for df in [1, 2, 3, 4, 7, 10, 31]:
        for x in [0.0, 1e-6, 0.1, 0.5, 1, 2, 5, 10.83, 16.27, 30, 80, 300]:
            ours, theirs = chi_square_survival(x, df), float(stats.chi2.sf(x, df))
            assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-15), (x, df, ours, theirs)


def test_beta_and_normal_helpers() -> None:
    assert regularized_beta(2.0, 3.0, 0.0) == 0.0
    assert regularized_beta(2.0, 3.0, 1.0) == 1.0
    assert math.isclose(regularized_beta(2.0, 3.0, 0.4), float(stats.beta.cdf(0.4, 2.0, 3.0)), rel_tol=1e-12)
    assert math.isclose(normal_quantile(0.975), float(stats.norm.ppf(0.975)), rel_tol=1e-14)
    assert math.isclose(normal_two_sided_p(-2.5), float(2 * stats.norm.sf(2.5)), rel_tol=1e-12)
    assert student_t_quantile(0.5, 3.0) == 0.0
    assert student_t_quantile(0.975, math.inf) == normal_quantile(0.975)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="0 < p < 1"):
        student_t_quantile(1.0, 5)
    with pytest.raises(ValueError, match="degree of freedom"):
        chi_square_survival(3.0, 0)
