"""Tests of the paired statistics against independent computations (math.comb, hand values)."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screenspot_eval.stats.paired import (
    bootstrap_delta_ci,
    format_headline,
    format_p,
    holm,
    mcnemar_exact,
    min_detectable_delta,
    paired_table,
)


def exact_mcnemar_reference(b: int, c: int) -> Fraction:
    """Two-sided exact McNemar from first principles: 2 x smaller binomial tail, capped at 1."""
    d = b + c
    if d == 0:
        return Fraction(1)
    tail = sum(math.comb(d, i) for i in range(min(b, c) + 1))
    return min(Fraction(1), Fraction(2 * tail, 2**d))


# --- paired table -----------------------------------------------------------------------------


def test_paired_table_counts_known_cells() -> None:
    a = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 1, 1, 1, 0, 1, 0], dtype=bool)
    t = paired_table(a, b)
    assert (t.n, t.both_right, t.a_only, t.b_only, t.both_wrong) == (9, 2, 2, 3, 2)
    assert t.discordant == 5
    assert t.acc_a == pytest.approx(4 / 9)
    assert t.acc_b == pytest.approx(5 / 9)
    assert t.delta == pytest.approx(1 / 9)


def test_paired_table_accepts_zero_one_ints() -> None:
    t = paired_table([1, 0, 1], [0, 0, 1])
    assert (t.both_right, t.a_only, t.b_only, t.both_wrong) == (1, 1, 0, 1)


def test_paired_table_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        paired_table([True, False], [True])
    with pytest.raises(ValueError):
        paired_table([0, 2], [1, 1])
    with pytest.raises(ValueError):
        paired_table(np.ones((2, 2), bool), np.ones((2, 2), bool))


def test_paired_table_empty_is_nan_not_error() -> None:
    t = paired_table(np.array([], bool), np.array([], bool))
    assert t.n == 0 and t.discordant == 0
    assert math.isnan(t.acc_a) and math.isnan(t.acc_b) and math.isnan(t.delta)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=200))
def test_paired_table_invariants(pairs: list[tuple[bool, bool]]) -> None:
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    t = paired_table(a, b)
    assert t.both_right + t.a_only + t.b_only + t.both_wrong == t.n == len(pairs)
    assert t.delta == pytest.approx(b.mean() - a.mean())
    assert t.delta == pytest.approx(t.acc_b - t.acc_a)


# --- exact McNemar ----------------------------------------------------------------------------


def test_mcnemar_hand_values() -> None:
    # b=1, c=9: d=10, P(X<=1) = (1 + 10) / 1024, two-sided = 22/1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024, rel=1e-12)
    # 6:0 split: 2 / 64; 5:0 split: 2 / 32.
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125, rel=1e-12)
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625, rel=1e-12)
    # Balanced split and no discordant pairs: no evidence at all.
    assert mcnemar_exact(7, 7) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize(
    ("b", "c"),
    [(b, c) for b in range(0, 25, 3) for c in range(0, 25, 4)] + [(40, 70), (56, 95), (120, 150)],
)
def test_mcnemar_matches_binomial_reference(b: int, c: int) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(float(exact_mcnemar_reference(b, c)), rel=1e-9)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


# --- minimum detectable delta -----------------------------------------------------------------


def test_mdd_hand_computed() -> None:
    # d = 10: k=9 gives p = 2*11/1024 = 0.0215 < 0.05, k=8 gives 2*56/1024 = 0.109.
    # So the smallest significant split is 9:1, |c - b| = 8, mdd = 8/100.
    assert min_detectable_delta(10, 100) == pytest.approx(0.08)
    # d = 6: only 6:0 (p = 0.03125) is significant: mdd = 6 / 50.
    assert min_detectable_delta(6, 50) == pytest.approx(0.12)


def test_mdd_none_when_no_split_can_be_significant() -> None:
    assert min_detectable_delta(5, 100) is None  # 5:0 has p = 0.0625
    assert min_detectable_delta(0, 100) is None
    assert min_detectable_delta(0, 0) is None
    with pytest.raises(ValueError):
        min_detectable_delta(10, 5)


@pytest.mark.parametrize("d", [*range(0, 60), 151, 300])
def test_mdd_matches_brute_force(d: int) -> None:
    n = 1581
    significant = [
        k for k in range(d + 1) if 2 * k >= d and exact_mcnemar_reference(k, d - k) < 0.05
    ]
    expected = (2 * min(significant) - d) / n if significant else None
    got = min_detectable_delta(d, n)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_mdd_is_consistent_with_the_test_itself() -> None:
    d, n = 151, 1581
    mdd = min_detectable_delta(d, n)
    assert mdd is not None
    k = round((mdd * n + d) / 2)
    assert mcnemar_exact(k, d - k) < 0.05
    assert mcnemar_exact(k - 1, d - k + 1) >= 0.05


# --- Holm -------------------------------------------------------------------------------------


def test_holm_hand_computed() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_edges() -> None:
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(holm([0.2]), [0.2])
    assert holm([]).size == 0
    got = holm([0.01, float("nan"), 0.02])  # nan is out of the family: m = 2
    np.testing.assert_allclose(got[[0, 2]], [0.02, 0.02])
    assert math.isnan(got[1])
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
@settings(max_examples=200)
def test_holm_properties(ps: list[float]) -> None:
    p = np.array(ps)
    adj = holm(p)
    m = p.size
    assert (adj >= p - 1e-15).all()
    assert (adj <= 1.0).all()
    assert (adj <= np.minimum(1.0, m * p) + 1e-12).all()  # never worse than Bonferroni
    order = np.argsort(p, kind="stable")
    assert (np.diff(adj[order]) >= -1e-15).all()  # monotone in the raw p


# --- bootstrap --------------------------------------------------------------------------------

CELLS = np.array([0.30, 0.08, 0.12, 0.50])  # both right, A only, B only, both wrong
TRUE_DELTA = CELLS[2] - CELLS[1]  # 0.04


def simulate_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    cell = rng.choice(4, size=n, p=CELLS)
    a = (cell == 0) | (cell == 1)
    b = (cell == 0) | (cell == 2)
    return a, b


def test_item_bootstrap_coverage() -> None:
    rng = np.random.default_rng(12345)
    reps, covered = 200, 0
    for rep in range(reps):
        a, b = simulate_pairs(rng, 400)
        ci = bootstrap_delta_ci(a, b, n_resamples=2000, seed=rep)
        covered += ci.low <= TRUE_DELTA <= ci.high
    assert 0.90 <= covered / reps <= 0.99


def test_cluster_bootstrap_coverage_with_clustered_data() -> None:
    # 40 screenshots x 10 instructions; each screenshot is "easy" (B helps: +20 pp) or "hard"
    # (B hurts: -10 pp), so the difference is correlated within a screenshot.
    # True delta = 0.5 * 0.20 + 0.5 * (0.05 - 0.15) = 0.05. Resampling items ignores that
    # correlation and under-covers; resampling screenshots does not.
    easy = np.array([0.50, 0.00, 0.20, 0.30])
    hard = np.array([0.05, 0.15, 0.05, 0.75])
    clusters = np.repeat(np.arange(40), 10)
    covered = {"cluster": 0, "item": 0}
    reps = 200
    rng = np.random.default_rng(777)
    for rep in range(reps):
        is_easy = np.repeat(rng.random(40) < 0.5, 10)
        cell = np.where(is_easy, rng.choice(4, size=400, p=easy), rng.choice(4, size=400, p=hard))
        a = (cell == 0) | (cell == 1)
        b = (cell == 0) | (cell == 2)
        for unit, keys in (("cluster", clusters), ("item", None)):
            ci = bootstrap_delta_ci(a, b, keys, n_resamples=2000, seed=rep)
            covered[unit] += ci.low <= 0.05 <= ci.high
    assert 0.90 <= covered["cluster"] / reps <= 0.99
    assert covered["item"] / reps < 0.90


def test_cluster_interval_wider_when_outcomes_correlated_within_clusters() -> None:
    rng = np.random.default_rng(2024)
    n_clusters, size = 60, 10
    cell = np.repeat(rng.choice(4, size=n_clusters, p=CELLS), size)  # identical within cluster
    a = (cell == 0) | (cell == 1)
    b = (cell == 0) | (cell == 2)
    clusters = np.repeat([f"img_{i}.png" for i in range(n_clusters)], size)
    item = bootstrap_delta_ci(a, b, None, n_resamples=4000)
    clus = bootstrap_delta_ci(a, b, clusters, n_resamples=4000)
    assert item.unit == "item" and clus.unit == "cluster" and clus.n_clusters == n_clusters
    # Effective sample size is ~60, not 600: expect about sqrt(10) ~ 3.2x wider.
    assert (clus.high - clus.low) > 2.0 * (item.high - item.low)


def test_bootstrap_is_paired() -> None:
    # Identical outcomes: every paired resample has delta 0. An unpaired bootstrap would not.
    rng = np.random.default_rng(5)
    a = rng.random(500) < 0.4
    ci = bootstrap_delta_ci(a, a.copy(), rng.integers(0, 80, 500))
    assert ci.low == 0.0 and ci.high == 0.0


def test_bootstrap_centred_on_estimate_and_reproducible() -> None:
    rng = np.random.default_rng(9)
    a, b = simulate_pairs(rng, 800)
    delta = b.mean() - a.mean()
    ci1 = bootstrap_delta_ci(a, b, seed=1)
    ci2 = bootstrap_delta_ci(a, b, seed=1)
    ci3 = bootstrap_delta_ci(a, b, seed=2)
    assert ci1 == ci2
    assert (ci1.low, ci1.high) != (ci3.low, ci3.high)
    assert ci1.low < delta < ci1.high
    assert abs((ci1.low + ci1.high) / 2 - delta) < 0.005
    assert ci1.seed == 1 and ci1.n_resamples == 10_000 and ci1.confidence == 0.95


def test_singleton_clusters_equal_item_bootstrap() -> None:
    rng = np.random.default_rng(3)
    a, b = simulate_pairs(rng, 300)
    ids = [f"id{i}" for i in range(300)]
    item = bootstrap_delta_ci(a, b, None, n_resamples=3000, seed=4)
    clus = bootstrap_delta_ci(a, b, ids, n_resamples=3000, seed=4)
    assert (item.low, item.high) == (clus.low, clus.high)


def test_bootstrap_degenerate_inputs() -> None:
    empty = bootstrap_delta_ci(np.array([], bool), np.array([], bool), [])
    assert math.isnan(empty.low) and math.isnan(empty.high) and empty.n_clusters == 0
    # One cluster: every resample is the full sample, the interval collapses to the estimate.
    a = np.array([True, False, False, True])
    b = np.array([True, True, False, True])
    one = bootstrap_delta_ci(a, b, ["x.png"] * 4)
    assert one.low == pytest.approx(0.25) and one.high == pytest.approx(0.25)
    single = bootstrap_delta_ci([True], [False])
    assert single.low == single.high == -1.0


def test_bootstrap_rejects_bad_input() -> None:
    a = np.array([True, False])
    with pytest.raises(ValueError):
        bootstrap_delta_ci(a, a, ["x"])
    with pytest.raises(ValueError):
        bootstrap_delta_ci(a, a, ["x", None])
    with pytest.raises(ValueError):
        bootstrap_delta_ci(a, a, n_resamples=0)
    with pytest.raises(ValueError):
        bootstrap_delta_ci(a, a, confidence=1.0)


def test_bootstrap_is_fast_at_full_size() -> None:
    rng = np.random.default_rng(0)
    a, b = simulate_pairs(rng, 1581)
    clusters = rng.integers(0, 450, 1581)
    best = math.inf
    for _ in range(3):  # best of three: tolerate a busy shared machine
        start = time.perf_counter()
        bootstrap_delta_ci(a, b, None)
        bootstrap_delta_ci(a, b, clusters)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


# --- formatting -------------------------------------------------------------------------------


def test_headline_example() -> None:
    s = format_headline(
        "post-norm",
        "pre-norm",
        delta_pp=1.88,
        ci_low_pp=0.41,
        ci_high_pp=3.36,
        p_value=0.0213,
        p_items=0.0104,
        n=1581,
        n_clusters=450,
    )
    assert s == (
        "pre-norm vs post-norm: +1.9 pp [0.4, 3.4], screenshot sign-flip p = 0.02, "
        "item McNemar p = 0.01, 1581 paired samples in 450 screenshots"
    )


def test_headline_negative_and_zero() -> None:
    s = format_headline(
        "A", "B", delta_pp=-2.04, ci_low_pp=-3.5, ci_high_pp=-0.02, p_value=0.0004,
        p_items=0.0, n=300, n_clusters=None,
    )  # fmt: skip
    assert s == (
        "B vs A: -2.0 pp [-3.5, 0.0], item sign-flip p < 0.001, item McNemar p < 0.001, "
        "300 paired samples"
    )
    z = format_headline("A", "B", delta_pp=-0.01, ci_low_pp=-1.0, ci_high_pp=1.0, p_value=1.0,
                        p_items=1.0, n=9, n_clusters=3, repeats=(1, 2))  # fmt: skip
    assert z.startswith("B vs A: +0.0 pp [-1.0, 1.0], screenshot sign-flip p = 1.00")
    assert z.endswith("9 paired samples in 3 screenshots, 1 repeat of A, 2 of B")
    e = format_headline(
        "A", "B", delta_pp=math.nan, ci_low_pp=math.nan, ci_high_pp=math.nan, p_value=math.nan,
        p_items=math.nan, n=0, n_clusters=0,
    )  # fmt: skip
    assert e == (
        "B vs A: n/a pp [n/a, n/a], screenshot sign-flip p = n/a, item McNemar p = n/a, "
        "0 paired samples in 0 screenshots"
    )


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "p < 0.001"),
        (0.000999, "p < 0.001"),
        (0.001, "p = 0.001"),
        (0.0042, "p = 0.004"),
        (0.0213, "p = 0.02"),
        (0.456, "p = 0.46"),
        (1.0, "p = 1.00"),
    ],
)
def test_format_p(p: float, text: str) -> None:
    assert format_p(p) == text
