"""Does the A/B delta depend on the image budget? Per-budget comparisons and an interaction test.

The same items are scored by both variants at several image budgets (e.g. 70, 280 and 1120
soft tokens), possibly with repeats. Two questions, kept apart:

1. *Per budget*: delta (B minus A), its cluster-bootstrap interval and the sign-flip test over
   screenshots, from :func:`screenspot_eval.stats.repeats.compare_repeats` (at K = 1 the same
   interval as ``paired.bootstrap_delta_ci``), with Holm-adjusted p-values across budgets; the
   item-level test (McNemar at K = 1, conditional on these items) beside it as ``p_items``.
2. *Interaction* (budget x variant): H0 "the delta is the same at every budget". Per item and
   budget, ``d[i, j] = mean_B - mean_A``. The statistic is a Wald statistic of the B - 1
   contrasts ``delta_j - delta_0`` with a cluster-robust covariance (screenshots as units); its
   null distribution is obtained by permuting the budget labels of the d vectors, with one
   permutation per screenshot applied to all its items (so correlation within a screenshot is
   kept, which permuting item by item would break). The permutation p is exact when the d
   vectors of a screenshot are exchangeable across budgets, and, because the statistic is
   studentised, remains asymptotically valid when budgets differ in variance (their accuracies
   differ) -- the case here. The F approximation of the same statistic is reported beside it.

The deltas are on the percentage-point scale: a constant odds-ratio effect gives different pp
deltas where accuracies differ, and this test (rightly, for the pp report) calls that a
dependence on budget.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Unpack

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import f as f_dist

from screenspot_eval.stats.paired import (
    _MAX_CELLS_PER_CHUNK,
    DEFAULT_SEED,
    ResampleUnit,
    cluster_codes,
    format_delta,
    format_p,
    holm,
)
from screenspot_eval.stats.repeats import (
    RepeatsComparison,
    RepeatsSettings,
    as_repeats,
    compare_repeats,
    item_differences,
)

DEFAULT_N_PERMUTATIONS: int = 10_000

BUDGET_TABLE_COLUMNS: tuple[str, ...] = (
    "budget",
    "n",
    "n_clusters",
    "k_a",
    "k_b",
    "acc_a",
    "acc_b",
    "delta_pp",
    "ci_low_pp",
    "ci_high_pp",
    "p",
    "p_holm",
    "test",
    "p_items",
)


@dataclass(frozen=True)
class InteractionTest:
    """Test of H0 "delta is the same at every budget" (see the module docstring).

    ``contrasts``: delta at each later budget minus delta at the first (fractions), the
    quantities the Wald statistic ``statistic`` tests jointly with ``df = n_budgets - 1``.
    ``p_value`` is the permutation p, (1 + #{W* >= W}) / (1 + n_permutations); ``p_f`` the F
    approximation (Hotelling-type, ``df`` and ``n_units - df`` degrees of freedom).
    """

    statistic: float
    df: int
    p_value: float
    p_f: float
    contrasts: tuple[float, ...]
    contrast_se: tuple[float, ...]
    unit: ResampleUnit
    n_units: int
    n_permutations: int
    seed: int

    @property
    def method(self) -> str:
        within = "screenshot" if self.unit == "cluster" else "item"
        return (
            f"permutation of budget labels within each {within} ({self.n_permutations} draws, "
            f"seed {self.seed}), cluster-robust Wald statistic of the {self.df} contrasts "
            "delta_j - delta_0"
        )


def _wald(
    sums: np.ndarray, sizes: np.ndarray, n: int, contrast: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wald statistics for stacks of (units x budgets) sums: ``(W, C m, diag(C V C'))``."""
    n_units = sums.shape[-2]
    means = sums.sum(axis=-2) / n  # (..., budgets)
    resid = sums - sizes[:, None] * means[..., None, :]
    cov = (np.swapaxes(resid, -1, -2) @ resid) * (n_units / (n_units - 1) / n**2)
    cm = means @ contrast.T  # (..., q)
    ccov = contrast @ cov @ contrast.T  # (..., q, q)
    w = np.einsum("...i,...ij,...j->...", cm, np.linalg.pinv(ccov, rcond=1e-10, hermitian=True), cm)
    return np.maximum(w, 0.0), cm, np.diagonal(ccov, axis1=-2, axis2=-1)


def interaction_test(
    d: npt.ArrayLike,
    clusters: npt.ArrayLike | None = None,
    *,
    n_permutations: int = DEFAULT_N_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> InteractionTest:
    """Test whether the mean of the columns of ``d`` (items x budgets) differ.

    ``d[i, j]``: the A/B difference of item i at budget j. ``clusters`` (screenshot per item)
    makes screenshots the permutation and variance units; ``None`` uses items.
    """
    arr = np.asarray(d, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError("d must be items x budgets with at least two budgets")
    if not np.isfinite(arr).all():
        raise ValueError("d must be finite")
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    n, n_budgets = arr.shape
    unit, codes = cluster_codes(clusters, n)
    n_units = int(codes.max()) + 1 if n else 0
    q = n_budgets - 1
    if n_units <= q:
        raise ValueError(f"need more than {q} clusters for {n_budgets} budgets")
    sums = np.stack(
        [np.bincount(codes, weights=arr[:, j], minlength=n_units) for j in range(n_budgets)],
        axis=1,
    )
    sizes = np.bincount(codes, minlength=n_units).astype(np.float64)
    contrast = np.hstack([-np.ones((q, 1)), np.eye(q)])
    w_obs, cm, var = _wald(sums, sizes, n, contrast)
    w_obs = float(w_obs)

    rng = np.random.default_rng(seed)
    tol = 1e-9 * max(1.0, abs(w_obs))  # a permutation equal to the data must count as a hit
    hits = 0
    chunk = max(1, _MAX_CELLS_PER_CHUNK // (n_units * n_budgets))
    base = np.broadcast_to(np.arange(n_budgets), (n_units, n_budgets))
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        order = rng.permuted(np.broadcast_to(base, (rows, n_units, n_budgets)), axis=-1)
        permuted = np.take_along_axis(np.broadcast_to(sums, order.shape), order, axis=-1)
        w, _, _ = _wald(permuted, sizes, n, contrast)
        hits += int(np.count_nonzero(w >= w_obs - tol))
    p_perm = (1 + hits) / (1 + n_permutations)
    f_stat = (n_units - q) / (q * (n_units - 1)) * w_obs
    p_f = float(f_dist.sf(f_stat, q, n_units - q))
    return InteractionTest(
        statistic=w_obs,
        df=q,
        p_value=p_perm,
        p_f=p_f,
        contrasts=tuple(float(x) for x in cm),
        contrast_se=tuple(math.sqrt(max(float(v), 0.0)) for v in var),
        unit=unit,
        n_units=n_units,
        n_permutations=n_permutations,
        seed=seed,
    )


@dataclass(frozen=True)
class BudgetInteraction:
    """Per-budget comparisons, their Holm-adjusted p-values and the interaction test.

    ``table`` has one row per budget (``BUDGET_TABLE_COLUMNS``; ``*_pp`` in percentage
    points of B minus A, ``acc_*`` fractions); ``per_budget`` holds the full
    :class:`~screenspot_eval.stats.repeats.RepeatsComparison` of each budget.
    """

    budgets: tuple[Hashable, ...]
    per_budget: dict[Hashable, RepeatsComparison]
    table: pd.DataFrame
    interaction: InteractionTest
    settings: dict[str, Any] = field(default_factory=dict)

    def headline(self, label_a: str, label_b: str) -> str:
        """E.g. ``"pre-norm vs post-norm by budget: 70 +0.1 pp [-1.9, 2.0] (Holm p = 1.00);
        ...; budget x variant interaction p = 0.003"``."""
        parts = [
            f"{row.budget} {format_delta(row.delta_pp, row.ci_low_pp, row.ci_high_pp)} "
            f"(Holm {format_p(row.p_holm)})"
            for row in self.table.itertuples()
        ]
        return (
            f"{label_b} vs {label_a} by budget: {'; '.join(parts)}; "
            f"budget x variant interaction {format_p(self.interaction.p_value)}"
        )


def budget_interaction(
    outcomes_a: Mapping[Hashable, npt.ArrayLike],
    outcomes_b: Mapping[Hashable, npt.ArrayLike],
    clusters: npt.ArrayLike | None = None,
    *,
    n_permutations: int = DEFAULT_N_PERMUTATIONS,
    **settings: Unpack[RepeatsSettings],
) -> BudgetInteraction:
    """Compare A and B at every budget and test whether their delta depends on the budget.

    ``outcomes_a[budget]`` / ``outcomes_b[budget]``: ``(n_items, K)`` outcome matrices (1-D =
    one repeat), with the same items in the same row order at every budget; budgets are
    reported in the order of ``outcomes_a``. ``clusters``: the screenshot of each item.
    ``settings`` (seed, resamples, confidence, alpha, test method, draws) go to every
    per-budget :func:`compare_repeats` unchanged, so its defaults are the ones that apply.
    """
    # compare_repeats also takes slices and power; they are no per-budget setting here
    unknown = sorted(settings.keys() - RepeatsSettings.__optional_keys__)
    if unknown:
        raise TypeError(f"budget_interaction() got an unexpected keyword argument {unknown[0]!r}")
    budgets = tuple(outcomes_a)
    if len(budgets) < 2:
        raise ValueError("need at least two budgets")
    if set(budgets) != set(outcomes_b):
        raise ValueError("outcomes_a and outcomes_b must have the same budgets")
    sides = {b: (as_repeats(outcomes_a[b], "a"), as_repeats(outcomes_b[b], "b")) for b in budgets}
    sizes = {a.shape[0] for a, _ in sides.values()} | {b.shape[0] for _, b in sides.values()}
    if len(sizes) != 1:
        raise ValueError("every budget must score the same items")

    per_budget: dict[Hashable, RepeatsComparison] = {}
    columns = []
    for budget in budgets:
        a, b = sides[budget]
        per_budget[budget] = compare_repeats(a, b, clusters, **settings)
        num, den = item_differences(a, b)
        columns.append(num / den)
    p_raw = [per_budget[b].p_value for b in budgets]
    p_adj = holm(p_raw)
    rows = []
    for budget, p_h in zip(budgets, p_adj, strict=True):
        r = per_budget[budget]
        rows.append(
            {
                "budget": budget,
                "n": r.n,
                "n_clusters": r.n_clusters,
                "k_a": r.k_a,
                "k_b": r.k_b,
                "acc_a": r.acc_a,
                "acc_b": r.acc_b,
                "delta_pp": r.delta_pp,
                "ci_low_pp": r.ci_low_pp,
                "ci_high_pp": r.ci_high_pp,
                "p": r.p_value,
                "p_holm": float(p_h),
                "test": r.test.method,
                "p_items": r.item_test.p_value,
            }
        )
    table = pd.DataFrame(rows, columns=list(BUDGET_TABLE_COLUMNS))
    used = per_budget[budgets[0]].settings  # the values compare_repeats ran with
    inter = interaction_test(
        np.column_stack(columns), clusters, n_permutations=n_permutations, seed=used["seed"]
    )
    recorded: dict[str, Any] = {
        **{key: used[key] for key in ("seed", "n_resamples", "confidence", "alpha")},
        "per_budget_test": used["test"],
        "per_budget_item_test": used["item_test"],
        "per_budget_interval": "percentile bootstrap, paired, resampling "
        + ("screenshots" if inter.unit == "cluster" else "items"),
        "multiple_testing": "Holm-Bonferroni across budgets",
        "interaction_test": inter.method,
        "interaction_p_f": "F approximation of the same Wald statistic",
        "budgets": list(budgets),
        "numpy_version": np.__version__,
    }
    table.attrs["settings"] = dict(recorded)
    return BudgetInteraction(budgets, per_budget, table, inter, recorded)
