"""`sweep` in the real engine (tiny model, CPU): budgets 70, 280, 1120 x variants post, pre.

One engine serves all six cells (started at 1120, the budget applied per request, pre/post
switched in place). A cell equals a plain `run` whose engine was started at that budget; the
soft tokens per image grow with the budget and are what the processor's size rule gives; a
rerun resumes without loading the model or recomputing a cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import DECODING_ARGS, ENGINE_ARGS, run_args, run_cli

from screenspot_eval.adapters.gemma4 import gemma4_sent_size

pytestmark = pytest.mark.engine

BUDGETS = (70, 280, 1120)


def sweep_args(model: Path, data: Path, out: Path) -> list[str]:
    return [
        "sweep", "--model", str(model), "--data", str(data), "--out", str(out),
        "--budgets", ",".join(map(str, BUDGETS)), "--variants", "post,pre",
        *ENGINE_ARGS, *DECODING_ARGS,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tiny_model_dir, synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    first = run_cli(sweep_args(tiny_model_dir, synth_data, out), timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = {p: p.read_bytes() for p in sorted(out.glob("*/*/predictions.jsonl"))}
    again = run_cli(sweep_args(tiny_model_dir, synth_data, out), timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = {p: p.read_bytes() for p in sorted(out.glob("*/*/predictions.jsonl"))}
    return out, first, again, before, after


def records(run_dir: Path) -> dict[str, dict]:
    lines = (run_dir / "predictions.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_every_output_is_written_from_one_model_load(swept):
    out, first, *_ = swept
    for name in ("sweep.csv", "sweep_deltas.csv", "sweep.md", "accuracy_vs_budget.png"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "sweep.csv")
    assert sorted(zip(table["budget"], table["variant"], strict=True)) == sorted(
        (b, v) for b in BUDGETS for v in ("post", "pre")
    )
    assert (table["n"] == 48).all()
    assert "model loads: 1" in first.stdout
    assert "interaction" in first.stdout


def test_soft_tokens_grow_with_the_budget_and_match_the_processor(swept, synth_data):
    out, *_ = swept
    table = pd.read_csv(out / "sweep.csv")
    pre = table[table["variant"] == "pre"].sort_values("budget")
    tokens = list(pre["soft_tokens_per_image"])
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1], tokens
    for budget in BUDGETS:
        cell = records(out / str(budget) / "pre")
        assert len(cell) == 48, budget
        for record in cell.values():
            w, h = record["img_size"]
            sent_w, sent_h = gemma4_sent_size(w, h, budget)
            assert record["image_soft_tokens"] == (sent_w // 48) * (sent_h // 48), (budget, record)


def test_a_rerun_resumes_without_a_model_load_or_a_recomputed_cell(swept):
    _, _, again, before, after = swept
    assert "model loads: 0" in again.stdout and "cells already finished: 6" in again.stdout
    assert len(before) == 6 and before == after  # not one record written again


def test_a_cell_equals_a_run_whose_engine_was_started_at_that_budget(
    swept, full_run, tiny_model_dir, synth_data, tmp_path
):
    """70: the tiny checkpoint's own budget (full_run); 280: an engine started at 280. The
    sweep's engine was started at 1120 and applied both per request."""
    out, *_ = swept
    plain = tmp_path / "at-280"
    proc = run_cli(run_args(tiny_model_dir, synth_data, plain, "--max-soft-tokens", "280"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for budget, reference in ((70, full_run[0]), (280, plain)):
        cell, ref = records(out / str(budget) / "pre"), records(reference)
        assert len(ref) == 48 and set(cell) == set(ref), budget
        for sample_id, record in cell.items():
            assert (record["outcome"], record["raw_response"]) == (
                ref[sample_id]["outcome"],
                ref[sample_id]["raw_response"],
            ), (budget, sample_id)
