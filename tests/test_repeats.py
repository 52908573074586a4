"""Repeats without an engine: the plan, the passes on disk, the noise floor and the A/B report.

The scripted backend plays a model whose answers depend on the repeat (its sampling seed), so
within-variant flips are known in advance; the real engine is in ``test_repeats_engine.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fakes import box_answer

from screenspot_eval.backends.base import GroundingRequest
from screenspot_eval.backends.scripted import ScriptedBackend
from screenspot_eval.data.synth import synthesize_release
from screenspot_eval.data.validate import load_release
from screenspot_eval.run.compare import compare_runs
from screenspot_eval.run.config import RunConfig, resolve_config
from screenspot_eval.run.repeats import plan_repeats, repeat_dirs, run_passes, side_passes

N = 16


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    synthesize_release(root, N, seed=3, max_width=320)
    return root


def config(data: Path, **overrides) -> RunConfig:
    given = {
        "engine.model": "scripted",
        "engine.max_soft_tokens": 70,
        "engine.max_num_seqs": 8,
        "data.source": str(data),
        "runtime.image_workers": 1,
        **overrides,
    }
    return resolve_config(None, given)


def seeded_model(data: Path, flaky: set[str]):
    """Right on even samples; on ``flaky`` ones the answer follows the sampling seed's parity."""
    samples = {s.id: s for s in load_release(data).samples}
    order = sorted(samples)

    def factory(cfg: RunConfig) -> ScriptedBackend:
        seed = cfg.sampling.seed

        def answer(request: GroundingRequest) -> str:
            sid = request.sample_id
            right = order.index(sid) % 2 == 0
            if sid in flaky:
                right = seed % 2 == 0
            return box_answer(samples[sid], correct=right)

        return ScriptedBackend(answer)

    return factory, order


def test_the_plan_perturbs_order_batch_and_prefix_cache_and_records_it(data):
    plans = plan_repeats(config(data), 3)
    first, second, third = plans
    assert (first.order_seed, first.changed) == (None, ())
    assert second.order_seed is not None and third.order_seed not in (None, second.order_seed)
    assert {p.max_batch for p in plans} == {8, 1, 4}  # max_num_seqs 8: full, one, half
    assert [p.prefix_cache for p in plans] == ["kept", "reset", "kept"]
    assert {p.sampling_seed for p in plans} == {0}  # greedy: the seed cannot matter
    assert any("in flight" in c for c in second.changed)


def test_at_temperature_the_sampling_seed_changes_and_an_aa_side_draws_its_own(data):
    cfg = config(data, **{"sampling.temperature": 0.7, "sampling.seed": 10})
    assert [p.sampling_seed for p in plan_repeats(cfg, 3)] == [10, 11, 12]
    assert [p.sampling_seed for p in plan_repeats(cfg, 3, seed_offset=3)] == [13, 14, 15]


def test_passes_are_resumable_runs_with_their_plan_and_shuffled_order(data, tmp_path):
    factory, order = seeded_model(data, flaky=set())
    passes = side_passes(config(data), tmp_path / "a", 3)
    results = run_passes(passes, backend_factory=factory, quiet=True)
    assert [r.out.name for r in results] == ["r1", "r2", "r3"]
    assert repeat_dirs(tmp_path / "a") == [r.out for r in results]
    manifests = [json.loads((r.out / "manifest.json").read_text()) for r in results]
    assert [m["repeat"]["index"] for m in manifests] == [1, 2, 3]
    assert manifests[1]["config"]["runtime"]["order_seed"] == manifests[1]["repeat"]["order_seed"]
    written = [
        [json.loads(x)["id"] for x in (r.out / "predictions.jsonl").read_text().splitlines()]
        for r in results
    ]
    assert sorted(written[0]) == sorted(written[1]) == order
    assert written[1] != written[0]  # the second repeat ran in another order
    again = run_passes(passes, backend_factory=factory, quiet=True)  # resumes: nothing to do
    assert [len(r.records) for r in again] == [N] * 3


def side(data: Path, out: Path, variant: str, flaky: set[str], k: int, temperature: float = 0.7):
    factory, _ = seeded_model(data, flaky)
    cfg = config(data, **{"engine.norm": variant, "sampling.temperature": temperature})
    run_passes(side_passes(cfg, out, k), backend_factory=factory, quiet=True)
    return out


def test_noise_floor_counts_the_flaky_samples_and_the_report_sets_ab_beside_aa(data, tmp_path):
    _, order = seeded_model(data, set())
    flaky = set(order[:4])
    a = side(data, tmp_path / "a-native", "native", flaky, 3)
    b = side(data, tmp_path / "b-native", "native", flaky, 3)
    result = compare_runs(a, b, tmp_path / "cmp", seed=1, n_resamples=200)
    table = pd.read_csv(tmp_path / "cmp" / "repeats.csv")
    overall = table[table["slice"] == "all"].iloc[0]
    assert (overall["k_a"], overall["k_b"], overall["n"]) == (3, 3, N)
    assert overall["flips_a"] == overall["flips_b"] == len(flaky)
    assert overall["aa_expected_discordant"] > 0
    assert 0 <= overall["p_sign_flip"] <= 1 and 0 <= overall["p_items"] <= 1
    assert overall["p_holm"] == overall["p_sign_flip"]  # overall: one test, unadjusted
    groups = table[table["slice"] == "group"]
    assert (groups["p_holm"] >= groups["p_sign_flip"] - 1e-12).all()
    assert result.headline.startswith("A/A control (native twice)")
    assert "screenshot sign-flip p" in result.headline and "item sign-flip p" in result.headline
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "With repeats" in md and "sign-flip randomisation test over screenshots" in md
    assert "at 80 % power" in md and "assumes normal approximation" in md


def test_a_true_difference_shows_against_the_noise_floor(data, tmp_path):
    a = side(data, tmp_path / "a", "native", set(), 2, temperature=0.0)
    samples = {s.id: s for s in load_release(data).samples}

    def always_right(cfg: RunConfig) -> ScriptedBackend:
        return ScriptedBackend(lambda r: box_answer(samples[r.sample_id], correct=True))

    cfg = config(data, **{"engine.norm": "native"})
    run_passes(side_passes(cfg, tmp_path / "b", 2), backend_factory=always_right, quiet=True)
    result = compare_runs(a, tmp_path / "b", tmp_path / "cmp", seed=1, n_resamples=200)
    overall = pd.read_csv(tmp_path / "cmp" / "repeats.csv").iloc[0]
    assert overall["delta_pp"] == pytest.approx(50.0)  # odd samples: wrong in A, right in B
    assert overall["flips_a"] == overall["flips_b"] == 0
    assert overall["ab_discordant"] == pytest.approx(N / 2)
    assert overall["p_sign_flip"] < 0.01
    assert "+50.0 pp" in result.headline


def test_a_broken_side_on_1581_samples_still_gets_a_p_value(tmp_path):
    # Issue 24: A right on 75 %, B never right -- about 1185 discordant pairs, all one way. The
    # float null distribution lost its tails and crashed from 1075; now every p is a number.
    root = tmp_path / "data"
    synthesize_release(root, 1581, seed=5, max_width=64)
    samples = {s.id: s for s in load_release(root).samples}
    order = sorted(samples)

    def model(right) -> object:
        return lambda cfg: ScriptedBackend(
            lambda r: box_answer(samples[r.sample_id], correct=right(order.index(r.sample_id)))
        )

    cfg = config(root, **{"engine.norm": "native"})
    for name, right in (("a", lambda i: i % 4 != 0), ("b", lambda i: False)):
        run_passes(side_passes(cfg, tmp_path / name, 2), backend_factory=model(right), quiet=True)
    result = compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "cmp", n_resamples=200)
    overall = pd.read_csv(tmp_path / "cmp" / "comparison.csv").iloc[0]
    assert overall["a_only"] == 1185 and overall["b_only"] == 0
    assert 0.0 <= overall["p"] < 1e-100 and 0.0 <= overall["p_mcnemar"] < 1e-300
    repeats = pd.read_csv(tmp_path / "cmp" / "repeats.csv").iloc[0]
    assert 0.0 <= repeats["p_sign_flip"] < 1e-100 and repeats["delta_pp"] < -74.9
    assert "screenshot sign-flip p < 0.001" in result.headline
