"""Paired comparison of variants A and B when each is run K times on the same items (repeats).

Decoding with sampling, batch-dependent kernels or a restarted server can change an item's
outcome from one run to the next, so a single run confounds the A/B difference with run-to-run
noise. With ``K_A`` repeats of A and ``K_B`` of B (each >= 1, may differ), every item ``i`` has
outcomes ``y_A[i, r]``, ``y_B[i, s]`` in {0, 1}, and the analysis works on the per-item means:

- ``d_i = mean_s y_B[i, s] - mean_r y_A[i, r]`` and ``delta = mean_i d_i`` (B minus A). At
  K = 1 this is the usual ``(c - b) / n``.
- Interval: a paired bootstrap that resamples *screenshots* (clusters) with all their items and
  all their repeats, exactly as :func:`screenspot_eval.stats.paired.bootstrap_delta_ci` (same
  seed, chunking and percentile rule; at K = 1 it returns the same interval bit for bit).
- Test: a paired sign-flip randomisation test of the d_i. Under H0 "A and B are exchangeable on
  every item" each d_i is symmetric about 0, so flipping its sign leaves the distribution
  unchanged; at K = 1 the d_i are -1 / 0 / +1 and the test *is* the exact McNemar test. The d_i
  lie on the lattice ``1 / lcm(K_A, K_B)``, so the exact null distribution (all ``2**m`` sign
  vectors of the m non-zero d_i) is computed by convolution in O(m x lattice width) rather than
  by enumeration; Monte-Carlo (recorded seed and draws, +1 correction) is the fallback.
  Exact under that null when K_A = K_B (per-item exchangeability, which holds whatever the
  correlation between the items of a screenshot); with K_A != K_B the d_i have mean 0 but are
  skewed, and the test is valid asymptotically (sum d_i / sqrt(sum d_i^2) is then a
  studentised statistic). The interval is the statement about the average delta.
- Noise floor: how often an item's outcome differs between repeats of the *same* variant, and
  how many discordant pairs two runs of the same variant would show from noise alone, to set
  beside the A/B discordant pairs.

Fractions in [0, 1] throughout, like ``paired.py``; ``*_pp`` properties multiply by 100.
Undefined quantities are ``nan`` (or ``None`` where a count is meaningless), never exceptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import norm

from screenspot_eval.stats.paired import (
    _MAX_CELLS_PER_CHUNK,
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
    BootstrapCI,
    Resampling,
    _pp,
    cluster_bootstrap,
    cluster_codes,
    format_delta,
    format_p,
)
from screenspot_eval.stats.slices import MISSING_VALUE, _slice_values

#: Monte-Carlo sign-flip draws when the exact distribution is not used.
DEFAULT_N_DRAWS: int = 10_000
#: The exact null distribution costs about (non-zero d_i) x (lattice width) float additions;
#: above this the test falls back to Monte-Carlo. 1581 items at K = 3 / 3 need ~5e7.
DEFAULT_MAX_EXACT_WORK: int = 200_000_000
#: Power at which :attr:`RepeatsComparison.mde` is stated.
DEFAULT_POWER: float = 0.80

TestMethod = Literal["auto", "exact", "monte-carlo"]


class RepeatsSettings(Resampling, total=False):
    """:func:`compare_repeats`' interval and test settings, for a caller that runs it as is
    (e.g. once per budget); its keyword defaults apply to what is not given."""

    alpha: float
    method: TestMethod
    n_draws: int


# --- inputs -----------------------------------------------------------------------------------


def as_repeats(y: npt.ArrayLike, name: str = "y") -> np.ndarray:
    """Validate outcomes as an ``(n_items, K)`` bool matrix; a 1-D vector is one repeat.

    Missing outcomes are refused: a failed request is a miss (0) and stays in the denominator,
    so a hole in the matrix means the run is incomplete, not that the item can be skipped.
    """
    arr = np.asarray(y)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"outcomes {name} must be 1-D (one repeat) or 2-D (items x repeats)")
    if arr.shape[1] < 1:
        raise ValueError(f"outcomes {name} need at least one repeat")
    if arr.dtype != bool and arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"outcomes {name} must be boolean or 0/1 (no missing values)")
    return arr.astype(bool)


def repeat_matrix(
    records: pd.DataFrame,
    *,
    item: str = "id",
    repeat: str = "repeat",
    outcome: str = "correct",
    items: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pivot long records (one row per item and repeat) to ``(item ids, n_items x K matrix)``.

    Every item must have every repeat exactly once; ``items`` fixes the row order (e.g. the
    other variant's ids, so the two matrices are paired row by row).
    """
    missing = [c for c in (item, repeat, outcome) if c not in records.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    if records.duplicated([item, repeat]).any():
        raise ValueError("an (item, repeat) pair occurs twice")
    if records[outcome].isna().any():
        raise ValueError(f"column {outcome!r} has missing values; every item needs an outcome")
    wide = records.pivot(index=item, columns=repeat, values=outcome)
    if items is not None:
        order = pd.Index(np.asarray(items, dtype=object))
        if order.duplicated().any() or set(order) != set(wide.index):
            raise ValueError("items must list each item of the records exactly once")
        wide = wide.reindex(order)
    if wide.isna().any().any():
        raise ValueError("some items lack some repeats: the repeat matrix must be complete")
    return wide.index.to_numpy(dtype=object), as_repeats(wide.to_numpy(), outcome)


def _as_repeat_pair(y_a: npt.ArrayLike, y_b: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = as_repeats(y_a, "y_a")
    b = as_repeats(y_b, "y_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired outcomes differ in items: {a.shape[0]} vs {b.shape[0]}")
    return a, b


def item_differences(y_a: npt.ArrayLike, y_b: npt.ArrayLike) -> tuple[np.ndarray, int]:
    """Per-item differences on the integer lattice: ``(numerators, denominator)``.

    ``d_i = numerators[i] / denominator`` with ``denominator = lcm(K_A, K_B)``. Integers keep
    sums exact (bootstrap, sign-flip distribution) and make ties in the test unambiguous.
    """
    a, b = _as_repeat_pair(y_a, y_b)
    k_a, k_b = a.shape[1], b.shape[1]
    den = math.lcm(k_a, k_b)
    num = b.sum(axis=1, dtype=np.int64) * (den // k_b) - a.sum(axis=1, dtype=np.int64) * (
        den // k_a
    )
    return num, den


# --- bootstrap --------------------------------------------------------------------------------


def bootstrap_repeats_ci(
    y_a: npt.ArrayLike,
    y_b: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    **resampling: Unpack[Resampling],
) -> BootstrapCI:
    """Paired cluster-bootstrap percentile interval of delta = mean_i(mean_B[i] - mean_A[i]).

    A resample draws screenshots with replacement and keeps each one's items *and all their
    repeats*, so the interval carries both the sampling of screenshots and the run-to-run noise
    (which K repeats average down). Same draws as ``paired.bootstrap_delta_ci`` for the same
    seed, cluster keys and resample count: at K = 1 both give the same interval.
    """
    num, den = item_differences(y_a, y_b)
    return cluster_bootstrap(num, den, clusters, **resampling)


# --- sign-flip test ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignFlipTest:
    """Two-sided paired sign-flip randomisation test of mean(d) = 0, and its detection limit.

    ``mdd`` is the smallest |mean d| that this test could call significant given the observed
    magnitudes |d_i| (the analogue of ``paired.min_detectable_delta``, equal to it at K = 1);
    ``None`` when no sign pattern can reach ``alpha``.
    """

    p_value: float
    statistic: float  # observed mean of d (fraction)
    method: Literal["exact", "monte-carlo"]
    n: int
    n_nonzero: int
    n_draws: int | None  # Monte-Carlo only
    seed: int | None  # Monte-Carlo only
    alpha: float
    mdd: float | None
    mdd_method: str

    @property
    def description(self) -> str:
        if self.method == "exact":
            return "paired sign-flip randomisation test, exact null distribution (two-sided)"
        return (
            f"paired sign-flip randomisation test, Monte-Carlo with {self.n_draws} draws, "
            f"seed {self.seed}, p = (1 + hits) / (1 + draws) (two-sided)"
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


def _null_pmf(magnitudes: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact distribution of sum_i s_i * m_i over independent fair signs s_i.

    Returns ``(pmf, offset)`` with ``pmf[j] = P(sum = j - offset)``. One shift-and-average per
    non-zero term: equivalent to enumerating all sign vectors, in O(terms x width).
    """
    pmf = np.ones(1)
    for v in np.sort(magnitudes):
        v = int(v)
        out = np.zeros(pmf.size + 2 * v)
        out[: pmf.size] += 0.5 * pmf
        out[2 * v :] += 0.5 * pmf
        pmf = out
    return pmf, (pmf.size - 1) // 2


def _exact_tails(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Support values t >= 0 of |sum| and P(|sum| >= t), ascending in t."""
    pmf, offset = _null_pmf(magnitudes)
    values = np.abs(np.arange(pmf.size) - offset)
    mass = np.bincount(values, weights=pmf)
    support = np.flatnonzero(mass > 0)
    tails = np.cumsum(mass[support][::-1])[::-1]
    return support, np.minimum(tails, 1.0)


def sign_flip_test(
    d: npt.ArrayLike,
    *,
    denominator: int | None = None,
    method: TestMethod = "auto",
    n_draws: int = DEFAULT_N_DRAWS,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
    max_exact_work: int = DEFAULT_MAX_EXACT_WORK,
) -> SignFlipTest:
    """Two-sided paired sign-flip test of the per-item differences ``d`` (fractions).

    Statistic ``T = sum d_i``; p = P(|T*| >= |T|) with T* = sum s_i d_i over independent fair
    signs. Zeros cannot flip and drop out (as concordant pairs do in McNemar). With ``d`` on the
    lattice ``1 / denominator`` (integers when ``None``), ``"auto"`` uses the exact distribution
    while its cost stays under ``max_exact_work``, else Monte-Carlo: ``n_draws`` sign vectors
    from ``seed``, p = (1 + #{|T*| >= |T|}) / (1 + n_draws), which is a valid p-value for any
    number of draws. Off any lattice only Monte-Carlo applies.

    ``mdd``: exact method -- the smallest support point t of |T*| with P(|T*| >= t) < alpha,
    over n; Monte-Carlo -- the normal approximation z_{1 - alpha/2} * sqrt(sum d_i^2) / n.
    """
    if method not in ("auto", "exact", "monte-carlo"):
        raise ValueError(f"method must be 'auto', 'exact' or 'monte-carlo', not {method!r}")
    if n_draws < 1:
        raise ValueError("n_draws must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    values, scale = _lattice(d, denominator)
    n = int(values.size)
    nonzero = values[values != 0]
    m = int(nonzero.size)
    observed = float(values.sum())
    mean = observed / ((scale or 1) * n) if n else math.nan

    work = m * (2 * float(np.abs(nonzero).sum()) + 1) if scale is not None else math.inf
    if method == "exact" and scale is None:
        raise ValueError("the exact test needs differences on a lattice (pass denominator)")
    use_exact = method == "exact" or (method == "auto" and work <= max_exact_work)

    if m == 0:  # nothing can flip: no evidence of a difference, nothing detectable
        return SignFlipTest(
            p_value=1.0 if n else math.nan,
            statistic=mean,
            method="exact" if use_exact else "monte-carlo",
            n=n,
            n_nonzero=0,
            n_draws=None if use_exact else n_draws,
            seed=None if use_exact else seed,
            alpha=alpha,
            mdd=None,
            mdd_method=_mdd_method(use_exact),
        )

    if use_exact:
        support, tails = _exact_tails(np.abs(nonzero))
        t_obs = abs(int(values.sum()))
        p = float(tails[np.searchsorted(support, t_obs)])
        significant = np.flatnonzero(tails < alpha)
        mdd = float(support[significant[0]]) / (scale * n) if significant.size else None
        return SignFlipTest(
            min(p, 1.0), mean, "exact", n, m, None, None, alpha, mdd, _mdd_method(True)
        )

    rng = np.random.default_rng(seed)
    weights = nonzero.astype(np.float64)
    threshold = abs(observed)
    if scale is None:  # floats: do not let rounding turn a tie into a miss
        threshold -= 1e-9 * max(1.0, float(np.abs(weights).sum()))
    hits = 0
    chunk = max(1, _MAX_CELLS_PER_CHUNK // m)
    for start in range(0, n_draws, chunk):
        rows = min(chunk, n_draws - start)
        signs = rng.integers(0, 2, size=(rows, m), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ weights) >= threshold))
    p = (1 + hits) / (1 + n_draws)
    z = float(norm.ppf(1.0 - alpha / 2.0))
    mdd = z * math.sqrt(float(np.sum(weights**2))) / ((scale or 1) * n)
    return SignFlipTest(p, mean, "monte-carlo", n, m, n_draws, seed, alpha, mdd, _mdd_method(False))


def _mdd_method(exact: bool) -> str:
    if exact:
        return (
            "smallest |mean d| significant under the exact sign-flip distribution given the "
            "observed |d_i| (= the McNemar threshold at K = 1)"
        )
    return "normal approximation to the sign-flip distribution: z * sqrt(sum d_i^2) / n"


# --- noise floor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseFloor:
    """Run-to-run (A/A) noise of one variant over its K repeats.

    ``flips``: items whose outcome is not the same in all K repeats. ``expected_discordant``:
    the expected number of items on which two independent runs of this variant disagree,
    estimated without bias by sum_i 2 s_i (K - s_i) / (K (K - 1)) for s_i successes (the mean
    over all pairs of repeats of their discordant count). Both need K >= 2 (``None`` / ``nan``
    otherwise). ``by_slice`` has the same per value of a slice column, when one was given.
    """

    k: int
    n: int
    acc_per_repeat: tuple[float, ...]
    flips: int | None
    flip_share: float
    expected_discordant: float
    by_slice: pd.DataFrame | None = None

    @property
    def acc_min(self) -> float:
        return min(self.acc_per_repeat) if self.n else math.nan

    @property
    def acc_max(self) -> float:
        return max(self.acc_per_repeat) if self.n else math.nan

    @property
    def acc_sd(self) -> float:
        """Standard deviation (ddof = 1) of accuracy across repeats; ``nan`` at K = 1."""
        if self.k < 2 or not self.n:
            return math.nan
        return float(np.std(self.acc_per_repeat, ddof=1))


NOISE_SLICE_COLUMNS: tuple[str, ...] = ("value", "n", "flips", "flip_share", "expected_discordant")


def _noise_counts(y: np.ndarray) -> tuple[int | None, float, float]:
    n, k = y.shape
    if k < 2:
        return None, math.nan, math.nan
    s = y.sum(axis=1, dtype=np.int64)
    flips = int(np.count_nonzero((s > 0) & (s < k)))
    expected = float(np.sum(2.0 * s * (k - s)) / (k * (k - 1)))
    return flips, (flips / n if n else math.nan), expected


def noise_floor(y: npt.ArrayLike, slices: npt.ArrayLike | None = None) -> NoiseFloor:
    """Within-variant flips, accuracy spread across repeats and A/A discordance of ``y``."""
    arr = as_repeats(y)
    n, k = arr.shape
    acc = tuple(float(v) for v in arr.mean(axis=0)) if n else (math.nan,) * k
    flips, share, expected = _noise_counts(arr)
    by_slice = None
    if slices is not None:
        keys = pd.Series(slices) if not isinstance(slices, pd.Series) else slices
        if keys.size != n:
            raise ValueError(f"slices has {keys.size} entries for {n} items")
        labels = keys.astype(object).where(keys.notna(), MISSING_VALUE).to_numpy()
        rows = []
        for value in _slice_values(keys):
            sub = arr[labels == value]
            f, sh, ex = _noise_counts(sub)
            rows.append(
                dict(zip(NOISE_SLICE_COLUMNS, (value, sub.shape[0], f, sh, ex), strict=True))
            )
        by_slice = pd.DataFrame(rows, columns=list(NOISE_SLICE_COLUMNS))
    return NoiseFloor(k, n, acc, flips, share, expected, by_slice)


# --- the comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatsComparison:
    """Everything a report needs for an A/B comparison with repeats (fractions; B minus A).

    ``ab_discordant``: the mean, over the K_A x K_B pairs (run of A, run of B), of the number
    of items on which the two runs disagree; ``noise_discordant``: the same expected from noise
    alone (mean of the A/A estimates of the sides with K >= 2). ``mde``: the true delta that a
    two-sided level-``alpha`` test detects with probability ``power`` at this design's
    variability, (z_{1 - alpha/2} + z_power) x the cluster-robust standard error of mean(d);
    more repeats shrink it by averaging the per-item noise. ``test.mdd`` is the conditional
    threshold instead (see :class:`SignFlipTest`).
    """

    n: int
    n_clusters: int
    k_a: int
    k_b: int
    acc_a: float
    acc_b: float
    delta: float
    se: float
    ci: BootstrapCI
    test: SignFlipTest
    mde: float
    power: float
    noise_a: NoiseFloor
    noise_b: NoiseFloor
    ab_discordant: float
    noise_discordant: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def delta_pp(self) -> float:
        return 100.0 * self.delta

    @property
    def ci_low_pp(self) -> float:
        return 100.0 * self.ci.low

    @property
    def ci_high_pp(self) -> float:
        return 100.0 * self.ci.high

    @property
    def p_value(self) -> float:
        return self.test.p_value

    def headline(self, label_a: str, label_b: str) -> str:
        """One line read as "B vs A", e.g. ``"pre-norm vs post-norm: +1.9 pp [0.4, 3.4],
        sign-flip p = 0.02 (exact), 1581 paired samples, 3 repeats of A, 3 of B"``."""
        return format_repeats_headline(
            label_a,
            label_b,
            delta_pp=self.delta_pp,
            ci_low_pp=self.ci_low_pp,
            ci_high_pp=self.ci_high_pp,
            p_value=self.p_value,
            method=self.test.method,
            n=self.n,
            k_a=self.k_a,
            k_b=self.k_b,
        )

    def noise_line(self) -> str:
        """The A/B discordance beside the A/A noise floor, e.g. ``"discordant items per run
        pair: A/B 57.3, expected from noise alone 41.0; within-variant flips: A 38 (2.4 %),
        B 41 (2.6 %)"``."""
        parts = []
        for side, nf in (("A", self.noise_a), ("B", self.noise_b)):
            if nf.flips is None:
                parts.append(f"{side} n/a (1 repeat)")
            else:
                parts.append(f"{side} {nf.flips} ({_pp(100.0 * nf.flip_share)} %)")
        noise = "n/a" if math.isnan(self.noise_discordant) else f"{self.noise_discordant:.1f}"
        return (
            f"discordant items per run pair: A/B {self.ab_discordant:.1f}, expected from noise "
            f"alone {noise}; within-variant flips: {', '.join(parts)}"
        )


def format_repeats_headline(
    label_a: str,
    label_b: str,
    *,
    delta_pp: float,
    ci_low_pp: float,
    ci_high_pp: float,
    p_value: float,
    method: str,
    n: int,
    k_a: int,
    k_b: int,
) -> str:
    """Like ``paired.format_headline``, naming the sign-flip test and the repeats."""
    return (
        f"{label_b} vs {label_a}: {format_delta(delta_pp, ci_low_pp, ci_high_pp)}, "
        f"sign-flip {format_p(p_value)} ({method}), {n} paired samples, "
        f"{k_a} repeat{'s' if k_a != 1 else ''} of A, {k_b} of B"
    )


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


def compare_repeats(
    y_a: npt.ArrayLike,
    y_b: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    *,
    slices: npt.ArrayLike | None = None,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
    method: TestMethod = "auto",
    n_draws: int = DEFAULT_N_DRAWS,
    power: float = DEFAULT_POWER,
) -> RepeatsComparison:
    """Compare A and B from ``(n_items, K)`` outcome matrices (1-D = one repeat).

    ``clusters`` (the screenshot of each item) makes the interval and the standard error
    resample / treat screenshots as the independent units; ``slices`` (one label per item, e.g.
    the group) adds per-slice flip counts to the noise floors. The sign-flip test needs no
    clusters: given the items, the d_i are independent under H0 (each repeat is a separate
    request), so it is exact (K_A = K_B; asymptotic otherwise) whatever the correlation
    between the items of one screenshot.
    """
    a, b = _as_repeat_pair(y_a, y_b)
    if not 0.0 < power < 1.0:
        raise ValueError("power must be in (0, 1)")
    num, den = item_differences(a, b)
    n = num.size
    unit, codes = cluster_codes(clusters, n)
    ci = bootstrap_repeats_ci(
        a, b, clusters, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    d = num / den
    test = sign_flip_test(
        d, denominator=den, method=method, n_draws=n_draws, seed=seed, alpha=alpha
    )
    se = cluster_robust_se(d, codes)
    z = float(norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power))
    mean_a, mean_b = a.mean(axis=1), b.mean(axis=1)
    ab_disc = float(np.sum(mean_a * (1.0 - mean_b) + mean_b * (1.0 - mean_a)))
    noise_a, noise_b = noise_floor(a, slices), noise_floor(b, slices)
    floors = [nf.expected_discordant for nf in (noise_a, noise_b) if nf.k >= 2]
    settings: dict[str, Any] = {
        "seed": seed,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "alpha": alpha,
        "resample_unit": unit,
        "interval": "percentile bootstrap, paired, resampling screenshots with all items and "
        "repeats"
        if unit == "cluster"
        else "percentile bootstrap, paired, resampling items with all repeats",
        "test": test.description,
        "mdd": test.mdd_method,
        "mde": f"(z_(1-alpha/2) + z_{power}) x cluster-robust SE of mean(d)",
        "delta": "mean over items of (mean over B repeats - mean over A repeats)",
        "numpy_version": np.__version__,
    }
    return RepeatsComparison(
        n=n,
        n_clusters=int(codes.max()) + 1 if n else 0,
        k_a=a.shape[1],
        k_b=b.shape[1],
        acc_a=float(a.mean()) if n else math.nan,
        acc_b=float(b.mean()) if n else math.nan,
        delta=float(d.mean()) if n else math.nan,
        se=se,
        ci=ci,
        test=test,
        mde=z * se,
        power=power,
        noise_a=noise_a,
        noise_b=noise_b,
        ab_discordant=ab_disc,
        noise_discordant=float(np.mean(floors)) if floors else math.nan,
        settings=settings,
    )
