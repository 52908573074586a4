"""The pooled answer across cells that share screenshots: its arithmetic, and, in seeded
simulations with effects that differ between cells and screenshot effects shared by the cells,
the size of its test and the coverage of its interval (issue 33)."""

from __future__ import annotations

import numpy as np
import pytest

from screenspot_eval.stats.pooled import CellOutcomes, pool_cells

SCREENSHOTS = 240


def simulate(rng: np.random.Generator, effects: list[float], spread: float = 0.10):
    """Cells evaluated on the same screenshots (1-3 samples each). Per screenshot a difficulty
    and an effect shift, both shared by every cell; per cell its own true effect. A and B of a
    sample share one uniform draw (paired outcomes); no probability is clipped, so each cell's
    true delta is its effect exactly."""
    per_shot = rng.integers(1, 4, size=SCREENSHOTS)
    shots = np.repeat(np.arange(SCREENSHOTS), per_shot)
    difficulty = rng.normal(size=SCREENSHOTS)[shots]
    shift = rng.uniform(-spread, spread, size=SCREENSHOTS)[shots]
    cells = []
    for j, effect in enumerate(effects):
        p_a = 0.2 + 0.6 / (1 + np.exp(-(difficulty + 0.3 * j)))
        p_b = p_a + effect + shift
        u = rng.random(shots.size)
        cells.append(CellOutcomes(f"c{j}", u < p_a, u < p_b, shots))
    return cells


def test_the_pooled_delta_is_the_stated_combination_of_the_cells_deltas():
    rng = np.random.default_rng(1)
    cells = simulate(rng, [0.05, -0.02, 0.0])
    deltas = [np.mean(np.asarray(c.b, float) - np.asarray(c.a, float)) for c in cells]
    equal = pool_cells(cells, n_resamples=200, n_flips=200)
    assert equal.deltas == pytest.approx(deltas)
    assert equal.pooled == pytest.approx(np.mean(deltas))
    sizes = np.array([len(np.asarray(c.a)) for c in cells], float)
    by_size = pool_cells(cells, weighting="samples", n_resamples=200, n_flips=200)
    assert by_size.pooled == pytest.approx(float(sizes @ deltas / sizes.sum()))
    assert equal.ci_low <= equal.pooled <= equal.ci_high


def test_cells_on_different_screenshots_pool_over_their_union():
    a = CellOutcomes("x", [1, 0, 0], [1, 1, 1], ["s1", "s1", "s2"])
    b = CellOutcomes("y", [0, 0], [0, 1], ["s3", "s3"])
    result = pool_cells([a, b], n_resamples=300, n_flips=300)
    assert result.n_screenshots == 3
    assert result.pooled == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_identical_cells_show_no_heterogeneity_and_different_ones_do():
    rng = np.random.default_rng(2)
    [cell] = simulate(rng, [0.03])
    twins = [cell, CellOutcomes("copy", cell.a, cell.b, cell.screenshots)]
    same = pool_cells(twins, n_resamples=400, n_flips=200)
    assert same.tau2 == 0.0 and same.i2 == 0.0
    apart = pool_cells(simulate(rng, [-0.25, 0.25]), n_resamples=400, n_flips=200)
    assert apart.tau2 > 0.01 and apart.i2 > 0.8 and apart.heterogeneity_p < 0.001


def run_simulations(effects: list[float], n: int, seed: int) -> tuple[float, float]:
    """Share of simulations whose test rejects at 0.05, and whose interval covers the truth."""
    rng = np.random.default_rng(seed)
    truth = float(np.mean(effects))
    rejected = covered = 0
    for i in range(n):
        result = pool_cells(
            simulate(rng, effects), n_resamples=400, n_flips=400, seed=seed * 10_000 + i
        )
        rejected += result.p_value < 0.05
        covered += result.ci_low <= truth <= result.ci_high
    return rejected / n, covered / n


def test_the_pooled_test_keeps_its_size_with_heterogeneous_effects_and_shared_screenshots():
    """Effects of -6, +6, -2 and +2 pp pool to 0; screenshots shift every cell alike."""
    size, _ = run_simulations([-0.06, 0.06, -0.02, 0.02], n=600, seed=11)
    assert size <= 0.06


def test_the_pooled_interval_covers_with_heterogeneous_effects_and_shared_screenshots():
    _, coverage = run_simulations([0.08, -0.01, 0.03, 0.05], n=600, seed=12)
    assert coverage >= 0.93


def test_a_real_pooled_effect_is_found():
    rejected, _ = run_simulations([0.06, 0.04, 0.08], n=60, seed=13)
    assert rejected >= 0.8
