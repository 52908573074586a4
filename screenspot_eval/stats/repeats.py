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
- Test: the sign-flip randomisation test of :mod:`screenspot_eval.stats.signflip` over
  *screenshots* (each screenshot's sum of d_i over all its items and repeats flips), the unit
  the interval resamples; the same test over items (conditional on these items; the exact
  McNemar test at K = 1) is kept beside it as the conventional figure. The d_i lie on the
  lattice ``1 / lcm(K_A, K_B)``, so the screenshot sums are integers on it and the exact null
  distribution is a convolution. With K_A != K_B the d_i have mean 0 under H0 but are skewed,
  and both tests are valid asymptotically (self-studentised sums).
- Power: the minimum detectable effect at 80 % power of the screenshot-level test, from the
  screenshot-clustered standard error (``signflip.MDE_ASSUMPTIONS``).
- Noise floor: how often an item's outcome differs between repeats of the *same* variant, and
  how many discordant pairs two runs of the same variant would show from noise alone, to set
  beside the A/B discordant pairs.

Fractions in [0, 1] throughout, like ``paired.py``; ``*_pp`` properties multiply by 100.
Undefined quantities are ``nan`` (or ``None`` where a count is meaningless), never exceptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd

from screenspot_eval.stats.paired import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
    BootstrapCI,
    Resampling,
    _pp,
    cluster_bootstrap,
    cluster_codes,
    format_headline,
)
from screenspot_eval.stats.signflip import (
    DEFAULT_N_DRAWS,
    DEFAULT_POWER,
    MDE_ASSUMPTIONS,
    SignFlipTest,
    TestMethod,
    cluster_robust_se,
    detectable_effect,
    sign_flip_test,
)
from screenspot_eval.stats.slices import MISSING_VALUE, _slice_values


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

    ``test``: the sign-flip test over screenshots (over items without clusters), the headline;
    ``item_test``: the same over items, conditional on these items (McNemar at K = 1).
    ``ab_discordant``: the mean, over the K_A x K_B pairs (run of A, run of B), of the number
    of items on which the two runs disagree; ``noise_discordant``: the same expected from noise
    alone (mean of the A/A estimates of the sides with K >= 2). ``mde``: the true delta that
    ``test`` detects with probability ``power``, (z_{1 - alpha/2} + z_power) x the
    screenshot-clustered standard error ``se`` of mean(d) (``signflip.MDE_ASSUMPTIONS``);
    more repeats shrink it by averaging the per-item noise. ``test.mdd`` is the conditional
    threshold instead (see :class:`~screenspot_eval.stats.signflip.SignFlipTest`).
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
    item_test: SignFlipTest
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
        """The headline p: the test at the level of the interval (screenshots)."""
        return self.test.p_value

    def headline(self, label_a: str, label_b: str) -> str:
        """One line read as "B vs A", e.g. ``"pre-norm vs post-norm: +1.9 pp [0.4, 3.4],
        screenshot sign-flip p = 0.03, item sign-flip p = 0.004, 1581 paired samples in 450
        screenshots, 3 repeats of A, 3 of B"``."""
        return format_headline(
            label_a,
            label_b,
            delta_pp=self.delta_pp,
            ci_low_pp=self.ci_low_pp,
            ci_high_pp=self.ci_high_pp,
            p_value=self.p_value,
            p_items=self.item_test.p_value,
            n=self.n,
            n_clusters=self.n_clusters if self.test.unit == "cluster" else None,
            item_test="sign-flip",
            repeats=(self.k_a, self.k_b),
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

    ``clusters`` (the screenshot of each item) makes screenshots the independent units of the
    interval, the standard error and the headline test; ``slices`` (one label per item, e.g.
    the group) adds per-slice flip counts to the noise floors.
    """
    a, b = _as_repeat_pair(y_a, y_b)
    num, den = item_differences(a, b)
    n = num.size
    unit, codes = cluster_codes(clusters, n)
    ci = bootstrap_repeats_ci(
        a, b, clusters, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    d = num / den
    how: dict[str, Any] = {"method": method, "n_draws": n_draws, "seed": seed, "alpha": alpha}
    item_test = sign_flip_test(d, denominator=den, **how)
    test = (
        sign_flip_test(d, denominator=den, clusters=clusters, **how)
        if unit == "cluster"
        else item_test
    )
    se = cluster_robust_se(d, codes)
    mde = detectable_effect(se, alpha=alpha, power=power)
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
        "item_test": "conventional item-level test, conditional on these items: "
        + item_test.description,
        "mdd": test.mdd_method,
        "mde": MDE_ASSUMPTIONS,
        "power": power,
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
        item_test=item_test,
        mde=mde,
        power=power,
        noise_a=noise_a,
        noise_b=noise_b,
        ab_discordant=ab_disc,
        noise_discordant=float(np.mean(floors)) if floors else math.nan,
        settings=settings,
    )
