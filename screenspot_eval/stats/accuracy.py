"""One side's accuracy with an interval that respects screenshots (several samples share one).

For the budget sweep's table and chart: the mean outcome over items (and repeats), and a
percentile bootstrap interval that resamples screenshots with all their items and repeats,
the same resampling unit as the paired comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from screenspot_eval.stats.paired import DEFAULT_CONFIDENCE, DEFAULT_N_RESAMPLES, DEFAULT_SEED
from screenspot_eval.stats.repeats import as_repeats


@dataclass(frozen=True)
class Accuracy:
    value: float
    low: float
    high: float
    n: int
    n_clusters: int


def accuracy_interval(
    y: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    *,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> Accuracy:
    """Mean of ``y`` (items x repeats) with its clustered percentile bootstrap interval."""
    arr = as_repeats(y).astype(float)
    n = arr.shape[0]
    if n == 0:
        return Accuracy(math.nan, math.nan, math.nan, 0, 0)
    item_means = arr.mean(axis=1)
    labels = pd.Series(range(n)) if clusters is None else pd.Series(list(clusters))
    codes = pd.factorize(labels)[0]
    n_clusters = int(codes.max()) + 1
    totals = np.bincount(codes, weights=item_means, minlength=n_clusters)
    sizes = np.bincount(codes, minlength=n_clusters).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    means = totals[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Accuracy(float(item_means.mean()), float(low), float(high), n, n_clusters)
