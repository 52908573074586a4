"""Paired sign-flip randomisation tests, over screenshots (the headline) or over items.

Per item, ``d_i`` is B's mean outcome minus A's (over their repeats; -1 / 0 / +1 at K = 1). The
test's unit is what flips its sign as a whole under H0:

- **Screenshots** (``clusters`` given): each screenshot's sum of ``d_i`` over all its items and
  repeats flips. H0: every screenshot's summed difference is symmetric about 0 -- e.g. no
  difference on any item, or differences that vary from screenshot to screenshot (some gain,
  others lose) with mean 0. Exact when the screenshots' sums are symmetric, asymptotically valid
  otherwise (the sum is then a self-studentised sum of independent screenshots). This is the
  unit the bootstrap interval resamples, so interval and p speak about the same population.
- **Items** (``clusters=None``): each ``d_i`` flips. H0: no difference on any of *these* items
  (conditional on them). At K = 1 this is the exact McNemar test. When the difference varies by
  screenshot it rejects far too often for a statement about screenshots (0.115 at K = 1, 0.200
  at K = 3 at alpha 0.05 in the simulation of issue 24): it is reported as the conventional
  item-level test, never as the headline.

The exact null distribution is a convolution over integer sums (``d`` on the lattice
``1 / denominator``), held in log space so no tail underflows, whatever the number of units
and however lopsided; Monte-Carlo (recorded seed and draws) is the fallback above a cost limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from screenspot_eval.stats.paired import (
    _MAX_CELLS_PER_CHUNK,
    DEFAULT_ALPHA,
    DEFAULT_SEED,
    ResampleUnit,
    cluster_codes,
)

#: Monte-Carlo sign-flip draws when the exact distribution is not used.
DEFAULT_N_DRAWS: int = 10_000
#: The exact null distribution costs about (non-zero units) x (width of the sum's support)
#: log-space additions (~40 ns each); above this the test falls back to Monte-Carlo. Over
#: screenshots, 1581 samples at K = 3 / 3 need at most ~4e6; over items ~3e6 typically.
DEFAULT_MAX_EXACT_WORK: int = 50_000_000
#: Power at which the minimum detectable effect is stated.
DEFAULT_POWER: float = 0.80
#: What :func:`detectable_effect` assumes, for the reports.
MDE_ASSUMPTIONS: str = (
    "normal approximation to the screenshot-level sign-flip test: (z_(1-alpha/2) + z_power) x "
    "the screenshot-clustered standard error of the delta (CR1), i.e. the same screenshots, "
    "samples and repeats, the observed screenshot-to-screenshot variability of the difference "
    "and no multiple-testing adjustment"
)

TestMethod = Literal["auto", "exact", "monte-carlo"]
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class SignFlipTest:
    """Two-sided paired sign-flip randomisation test of mean(d) = 0, and its detection limit.

    ``unit``: ``"cluster"`` (screenshot sums flip) or ``"item"``; ``n`` items in ``n_units``
    units, ``n_nonzero`` of which can flip. ``mdd``: the smallest |mean d| this test could call
    significant given the observed unit magnitudes (conditional on them; equal to
    ``paired.min_detectable_delta`` for items at K = 1), ``None`` when no sign pattern can.
    A p-value below the smallest float (~5e-324) is returned as 0.0.
    """

    p_value: float
    statistic: float  # observed mean of d over items (fraction)
    method: Literal["exact", "monte-carlo"]
    unit: ResampleUnit
    n: int
    n_units: int
    n_nonzero: int
    n_draws: int | None  # Monte-Carlo only
    seed: int | None  # Monte-Carlo only
    alpha: float
    mdd: float | None
    mdd_method: str

    @property
    def description(self) -> str:
        what = (
            f"sign-flip randomisation test over screenshots (each of the {self.n_units} "
            "screenshots' summed difference flips as a whole)"
            if self.unit == "cluster"
            else "paired sign-flip randomisation test over items (conditional on these items)"
        )
        if self.method == "exact":
            return f"{what}, exact null distribution (two-sided)"
        return (
            f"{what}, Monte-Carlo with {self.n_draws} draws, seed {self.seed}, "
            "p = (1 + hits) / (1 + draws) (two-sided)"
        )


def _lattice(d: npt.ArrayLike, denominator: int | None) -> tuple[np.ndarray, int | None]:
    """Integer numerators of d on ``1 / denominator``, or ``(floats, None)`` off any lattice."""
    arr = np.asarray(d, dtype=np.float64).ravel()
    if not np.isfinite(arr).all():
        raise ValueError("differences must be finite")
    scale = 1 if denominator is None else int(denominator)
    if scale < 1:
        raise ValueError("denominator must be a positive integer")
    scaled = arr * scale
    rounded = np.rint(scaled)
    if np.allclose(scaled, rounded, rtol=0.0, atol=1e-9):
        return rounded.astype(np.int64), scale
    if denominator is not None:
        raise ValueError(f"differences are not multiples of 1/{denominator}")
    return arr, None


def _unit_sums(values: np.ndarray, codes: np.ndarray, n_units: int) -> np.ndarray:
    """Sum of the item values per unit; integers stay integers (exact below 2**53)."""
    sums = np.bincount(codes, weights=values, minlength=n_units)
    return np.rint(sums).astype(np.int64) if values.dtype.kind == "i" else sums


def _log_null_pmf(magnitudes: np.ndarray) -> np.ndarray:
    """log P(sum_i s_i m_i = j - sum m) over independent fair signs, j = 0 .. 2 sum m.

    One shift-and-average per term, in log space: a tail of 2**-1581 is -1096 here, where a
    float probability would have underflowed to 0.
    """
    lp = np.zeros(1)
    for v in np.sort(magnitudes):
        v = int(v)
        out = np.full(lp.size + 2 * v, -np.inf)
        out[: lp.size] = lp
        out[2 * v :] = np.logaddexp(out[2 * v :], lp)
        lp = out - _LOG2
    return lp


def _log_tails(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log P(|sum| = t)`` and ``log P(|sum| >= t)`` for t = 0 .. sum m (``-inf`` mass where
    no sign pattern reaches t)."""
    lp = _log_null_pmf(magnitudes)
    mass = lp[(lp.size - 1) // 2 :].copy()  # symmetric: P(|sum| = t) = 2 P(sum = t), t > 0
    mass[1:] += _LOG2
    tails = np.logaddexp.accumulate(mass[::-1])[::-1]
    return mass, np.minimum(tails, 0.0)


def _check(method: str, n_draws: int, alpha: float) -> None:
    if method not in ("auto", "exact", "monte-carlo"):
        raise ValueError(f"method must be 'auto', 'exact' or 'monte-carlo', not {method!r}")
    if n_draws < 1:
        raise ValueError("n_draws must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")


def sign_flip_test(
    d: npt.ArrayLike,
    *,
    denominator: int | None = None,
    clusters: npt.ArrayLike | None = None,
    method: TestMethod = "auto",
    n_draws: int = DEFAULT_N_DRAWS,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
    max_exact_work: int = DEFAULT_MAX_EXACT_WORK,
) -> SignFlipTest:
    """Two-sided paired sign-flip test of the per-item differences ``d`` (fractions).

    ``clusters`` (the screenshot of each item) makes screenshots the units: their sums of
    ``d`` flip (see the module docstring); ``None`` flips items. Statistic ``T = sum d``;
    p = P(|T*| >= |T|) over independent fair signs of the units. Units summing to 0 cannot
    flip and drop out (as concordant pairs do in McNemar). On the lattice ``1 / denominator``
    (integers when ``None``), ``"auto"`` uses the exact distribution while its cost stays under
    ``max_exact_work``, else Monte-Carlo: ``n_draws`` sign vectors from ``seed``,
    p = (1 + #{|T*| >= |T|}) / (1 + n_draws), valid for any number of draws. Off any lattice
    only Monte-Carlo applies.
    """
    _check(method, n_draws, alpha)
    values, scale = _lattice(d, denominator)
    n = int(values.size)
    unit, codes = cluster_codes(clusters, n)
    n_units = int(codes.max()) + 1 if n else 0
    sums = _unit_sums(values, codes, n_units)
    nonzero = sums[sums != 0]
    observed = float(values.sum())
    work = nonzero.size * (2 * float(np.abs(nonzero).sum()) + 1) if scale else math.inf
    if method == "exact" and scale is None:
        raise ValueError("the exact test needs differences on a lattice (pass denominator)")
    exact = method == "exact" or (method == "auto" and work <= max_exact_work)
    per_item = 1.0 / ((scale or 1) * n) if n else math.nan

    if nonzero.size == 0:  # nothing can flip: no evidence of a difference, nothing detectable
        p, mdd = (1.0 if n else math.nan), None
    elif exact:
        mass, tails = _log_tails(np.abs(nonzero))
        p = math.exp(tails[abs(int(sums.sum()))])
        significant = np.flatnonzero((tails < math.log(alpha)) & np.isfinite(mass))
        mdd = float(significant[0]) * per_item if significant.size else None
    else:
        p = _monte_carlo_p(nonzero, observed, scale is None, n_draws, seed)
        z = float(norm.ppf(1.0 - alpha / 2.0))
        mdd = z * math.sqrt(float(np.sum(nonzero.astype(np.float64) ** 2))) * per_item
    return SignFlipTest(
        p_value=min(p, 1.0) if n else math.nan,
        statistic=observed * per_item if n else math.nan,
        method="exact" if exact else "monte-carlo",
        unit=unit,
        n=n,
        n_units=n_units,
        n_nonzero=int(nonzero.size),
        n_draws=None if exact else n_draws,
        seed=None if exact else seed,
        alpha=alpha,
        mdd=mdd,
        mdd_method=_mdd_method(exact, unit),
    )


def _monte_carlo_p(
    weights: np.ndarray, observed: float, floats: bool, n_draws: int, seed: int
) -> float:
    """(1 + #{|sum s w| >= |observed|}) / (1 + draws) over ``n_draws`` seeded sign vectors."""
    rng = np.random.default_rng(seed)
    w = weights.astype(np.float64)
    threshold = abs(observed)
    if floats:  # do not let rounding turn a tie into a miss
        threshold -= 1e-9 * max(1.0, float(np.abs(w).sum()))
    hits = 0
    chunk = max(1, _MAX_CELLS_PER_CHUNK // w.size)
    for start in range(0, n_draws, chunk):
        rows = min(chunk, n_draws - start)
        signs = rng.integers(0, 2, size=(rows, w.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ w) >= threshold))
    return (1 + hits) / (1 + n_draws)


def _mdd_method(exact: bool, unit: ResampleUnit) -> str:
    units = "per-screenshot sums |S_c|" if unit == "cluster" else "|d_i|"
    if exact:
        return (
            f"smallest |mean d| significant under the exact sign-flip distribution given the "
            f"observed {units} (conditional on them; over items at K = 1: the McNemar threshold)"
        )
    return f"normal approximation to the sign-flip distribution: z * sqrt(sum of {units}^2) / n"


# --- power ------------------------------------------------------------------------------------


def cluster_robust_se(d: np.ndarray, codes: np.ndarray) -> float:
    """Standard error of mean(d) with clusters as the independent units (CR1 scaling)."""
    n = d.size
    n_clusters = int(codes.max()) + 1 if n else 0
    if n_clusters < 2:
        return math.nan
    mean = float(d.mean())
    totals = np.bincount(codes, weights=d, minlength=n_clusters)
    sizes = np.bincount(codes, minlength=n_clusters)
    resid = totals - sizes * mean
    return math.sqrt(n_clusters / (n_clusters - 1) * float(np.sum(resid**2))) / n


def detectable_effect(
    se: float, *, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER
) -> float:
    """The true |delta| the screenshot-level test detects with probability ``power``:
    (z_(1-alpha/2) + z_power) x ``se`` (see :data:`MDE_ASSUMPTIONS`); ``nan`` without an se."""
    if not 0.0 < power < 1.0:
        raise ValueError("power must be in (0, 1)")
    return float(norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * se
