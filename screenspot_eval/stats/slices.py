"""Per-slice paired comparison table: overall, then by group, ui_type, application, platform.

One row per slice value, each with its own paired table, paired cluster bootstrap interval,
sign-flip test over screenshots (the unit the interval resamples: the row's ``p``), the exact
McNemar test kept beside it as the conventional item-level figure (conditional on these items),
and the detectable deltas of the screenshot-level test. Slices are compared many at a time, so
each family's p-values (all values of ``group``, all values of ``application``, ...) are
Holm-adjusted within that family; "overall" is a single test and keeps its raw p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from screenspot_eval.stats.paired import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_N_RESAMPLES,
    DEFAULT_SEED,
    ResampleUnit,
    bootstrap_delta_ci,
    cluster_codes,
    format_headline,
    holm,
    mcnemar_exact,
    paired_table,
)
from screenspot_eval.stats.signflip import (
    DEFAULT_POWER,
    MDE_ASSUMPTIONS,
    cluster_robust_se,
    detectable_effect,
    sign_flip_test,
)

DEFAULT_FAMILIES: tuple[str, ...] = ("group", "ui_type", "application", "platform")
OUTCOME_COLUMNS: tuple[str, ...] = ("correct_a", "correct_b", "wrong_format_a", "wrong_format_b")
#: Label of a slice whose key is missing (e.g. ``group`` absent from an annotation file): such
#: items form their own slice rather than being dropped silently.
MISSING_VALUE: str = "(missing)"

TABLE_COLUMNS: tuple[str, ...] = (
    "slice",
    "value",
    "n",
    "n_clusters",
    "acc_a",
    "acc_b",
    "delta_pp",
    "ci_low_pp",
    "ci_high_pp",
    "p",
    "p_holm",
    "test",
    "p_mcnemar",
    "both_right",
    "a_only",
    "b_only",
    "both_wrong",
    "mdd_pp",
    "mde_pp",
    "wrong_format_a",
    "wrong_format_b",
    "wrong_format_delta_pp",
)


@dataclass(frozen=True)
class SliceComparison:
    """The per-slice table plus the settings needed to reproduce it.

    Units: ``acc_*`` and ``wrong_format_a`` / ``wrong_format_b`` are fractions in [0, 1];
    every ``*_pp`` column is in percentage points of B minus A. ``p`` / ``p_holm``: the
    sign-flip test over screenshots (``test``: exact or monte-carlo); ``p_mcnemar``: exact
    McNemar over items. ``mdd_pp``: the smallest |delta| the screenshot-level test could call
    significant given the screenshots' summed differences (``nan`` where none could);
    ``mde_pp``: the true delta it detects with 80 % power. ``table.attrs["settings"]`` holds a
    copy of ``settings``.
    """

    table: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def overall(self) -> pd.Series:
        return self.table.loc[self.table["slice"] == "overall"].iloc[0]

    def headline(self, label_a: str, label_b: str) -> str:
        """The overall row as one sentence, read as "B vs A"."""
        row = self.overall()
        return format_headline(
            label_a,
            label_b,
            delta_pp=float(row["delta_pp"]),
            ci_low_pp=float(row["ci_low_pp"]),
            ci_high_pp=float(row["ci_high_pp"]),
            p_value=float(row["p"]),
            p_items=float(row["p_mcnemar"]),
            n=int(row["n"]),
            n_clusters=int(row["n_clusters"])
            if self.settings.get("resample_unit") == "cluster"
            else None,
        )


def _bool_column(df: pd.DataFrame, name: str) -> np.ndarray:
    """A fixed-denominator outcome column: missing values would silently shrink n, so refuse."""
    col = df[name]
    if col.isna().any():
        raise ValueError(f"column {name!r} has missing values; every item needs an outcome")
    return col.to_numpy(dtype=bool)


def _slice_values(keys: pd.Series) -> list[Any]:
    """Values of a slice column: declared categories first (empty ones included), else sorted."""
    if isinstance(keys.dtype, pd.CategoricalDtype):
        values: list[Any] = list(keys.cat.categories)
    else:
        present = pd.unique(keys.dropna())
        try:
            values = sorted(present)
        except TypeError:  # mixed types: keep order of appearance
            values = list(present)
    if keys.isna().any():
        values.append(MISSING_VALUE)
    return values


def _row(
    family: str,
    value: Any,
    sub: dict[str, np.ndarray],
    *,
    resample: ResampleUnit,
    n_resamples: int,
    confidence: float,
    seed: int,
    alpha: float,
) -> dict[str, Any]:
    table = paired_table(sub["correct_a"], sub["correct_b"])
    clusters = sub["cluster"] if resample == "cluster" else None
    ci = bootstrap_delta_ci(
        sub["correct_a"],
        sub["correct_b"],
        clusters,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    d = sub["correct_b"].astype(np.int64) - sub["correct_a"]
    test = sign_flip_test(d, clusters=clusters, seed=seed, alpha=alpha)
    se = cluster_robust_se(d, cluster_codes(clusters, d.size)[1])
    n = table.n
    wf_a = float(sub["wrong_format_a"].mean()) if n else math.nan
    wf_b = float(sub["wrong_format_b"].mean()) if n else math.nan
    return {
        "slice": family,
        "value": value,
        "n": n,
        "n_clusters": ci.n_clusters,
        "acc_a": table.acc_a,
        "acc_b": table.acc_b,
        "delta_pp": 100.0 * table.delta,
        "ci_low_pp": 100.0 * ci.low,
        "ci_high_pp": 100.0 * ci.high,
        "p": test.p_value,
        "p_holm": test.p_value,  # replaced by the family's Holm adjustment below
        "test": test.method,
        "p_mcnemar": mcnemar_exact(table.a_only, table.b_only) if n else math.nan,
        "both_right": table.both_right,
        "a_only": table.a_only,
        "b_only": table.b_only,
        "both_wrong": table.both_wrong,
        "mdd_pp": math.nan if test.mdd is None else 100.0 * test.mdd,
        "mde_pp": 100.0 * detectable_effect(se, alpha=alpha, power=DEFAULT_POWER),
        "wrong_format_a": wf_a,
        "wrong_format_b": wf_b,
        "wrong_format_delta_pp": 100.0 * (wf_b - wf_a),
    }


def compare_slices(
    df: pd.DataFrame,
    *,
    families: Sequence[str] = DEFAULT_FAMILIES,
    resample: ResampleUnit = "cluster",
    n_resamples: int = DEFAULT_N_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    alpha: float = DEFAULT_ALPHA,
) -> SliceComparison:
    """Compare variants A and B overall and within every value of each slice family.

    ``df`` has one row per item with columns ``id, cluster`` (the screenshot file: items that
    share it are resampled together), the slice columns in ``families``, and the bool outcome
    columns ``correct_a, correct_b, wrong_format_a, wrong_format_b``. Every slice's bootstrap
    uses the same recorded ``seed``, so any row can be reproduced on its own. Items whose slice
    key is missing form a ``"(missing)"`` slice; empty slices (unused categories, an empty
    frame) give rows with ``n = 0`` and ``nan`` statistics and take no part in Holm.
    """
    required = ("id", "cluster", *families, *OUTCOME_COLUMNS)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    if df["id"].duplicated().any():
        raise ValueError("item ids must be unique: a paired comparison scores each item once")
    if resample not in ("cluster", "item"):
        raise ValueError(f"resample must be 'cluster' or 'item', not {resample!r}")

    arrays = {c: _bool_column(df, c) for c in OUTCOME_COLUMNS}
    arrays["cluster"] = df["cluster"].to_numpy(dtype=object)
    kwargs: dict[str, Any] = {
        "resample": resample,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "seed": seed,
        "alpha": alpha,
    }

    rows = [_row("overall", "all", arrays, **kwargs)]
    for family in families:
        keys = df[family]
        labels = keys.astype(object).where(keys.notna(), MISSING_VALUE).to_numpy()
        family_rows = []
        for value in _slice_values(keys):
            mask = labels == value
            sub = {name: arr[mask] for name, arr in arrays.items()}
            family_rows.append(_row(family, value, sub, **kwargs))
        adjusted = holm([r["p"] for r in family_rows])
        for r, p_adj in zip(family_rows, adjusted, strict=True):
            r["p_holm"] = float(p_adj)
        rows.extend(family_rows)

    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    settings: dict[str, Any] = {
        "seed": seed,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "alpha": alpha,
        "resample_unit": resample,
        "cluster_column": "cluster" if resample == "cluster" else None,
        "interval": "percentile bootstrap, paired (same resampled items for A and B)",
        "test": "sign-flip randomisation test over screenshots (each screenshot's summed "
        "difference flips as a whole; exact null distribution where affordable, else "
        "Monte-Carlo with the seed above), two-sided"
        if resample == "cluster"
        else "paired sign-flip randomisation test over items (= exact McNemar), two-sided",
        "item_test": "exact McNemar (two-sided binomial test of discordant pairs, p = 0.5): the "
        "conventional item-level test, conditional on these items",
        "multiple_testing": "Holm-Bonferroni of p within each slice family; overall unadjusted",
        "mdd": "smallest |delta| the test could call significant given the observed summed "
        "differences of its units (conditional on them)",
        "mde": MDE_ASSUMPTIONS,
        "power": DEFAULT_POWER,
        "families": list(families),
        "delta": "accuracy of B minus accuracy of A",
        "numpy_version": np.__version__,
    }
    table.attrs["settings"] = dict(settings)
    return SliceComparison(table=table, settings=settings)
