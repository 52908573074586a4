"""`parity` on the tiny model in fp32: pre and native give HF transformers' logprobs, post does not.

One command run (the HF reference once, one engine for pre and post, one for native), shared by
every assertion of this module.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def parity_run(tiny_model_dir: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("parity") / "tiny"
    args = ["parity", "--model", str(tiny_model_dir), "--data", str(synth_data)]
    proc = run_cli([*args, "--samples", "4", "--enforce-eager", "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (out / "parity.csv").open(newline="") as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    return out, proc, rows


def first_token_delta(rows: dict[str, dict[str, str]], variant: str) -> float:
    return float(rows[variant]["first_max_abs_delta"])


def test_pre_and_native_match_transformers_in_fp32(parity_run):
    _, _, rows = parity_run
    assert set(rows) == {"pre", "post", "native"}
    for variant in ("pre", "native"):
        assert first_token_delta(rows, variant) <= 1e-5, rows[variant]
        assert float(rows[variant]["max_abs_delta"]) <= 1e-5, rows[variant]
        assert float(rows[variant]["first_token_agreement"]) == 1.0
        assert int(rows[variant]["samples"]) == 4


def test_post_differs_at_least_ten_times_more(parity_run):
    _, _, rows = parity_run
    closest = max(first_token_delta(rows, "pre"), first_token_delta(rows, "native"))
    assert first_token_delta(rows, "post") >= 10 * max(closest, 1e-12)
    assert float(rows["post"]["mean_kl"]) > float(rows["pre"]["mean_kl"])


def test_the_verdict_names_pre(parity_run):
    out, proc, _ = parity_run
    md = (out / "parity.md").read_text()
    assert "**Verdict: pre and native are within the fp32 tolerance (1e-05" in md
    assert "closest to the HF reference: pre" in proc.stdout
    payload = json.loads((out / "parity.json").read_text())
    assert payload["closest"] == "pre" and payload["within_tolerance"] == ["pre", "native"]
    assert payload["tolerance"] == 1e-5 and not payload["switch_checks"]


def test_the_settings_are_recorded(parity_run):
    out, _, _ = parity_run
    payload = json.loads((out / "parity.json").read_text())
    settings = payload["settings"]
    assert settings["vllm_dtype"] == "float32" and settings["reference_dtype"] == "float32"
    assert settings["reference_device"] == "cpu" and settings["samples"] == 4
    assert settings["image_budget"] == 70 and settings["top_k"] == 10
    assert len(settings["sample_ids"]) == 4 and not settings["skipped"]
    reports = settings["engine_reports"]
    assert {v: r["config_variant"] for v, r in reports.items()} == {
        "pre": "pre",
        "post": "post",
        "native": "native",
    }
    assert any("switched in place" in note for note in settings["notes"])
    for line in ("- model:", "- vLLM dtype: `float32`", "- samples: `4`", "- top-k: `10`"):
        assert line in (out / "parity.md").read_text()
    positions = (out / "parity_positions.csv").read_text().splitlines()
    assert len(positions) - 1 == sum(int(n) for n in settings["answer_lengths"].values()) * 3
