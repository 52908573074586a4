"""One answer across many A/Bs on the same screenshots: a pooled delta, its interval, a test,
and the heterogeneity between the cells (issue 33).

A study's cells (checkpoints, budgets, protocols) are evaluated on the same screenshots, so
their deltas are **not independent**: a screenshot that is hard for one checkpoint is hard for
the next, and a screenshot where the fix helps may help on every cell. Meta-analysis formulas
that assume independent studies (inverse-variance weights, DerSimonian-Laird) would then claim
too much. Here every statement resamples or flips **screenshots jointly across cells**:

- **Pooled delta**: ``sum_c w_c * delta_c`` with stated weights (equal by default: each cell
  counts once, whatever its size; or by its number of samples). The estimand is the weighted
  mean of *these* cells' deltas over the population of screenshots, not a population of models.
- **Interval**: percentile bootstrap that draws screenshots (the union over cells) with
  replacement, the same draw for every cell, and recomputes every cell's delta and the pooled
  one from it.
- **Test**: H0 pooled delta = 0. Per screenshot ``v_s = sum_c w_c * (sum of B - A over the
  cell's samples on s) / n_c``; the pooled delta is ``sum_s v_s``. Flipping A and B on a
  screenshot flips ``v_s`` as a whole (in every cell at once), so the sign-flip distribution of
  ``sum_s v_s`` is the test. It is exact when each ``v_s`` is symmetric about 0 and
  conservative otherwise (cells whose effects differ but pool to 0 inflate the flip variance,
  never shrink it): its size under heterogeneous effects is simulated in
  ``tests/test_stats_pooled.py``.
- **Heterogeneity**: the cells' deltas spread more than their (correlated) sampling errors
  explain by ``tau^2 = max(0, (S - tr(M Sigma M)) / (C - 1))``, where ``S`` is the observed sum
  of squared deviations from the cells' mean, ``Sigma`` the bootstrap covariance of the cells'
  deltas and ``M`` the centring matrix (method of moments, valid with correlated errors);
  ``I^2 = max(0, 1 - tr(M Sigma M) / S)``; and a Wald test of equal deltas with ``Sigma``
  (chi-squared, C - 1 degrees of freedom).

Pure numpy and scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import chi2

from screenspot_eval.stats.paired import (
    _MAX_CELLS_PER_CHUNK,
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
)
from screenspot_eval.stats.signflip import DEFAULT_N_DRAWS

Weighting = Literal["equal", "samples"]


@dataclass(frozen=True)
class CellOutcomes:
    """One cell's paired outcomes: per sample A and B correct (0/1) and its screenshot."""

    name: str
    a: npt.ArrayLike
    b: npt.ArrayLike
    screenshots: npt.ArrayLike


@dataclass(frozen=True)
class PooledDelta:
    """The pooled answer across cells, with how it was computed."""

    cells: tuple[str, ...]
    deltas: tuple[float, ...]
    weights: tuple[float, ...]
    weighting: Weighting
    pooled: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    tau2: float
    i2: float
    heterogeneity_p: float
    n_screenshots: int
    n_resamples: int
    n_flips: int
    seed: int

    def line(self) -> str:
        """``pooled +1.2 pp [-0.3, 2.7], joint screenshot sign-flip p = 0.11, ...``."""
        return (
            f"pooled ({self.weighting} weights, {len(self.cells)} cells): "
            f"{100 * self.pooled:+.2f} pp [{100 * self.ci_low:+.2f}, {100 * self.ci_high:+.2f}], "
            f"joint screenshot sign-flip p = {self.p_value:.3g}; heterogeneity tau^2 = "
            f"{1e4 * self.tau2:.2f} pp^2, I^2 = {100 * self.i2:.0f} %, p = "
            f"{self.heterogeneity_p:.3g} ({self.n_screenshots} screenshots shared by the cells)"
        )


def screenshot_table(cells: Sequence[CellOutcomes]) -> tuple[np.ndarray, np.ndarray, int]:
    """``(U, N, S)``: per screenshot (rows, the union over cells) and cell (columns) the sum of
    B - A over the cell's samples on it, and their number."""
    keys = pd.Index(
        pd.unique(np.concatenate([np.asarray(c.screenshots, dtype=object) for c in cells]))
    )
    n_shots, n_cells = len(keys), len(cells)
    diff = np.zeros((n_shots, n_cells))
    count = np.zeros((n_shots, n_cells))
    for j, cell in enumerate(cells):
        a = np.asarray(cell.a, dtype=np.float64)
        b = np.asarray(cell.b, dtype=np.float64)
        codes = keys.get_indexer(np.asarray(cell.screenshots, dtype=object))
        if a.shape != b.shape or codes.shape != a.shape:
            raise ValueError(f"cell {cell.name}: a, b and screenshots differ in length")
        diff[:, j] = np.bincount(codes, weights=b - a, minlength=n_shots)
        count[:, j] = np.bincount(codes, minlength=n_shots)
    if (count.sum(axis=0) == 0).any():
        raise ValueError("every cell needs at least one sample")
    return diff, count, n_shots


def cell_weights(count: np.ndarray, weighting: Weighting) -> np.ndarray:
    sizes = count.sum(axis=0)
    raw = np.ones_like(sizes) if weighting == "equal" else sizes
    return raw / raw.sum()


def pool_cells(
    cells: Sequence[CellOutcomes],
    *,
    weighting: Weighting = "equal",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    n_flips: int = DEFAULT_N_DRAWS,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> PooledDelta:
    """The pooled delta of ``cells`` (see the module docstring for every rule)."""
    if not cells:
        raise ValueError("no cells to pool")
    diff, count, n_shots = screenshot_table(cells)
    sizes = count.sum(axis=0)
    deltas = diff.sum(axis=0) / sizes
    weights = cell_weights(count, weighting)
    pooled = float(weights @ deltas)
    rng = np.random.default_rng(seed)
    draws = joint_bootstrap(diff, count, deltas, n_resamples, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws @ weights, [tail, 1.0 - tail])
    contributions = diff @ (weights / sizes)  # v_s: screenshot s's share of the pooled delta
    p_value = sign_flip_p(contributions, n_flips, rng)
    tau2, i2, het_p = heterogeneity(deltas, np.atleast_2d(np.cov(draws, rowvar=False)))
    return PooledDelta(
        cells=tuple(c.name for c in cells),
        deltas=tuple(float(d) for d in deltas),
        weights=tuple(float(w) for w in weights),
        weighting=weighting,
        pooled=pooled,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_value=p_value,
        tau2=tau2,
        i2=i2,
        heterogeneity_p=het_p,
        n_screenshots=n_shots,
        n_resamples=n_resamples,
        n_flips=n_flips,
        seed=seed,
    )


def joint_bootstrap(
    diff: np.ndarray,
    count: np.ndarray,
    deltas: np.ndarray,
    n_resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every cell's delta in each resample of screenshots, one draw shared by all cells
    (``n_resamples x C``); a cell none of whose screenshots was drawn keeps its own delta."""
    n_shots, n_cells = diff.shape
    out = np.empty((n_resamples, n_cells))
    chunk = max(1, _MAX_CELLS_PER_CHUNK // max(1, n_shots * n_cells))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n_shots, size=(stop - start, n_shots))
        drawn_diff = diff[idx].sum(axis=1)
        drawn_count = count[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(drawn_count > 0, drawn_diff / drawn_count, deltas)
    return out


def sign_flip_p(contributions: np.ndarray, n_flips: int, rng: np.random.Generator) -> float:
    """Two-sided Monte-Carlo sign-flip p of ``sum(contributions)`` (each flips as a whole)."""
    observed = abs(contributions.sum())
    if observed == 0:
        return 1.0
    exceed = 0
    chunk = max(1, _MAX_CELLS_PER_CHUNK // max(1, contributions.size))
    tolerance = 1e-12 * max(1.0, float(np.abs(contributions).sum()))
    for start in range(0, n_flips, chunk):
        stop = min(start + chunk, n_flips)
        signs = rng.integers(0, 2, size=(stop - start, contributions.size)) * 2 - 1
        exceed += int((np.abs(signs @ contributions) >= observed - tolerance).sum())
    return (1 + exceed) / (1 + n_flips)


def heterogeneity(deltas: np.ndarray, covariance: np.ndarray) -> tuple[float, float, float]:
    """``(tau^2, I^2, p)`` of the cells' deltas given their sampling covariance."""
    n_cells = deltas.size
    if n_cells < 2:
        return 0.0, 0.0, 1.0
    centring = np.eye(n_cells) - 1.0 / n_cells
    spread = float(((deltas - deltas.mean()) ** 2).sum())
    expected = float(np.trace(centring @ covariance @ centring))
    tau2 = max(0.0, (spread - expected) / (n_cells - 1))
    i2 = max(0.0, 1.0 - expected / spread) if spread > 0 else 0.0
    contrast = np.diff(deltas)  # C - 1 independent contrasts of equal deltas
    difference = np.diff(np.eye(n_cells), axis=0)
    cov = difference @ covariance @ difference.T
    try:
        wald = float(contrast @ np.linalg.solve(cov, contrast))
    except np.linalg.LinAlgError:
        return tau2, i2, math.nan
    return tau2, i2, float(chi2.sf(wald, n_cells - 1))
