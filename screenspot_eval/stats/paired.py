"""Paired comparison of two variants A and B scored on the same items.

Every item has a binary outcome per variant (1 = correct click; a wrong format, a miss or any
other failure = 0), and the denominator is fixed, so the comparison is paired: only the
discordant items (one variant right, the other wrong) carry information about the difference.
Notation follows McNemar's 2x2 table, with ``b`` = A right / B wrong (``a_only``) and
``c`` = A wrong / B right (``b_only``); the difference is always **B minus A**.

All proportions returned here are fractions in [0, 1]; callers multiply by 100 for percentage
points. Undefined quantities (any rate over zero items) are ``nan``, never an exception, so an
empty slice cannot crash a report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import binomtest

#: Recorded default seed of every bootstrap (the merge date of vLLM PR #40411), so reruns match.
DEFAULT_SEED: int = 20260421
DEFAULT_N_RESAMPLES: int = 10_000
DEFAULT_CONFIDENCE: float = 0.95
DEFAULT_ALPHA: float = 0.05
# Resamples are drawn in chunks of at most this many (resample x cluster) indices, so memory
# stays bounded (~32 MB) whatever the number of resamples. Part of the reproducibility recipe:
# the same seed, data, n_resamples and chunk size give the same interval.
_MAX_CELLS_PER_CHUNK: int = 4_000_000

ResampleUnit = Literal["cluster", "item"]


@dataclass(frozen=True)
class PairedTable:
    """McNemar's 2x2 table of paired binary outcomes."""

    n: int
    both_right: int
    a_only: int  # McNemar's b: A right, B wrong
    b_only: int  # McNemar's c: A wrong, B right
    both_wrong: int

    @property
    def discordant(self) -> int:
        """Number of items on which the variants disagree (b + c): the test's sample size."""
        return self.a_only + self.b_only

    @property
    def acc_a(self) -> float:
        return (self.both_right + self.a_only) / self.n if self.n else math.nan

    @property
    def acc_b(self) -> float:
        return (self.both_right + self.b_only) / self.n if self.n else math.nan

    @property
    def delta(self) -> float:
        """Accuracy of B minus accuracy of A, as a fraction: (c - b) / n."""
        return (self.b_only - self.a_only) / self.n if self.n else math.nan


def _as_pair(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two outcome vectors as equal-length 1-D bool arrays."""
    a_arr = np.asarray(a)
    b_arr = np.asarray(b)
    if a_arr.ndim != 1 or b_arr.ndim != 1:
        raise ValueError("outcomes must be 1-D arrays")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired outcomes differ in length: {a_arr.size} vs {b_arr.size}")
    for name, arr in (("a", a_arr), ("b", b_arr)):
        if arr.dtype != bool and arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"outcomes {name} must be boolean or 0/1")
    return a_arr.astype(bool), b_arr.astype(bool)


def paired_table(a: npt.ArrayLike, b: npt.ArrayLike) -> PairedTable:
    """Count the four cells of the paired table of outcomes ``a`` and ``b`` (True = correct)."""
    a_arr, b_arr = _as_pair(a, b)
    return PairedTable(
        n=int(a_arr.size),
        both_right=int(np.count_nonzero(a_arr & b_arr)),
        a_only=int(np.count_nonzero(a_arr & ~b_arr)),
        b_only=int(np.count_nonzero(~a_arr & b_arr)),
        both_wrong=int(np.count_nonzero(~a_arr & ~b_arr)),
    )


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: binomial test of b successes in b + c trials at p = 0.5.

    The exact test (not the chi-squared approximation) because slices can have few discordant
    pairs. With no discordant pairs there is no evidence of a difference: p = 1.
    """
    if a_only < 0 or b_only < 0:
        raise ValueError("discordant counts must be non-negative")
    d = a_only + b_only
    if d == 0:
        return 1.0
    return float(binomtest(int(a_only), int(d), p=0.5, alternative="two-sided").pvalue)


def min_detectable_delta(discordant: int, n: int, alpha: float = DEFAULT_ALPHA) -> float | None:
    """Smallest |delta| (fraction) an exact two-sided McNemar test could call significant.

    Given the observed number of discordant pairs ``d = b + c`` among ``n`` items, the test is a
    binomial test of the split of ``d``. Let ``k >= d / 2`` be the larger side of the split; the
    smallest ``k`` with p-value < ``alpha`` gives the smallest significant difference
    ``|c - b| / n = (2k - d) / n``. It answers "how large would the difference have had to be,
    with this much disagreement between the variants, to reach significance?" -- a threshold
    conditional on ``d``, not a power calculation: a true delta of this size is detected only
    about half the time.

    Returns ``None`` when no split of ``d`` can reach significance (``d < 6`` at alpha = 0.05,
    since even a 6:0 split has p = 2 / 2**6 = 0.031 while 5:0 has p = 0.0625) or when ``n = 0``.
    Binomial p-values are dyadic rationals, so ``p < alpha`` and ``p <= alpha`` agree for
    alpha = 0.05.
    """
    if discordant < 0 or n < 0 or discordant > n:
        raise ValueError("need 0 <= discordant <= n")
    if n == 0 or discordant == 0 or mcnemar_exact(discordant, 0) >= alpha:
        return None
    # For k >= d/2 the two-sided p-value falls monotonically in k: binary search for the first
    # significant k (about log2(d) binomial tests instead of d).
    lo, hi = (discordant + 1) // 2, discordant  # p(lo) may or may not be < alpha; p(hi) is
    while lo < hi:
        mid = (lo + hi) // 2
        if mcnemar_exact(mid, discordant - mid) < alpha:
            hi = mid
        else:
            lo = mid + 1
    return (2 * lo - discordant) / n


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval of delta (B minus A, fractions) and how it was made."""

    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int
    unit: ResampleUnit
    n_clusters: int


class Resampling(TypedDict, total=False):
    """The bootstrap's keyword settings, passed on unchanged to :func:`cluster_bootstrap`,
    whose defaults (``DEFAULT_N_RESAMPLES``, ``DEFAULT_CONFIDENCE``, ``DEFAULT_SEED``) apply."""

    n_resamples: int
    confidence: float
    seed: int


def bootstrap_delta_ci(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    **resampling: Unpack[Resampling],
) -> BootstrapCI:
    """Paired (cluster) bootstrap percentile interval of delta = acc(B) - acc(A).

    Paired: each resample draws one set of items and scores both variants on it, so the
    interval reflects the variability of the *difference*, which is much smaller than that of
    either accuracy. Clustered: several instructions share one screenshot and their outcomes
    are correlated, so whole clusters (screenshots) are resampled with replacement; pass
    ``clusters=None`` to resample items. Each resample's delta is the pooled difference
    sum(c - b) / sum(cluster sizes) over the drawn clusters.

    Vectorised: per-cluster sums of (B - A) and sizes are computed once, then each resample is
    a row of cluster indices, so cost is O(n_resamples x n_clusters) integer gathers.
    """
    a_arr, b_arr = _as_pair(a, b)
    return cluster_bootstrap(b_arr.astype(np.int64) - a_arr, 1, clusters, **resampling)


def cluster_codes(clusters: npt.ArrayLike | None, n: int) -> tuple[ResampleUnit, np.ndarray]:
    """The resampling unit and an integer code per item: its cluster's, or its own (None)."""
    if clusters is None:
        return "item", np.arange(n)
    keys = pd.Series(np.asarray(clusters, dtype=object))
    if keys.size != n:
        raise ValueError(f"clusters has {keys.size} entries for {n} items")
    if keys.isna().any():
        raise ValueError("cluster keys must not be missing")
    return "cluster", pd.factorize(keys)[0]


def cluster_bootstrap(
    numerators: np.ndarray,
    denominator: int,
    clusters: npt.ArrayLike | None,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> BootstrapCI:
    """Percentile (cluster) bootstrap of mean_i(numerators[i] / denominator).

    The one resampling loop behind :func:`bootstrap_delta_ci` (denominator 1) and
    ``repeats.bootstrap_repeats_ci`` (lcm of the repeat counts), so the two draw the same
    clusters for the same seed and agree bit for bit at K = 1. Integer numerators keep the
    per-cluster sums exact.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    n = numerators.size
    unit, codes = cluster_codes(clusters, n)
    n_clusters = int(codes.max()) + 1 if n else 0
    if n == 0:
        return BootstrapCI(math.nan, math.nan, confidence, n_resamples, seed, unit, n_clusters)

    diff = np.bincount(codes, weights=numerators, minlength=n_clusters).astype(np.int64)
    size = np.bincount(codes, minlength=n_clusters).astype(np.int64)
    equal_sizes = bool((size == size[0]).all())  # item level: the item count is constant

    rng = np.random.default_rng(seed)
    deltas = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _MAX_CELLS_PER_CHUNK // n_clusters)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n_clusters, size=(stop - start, n_clusters))
        total = diff[idx].sum(axis=1)
        items = n_clusters * size[0] if equal_sizes else size[idx].sum(axis=1)
        deltas[start:stop] = total / (items * denominator)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return BootstrapCI(float(low), float(high), confidence, n_resamples, seed, unit, n_clusters)


def holm(p_values: Sequence[float] | npt.ArrayLike) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    Controls the family-wise error rate over the family (e.g. the six application groups)
    without Bonferroni's loss of power. The i-th smallest p (1-based) is multiplied by
    (m - i + 1), a running maximum keeps the adjusted values monotone, and they are capped at 1.
    ``nan`` entries (untestable, e.g. empty slices) are left out of the family and stay ``nan``.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return out
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def format_p(p: float) -> str:
    """``p < 0.001``, ``p = 0.004`` (three decimals below 0.01), else ``p = 0.02`` / ``p = 0.45``."""
    if p is None or math.isnan(p):
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    if p < 0.01:
        return f"p = {p:.3f}"
    return f"p = {p:.2f}"


def _pp(x: float, signed: bool = False) -> str:
    """One-decimal percentage points without a ``-0.0``."""
    if x is None or math.isnan(x):
        return "n/a"
    r = round(x, 1) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{r:+.1f}" if signed else f"{r:.1f}"


def format_delta(delta_pp: float, ci_low_pp: float, ci_high_pp: float) -> str:
    """``+1.9 pp [0.4, 3.4]``: a delta with its interval, the same in every headline."""
    return f"{_pp(delta_pp, signed=True)} pp [{_pp(ci_low_pp)}, {_pp(ci_high_pp)}]"


def format_headline(
    label_a: str,
    label_b: str,
    *,
    delta_pp: float,
    ci_low_pp: float,
    ci_high_pp: float,
    p_value: float,
    p_items: float,
    n: int,
    n_clusters: int | None,
    item_test: str = "McNemar",
    repeats: tuple[int, int] | None = None,
) -> str:
    """One-line result, read as "B vs A", e.g. (A = post-norm, B = pre-norm)

    ``"pre-norm vs post-norm: +1.9 pp [0.4, 3.4], screenshot sign-flip p = 0.03, item McNemar
    p = 0.02, 1581 paired samples in 450 screenshots"``.

    ``p_value`` is the headline test's, at the level of the interval (sign-flip over
    screenshots; over items when ``n_clusters`` is None); ``p_items`` the conventional
    item-level test named ``item_test``, conditional on these items, for comparison with papers.
    ``repeats = (K_A, K_B)`` appends them. The sign of delta is always shown.
    """
    unit = "screenshot" if n_clusters is not None else "item"
    where = f" in {n_clusters} screenshots" if n_clusters is not None else ""
    text = (
        f"{label_b} vs {label_a}: {format_delta(delta_pp, ci_low_pp, ci_high_pp)}, "
        f"{unit} sign-flip {format_p(p_value)}, item {item_test} {format_p(p_items)}, "
        f"{n} paired samples{where}"
    )
    if repeats is None:
        return text
    k_a, k_b = repeats
    return f"{text}, {k_a} repeat{'s' if k_a != 1 else ''} of A, {k_b} of B"
