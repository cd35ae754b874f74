"""The statistics of paired-seed comparisons, against scipy.stats and against counts made by hand."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from segan_lib.experiments.statistics import (
    MONTE_CARLO_PATTERNS, holm_adjust, paired_t_interval, sign_flip_p_value, t_cdf, t_quantile,
)

DFS = [1, 2, 3, 4, 4.5, 7, 12, 30, 200]


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_matches_scipy(df):
    for x in [-1e3, -40.0, -6.1, -2.776, -1.0, -0.3, 0.0, 1e-6, 0.25, 1.5, 3.5, 12.0, 400.0, math.inf, -math.inf]:
        assert t_cdf(x, df) == pytest.approx(stats.t.cdf(x, df), rel=1e-9, abs=1e-12), x


@pytest.mark.parametrize("df", DFS)
def test_t_quantile_matches_scipy_and_inverts_the_cdf(df):
    for p in [1e-9, 1e-4, 0.00625, 0.0125, 0.025, 0.1, 0.3, 0.5, 0.7, 0.975, 0.9875, 0.99375, 1 - 1e-6]:
        x = t_quantile(p, df)
        assert x == pytest.approx(stats.t.ppf(p, df), rel=1e-8, abs=1e-10), p
        assert t_cdf(x, df) == pytest.approx(p, rel=1e-8)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451051977987, rel=1e-12)  # the textbook 2.776


def test_paired_interval_and_p_match_scipy_ttest_rel():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 9):
        arm, base = rng.normal(0.7, 0.05, n), rng.normal(0.7, 0.05, n)
        differences = arm - base
        for confidence in (0.95, 0.975, 0.99):
            result = paired_t_interval(differences.tolist(), confidence)
            reference = stats.ttest_rel(arm, base)
            low, high = stats.t.interval(confidence, n - 1, loc=differences.mean(), scale=stats.sem(differences))
            assert result.t == pytest.approx(reference.statistic, rel=1e-10)
            assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
            assert (result.low, result.high) == pytest.approx((low, high), rel=1e-9)
            assert result.mean == pytest.approx(differences.mean()) and result.n == n
            assert result.sd == pytest.approx(differences.std(ddof=1))
            assert result.excludes_zero == (result.p_value < 1 - confidence)  # one reading, two numbers


def test_zero_spread_gives_a_point_interval():
    tie = paired_t_interval([0.0, 0.0, 0.0])
    assert (tie.low, tie.high, tie.p_value, tie.t) == (0.0, 0.0, 1.0, 0.0) and not tie.excludes_zero
    shift = paired_t_interval([-1.0, -1.0, -1.0])  # every seed moved by exactly -1
    assert (shift.low, shift.high, shift.p_value, shift.t) == (-1.0, -1.0, 0.0, -math.inf) and shift.excludes_zero


def test_sign_flip_p_is_the_hand_count():
    # n = 3, d = (1, 2, 3): the 8 sums +-1 +-2 +-3 are +-6, +-4, +-2, 0, 0; |sum| >= 6 twice -> 2/8
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_p_value([1.0, 2.0, -3.0]) == 1.0  # observed sum 0: every pattern reaches it
    # n = 5, d = (1..5): only all-plus and all-minus reach |15| -> 2/32, the smallest p five seeds can give
    assert sign_flip_p_value([1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0625
    # n = 5, d = (1, 2, 3, 4, -5), observed |sum| = 5. Flipping d_5 relabels the patterns, so the signed
    # sums are those of (1..5): 15 - 2S, S the sum of the flipped subset of {1..5}. |15 - 2S| >= 5 when
    # S <= 5 (subsets {}, 1, 2, 3, 12, 4, 13, 5, 14, 23: 10) or S >= 10 (their complements: 10) -> 20/32
    assert sign_flip_p_value([1.0, 2.0, 3.0, 4.0, -5.0]) == 20 / 32
    assert sign_flip_p_value([0.0, 0.0]) == 1.0 and sign_flip_p_value([0.3]) == 1.0


def test_sign_flip_ties_survive_rounding():
    # 0.1 + 0.2 + 0.3 - 0.6 is 0 on paper but not in floats; on paper every one of the 16 patterns
    # reaches |sum| >= 0, so p = 1, however the float sums round.
    assert sign_flip_p_value([0.1, 0.2, 0.3, -0.6]) == 1.0
    d = [0.1, 0.2, 0.3]  # sums +-0.6, +-0.4, +-0.2, 0, 0: only the two +-0.6 reach the observed 0.6
    assert sign_flip_p_value(d) == 0.25


def test_sign_flip_monte_carlo_above_16_seeds_is_seeded_and_close_to_the_exact_count():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 17)
    bits = (np.arange(2**17)[:, None] >> np.arange(17)) & 1
    exact = np.count_nonzero(np.abs((1 - 2 * bits) @ d) >= abs(d.sum()) - 1e-10) / 2**17
    estimate = sign_flip_p_value(d.tolist())
    assert estimate == sign_flip_p_value(d.tolist(), seed=0) != sign_flip_p_value(d.tolist(), seed=1)
    assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / MONTE_CARLO_PATTERNS) + 1e-4
    assert sign_flip_p_value([1.0] * 20) <= 3 / (MONTE_CARLO_PATTERNS + 1)  # (count + 1) / (B + 1), never 0


def test_holm_adjusted_p_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.03 (x3 = 0.09), 0.04 (x2 = 0.08 -> running max 0.09), 0.2 (x1 = 0.2)
    assert holm_adjust([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    # m = 2, sorted: 0.02 (x2 = 0.04), 0.6 (x1 = 0.6); then 0.3, 0.35 (x2 = 0.6, x1 = 0.35 -> running max 0.6)
    assert holm_adjust([0.6, 0.02]) == pytest.approx([0.6, 0.04])
    assert holm_adjust([0.35, 0.3]) == pytest.approx([0.6, 0.6])
    assert holm_adjust([0.7, 0.9]) == pytest.approx([1.0, 1.0])  # min(1, 2 * 0.7) caps at one
    assert holm_adjust([0.3]) == [0.3]


@pytest.mark.parametrize("call, argument", [
    (lambda: t_cdf(math.nan, 3), "x"),
    (lambda: t_cdf(1.0, 0), "df"),
    (lambda: t_cdf(1.0, math.inf), "df"),
    (lambda: t_quantile(0.0, 3), "p"),
    (lambda: t_quantile(1.0, 3), "p"),
    (lambda: t_quantile(math.nan, 3), "p"),
    (lambda: t_quantile(0.5, -1), "df"),
    (lambda: paired_t_interval([0.1]), "differences"),
    (lambda: paired_t_interval([0.1, math.nan]), r"differences\[1\]"),
    (lambda: paired_t_interval([0.1, math.inf]), "differences"),
    (lambda: paired_t_interval([0.1, 0.2], confidence=1.0), "confidence"),
    (lambda: paired_t_interval([0.1, 0.2], confidence=0.0), "confidence"),
    (lambda: paired_t_interval("0.1, 0.2"), "differences"),
    (lambda: sign_flip_p_value([]), "differences"),
    (lambda: sign_flip_p_value([0.1, math.nan]), "differences"),
    (lambda: sign_flip_p_value([0.1], seed=0.5), "seed"),
    (lambda: holm_adjust([]), "p_values"),
    (lambda: holm_adjust([0.2, 1.5]), "p_values"),
    (lambda: holm_adjust([0.2, math.nan]), "p_values"),
])
def test_bad_input_raises_naming_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()
