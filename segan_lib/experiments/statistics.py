"""Statistics for paired-seed comparisons: Student's t, the paired t interval, sign flips, Holm.

Pure Python (``math``) plus numpy for the sign-flip patterns; no scipy, so the library runs
without it (the tests check every number here against ``scipy.stats``).

* :func:`t_cdf`, :func:`t_quantile`: Student's t distribution with ``df`` degrees of freedom,
  through the regularised incomplete beta function (a continued fraction, Lentz's method).
* :func:`paired_t_interval`: the mean of paired differences, its t interval at a confidence
  and the two-sided p-value of "mean difference = 0" (the paired t test).
* :func:`sign_flip_p_value`: the two-sided sign-flip permutation p-value of the same hypothesis,
  exact over all ``2**n`` sign patterns for ``n <= 16``.
* :func:`holm_adjust`: Holm's (1979) step-down adjusted p-values over a family of tests.

Every function raises ``ValueError`` naming the argument on bad input (NaN, a confidence
outside (0, 1), too few differences).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_MAX_N = 16  # sign flips: all 2**n patterns up to this n, a seeded Monte Carlo above
MONTE_CARLO_PATTERNS = 2**16
_EPS, _TINY, _MAX_ITERATIONS = 1e-15, 1e-300, 500


def _number(name: str, value: object) -> float:
    """``value`` as a float, or ``ValueError`` naming ``name`` if it is not a number or is NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN")
    return number


def _degrees_of_freedom(df: object) -> float:
    number = _number("df", df)
    if not 0 < number < math.inf:
        raise ValueError(f"df must be a finite number > 0, got {df!r}")
    return number


def _finite_list(name: str, values: object, minimum: int) -> list[float]:
    """``values`` as a list of finite floats with at least ``minimum`` items (``ValueError`` otherwise)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    out = [_number(f"{name}[{i}]", v) for i, v in enumerate(values)]
    if len(out) < minimum:
        raise ValueError(f"{name} must hold at least {minimum} values, got {len(out)}")
    bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} must be finite, got {out[bad[0]]} at index {bad[0]}")
    return out


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes' ``betacf``, modified Lentz)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITERATIONS + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),            # even step
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd step
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    return h  # not reached for the (a, b) of a t distribution; the last value is still accurate


def _beta_regularized(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with ``y = 1 - x`` given separately (no cancellation when x is near 1).

    I_x(a, b) = x^a y^b / (a B(a, b)) * cf(a, b, x), using the symmetry I_x(a, b) = 1 - I_y(b, a)
    where the fraction converges faster.
    """
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def _two_sided_tail(t: float, df: float) -> float:
    """P(|T| >= |t|) = I_{df/(df+t^2)}(df/2, 1/2) for T ~ t(df)."""
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return _beta_regularized(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` > 0 degrees of freedom (real ``df`` allowed).

    F(x) = 1 - I_z(df/2, 1/2) / 2 for x >= 0 and I_z(df/2, 1/2) / 2 for x < 0, with
    z = df / (df + x^2) and I the regularised incomplete beta function.
    """
    x, df = _number("x", x), _degrees_of_freedom(df)
    tail = 0.5 * _two_sided_tail(x, df)
    return tail if x < 0 else 1.0 - tail


def _t_pdf(x: float, df: float) -> float:
    """f(x) = Gamma((df+1)/2) / (sqrt(df pi) Gamma(df/2)) * (1 + x^2/df)^(-(df+1)/2)."""
    log_f = (math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
             - (df + 1.0) / 2.0 * math.log1p(x * x / df))
    return math.exp(log_f)


@functools.lru_cache(maxsize=1024)
def _upper_quantile(tail: float, df: float) -> float:
    """The x >= 0 with P(T > x) = ``tail`` (0 < tail <= 1/2): Newton steps kept inside a bisection bracket."""
    low, high = 0.0, 1.0
    while 0.5 * _two_sided_tail(high, df) > tail:  # widen until the root is bracketed
        low, high = high, 2.0 * high
    x = 0.5 * (low + high)
    for _ in range(200):
        excess = 0.5 * _two_sided_tail(x, df) - tail  # decreasing in x
        if excess > 0:
            low = x
        else:
            high = x
        density = _t_pdf(x, df)
        step = x + excess / density if density > 0 else high  # Newton: d/dx P(T > x) = -f(x)
        x_new = step if low < step < high else 0.5 * (low + high)
        if abs(x_new - x) <= 1e-13 * max(1.0, abs(x)) or high - low <= 1e-15 * max(1.0, high):
            return x_new
        x = x_new
    return x


def t_quantile(p: float, df: float) -> float:
    """The x with P(T <= x) = ``p`` for Student's t with ``df`` > 0 degrees of freedom.

    Solves F(x) = p (F: :func:`t_cdf`) by Newton's method on the upper tail, safeguarded by
    bisection; symmetric: x(p) = -x(1 - p). ``p`` must be in (0, 1).
    """
    p, df = _number("p", p), _degrees_of_freedom(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p == 0.5:
        return 0.0
    return _upper_quantile(1.0 - p, df) if p > 0.5 else -_upper_quantile(p, df)


@dataclass(frozen=True)
class PairedT:
    """The paired t analysis of differences d_1..d_n (see :func:`paired_t_interval`).

    ``n``, ``mean``, ``sd`` (sample standard deviation, n - 1 in the denominator), ``t``
    (mean / (sd / sqrt(n))), ``p_value`` (two-sided), ``confidence``, ``low`` and ``high``.
    """

    n: int
    mean: float
    sd: float
    t: float
    p_value: float
    confidence: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly above or wholly below zero."""
        return self.low > 0.0 or self.high < 0.0


def paired_t_interval(differences: Sequence[float], confidence: float = 0.95) -> PairedT:
    """The paired t interval of the mean difference, and the paired t test's two-sided p.

    With d_1..d_n (n >= 2, finite), mean m, sample sd s and q = t_quantile((1 + c) / 2, n - 1)::

        interval = m -/+ q * s / sqrt(n),   t = m / (s / sqrt(n)),   p = P(|T_{n-1}| >= |t|)

    The interval at confidence c excludes zero exactly when p < 1 - c. Zero spread (s = 0,
    every difference the same): the interval is the point [m, m]; t is 0 and p = 1 when
    m = 0, and t = +/-inf and p = 0 when m != 0 (the limit as s -> 0: every seed moved by the
    same amount, a difference no seed noise explains).
    """
    values = _finite_list("differences", differences, 2)
    confidence = _number("confidence", confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return PairedT(n, mean, 0.0, t, 1.0 if mean == 0.0 else 0.0, confidence, mean, mean)
    standard_error = sd / math.sqrt(n)
    t = mean / standard_error
    half_width = t_quantile((1.0 + confidence) / 2.0, n - 1) * standard_error
    return PairedT(n, mean, sd, t, _two_sided_tail(t, n - 1), confidence, mean - half_width, mean + half_width)


def sign_flip_p_value(differences: Sequence[float], *, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of "the differences are symmetric about 0".

    Statistic: |sum_i d_i|. Under the null each d_i is as likely to be -d_i, so the reference
    set is |sum_i s_i d_i| over sign patterns s in {-1, +1}^n.

    * n <= 16: exact, p = #{s : |sum s_i d_i| >= |sum d_i|} / 2^n over all 2^n patterns (ties
      within 1e-10 of sum |d_i| count as reaching it). The observed pattern and its mirror
      always count, so p >= 2 / 2^n: 0.0625 for n = 5, never below 0.05.
    * n > 16: Monte Carlo over 2^16 patterns drawn by ``numpy.random.default_rng(seed)``,
      p = (count + 1) / (2^16 + 1) (the observed pattern counted once; never 0).

    All differences zero gives p = 1. ``differences`` must be finite, at least one.
    """
    values = np.array(_finite_list("differences", differences, 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    n = values.size
    observed = abs(math.fsum(values))
    tolerance = 1e-10 * float(np.abs(values).sum())
    if n <= EXACT_MAX_N:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2^n, n): every pattern once
        sums = np.abs((1 - 2 * bits) @ values)
        return int(np.count_nonzero(sums >= observed - tolerance)) / 2**n
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(MONTE_CARLO_PATTERNS, n))
    count = int(np.count_nonzero(np.abs(signs @ values) >= observed - tolerance))
    return (count + 1) / (MONTE_CARLO_PATTERNS + 1)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values, in the order given.

    Sort the m p-values ascending, p_(1) <= ... <= p_(m) (ties keep their order); then
    p~_(j) = max_{i <= j} min(1, (m - i + 1) p_(i)). Rejecting where p~ <= alpha is Holm's
    procedure: it holds the family-wise error rate at alpha whatever the dependence.
    """
    values = _finite_list("p_values", p_values, 1)
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"p_values must lie in [0, 1], got {bad[0]!r}")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted
