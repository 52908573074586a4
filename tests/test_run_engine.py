"""`screenspot-eval run` end to end in the real vLLM engine: files, recount, kill and resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import popen_cli, run_args, run_cli

from screenspot_eval.errors import EXIT_USER_ERROR

pytestmark = pytest.mark.engine

EXPORTS = (
    "predictions.jsonl",
    "manifest.json",
    "samples.csv",
    "metrics.csv",
    "screenspot_pro_results.json",
    "summary.md",
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_writes_every_file(full_run):
    out, proc = full_run
    for name in EXPORTS:
        assert (out / name).is_file(), name
    assert "| group |" in proc.stdout  # the final leaderboard table


def test_every_sample_recorded_once_with_engine_variant(full_run, synth_data: Path):
    out, _ = full_run
    records = read_jsonl(out / "predictions.jsonl")
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 48
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["requested_variant"] == "pre"
    assert manifest["effective_variant"] == "pre"
    assert manifest["engine_report"]["config_variant"] == "pre"
    assert manifest["counts"]["selected"] == 48 and manifest["counts"]["missing"] == 0
    assert manifest["dataset"]["content_hash"] and manifest["prompt_hash"]
    assert manifest["environment"]["packages"]["transformers"]
    assert {r["variant"] for r in records} == {"pre"}
    # structured decoding: every answer parses into a click
    assert all(r["parse_status"] == "parsed" for r in records)


def test_metrics_csv_agrees_with_a_recount(full_run):
    out, _ = full_run
    records = pd.DataFrame(read_jsonl(out / "predictions.jsonl"))
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    overall = metrics[metrics["slice"] == "overall"].iloc[0]
    assert overall["n"] == len(records)
    assert overall["correct"] == (records["outcome"] == "correct").sum()
    for _, row in metrics[metrics["slice"] == "application"].iterrows():
        mine = records[records["application"] == row["value"]]
        assert row["n"] == len(mine)
        assert row["correct"] == (mine["outcome"] == "correct").sum()
        assert row["wrong_format"] == (mine["outcome"] == "wrong_format").sum()
    samples = pd.read_csv(out / "samples.csv")
    assert list(samples["id"]) == list(records["id"])
    official = json.loads((out / "screenspot_pro_results.json").read_text())
    assert official["metrics"]["overall"]["num_total"] == len(records)


def test_report_regenerates_the_exports(full_run):
    out, _ = full_run
    before = (out / "metrics.csv").read_text()
    (out / "metrics.csv").unlink()
    proc = run_cli(["report", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert (out / "metrics.csv").read_text() == before


def test_sigkill_then_resume_equals_uninterrupted_run(
    full_run, tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    out = tmp_path / "killed"
    args = run_args(tiny_model_dir, synth_data, out)
    proc = popen_cli(args)
    predictions = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and len(predictions.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # simulate a write cut off mid-line by the kill
    with predictions.open("a") as handle:
        handle.write('{"schema_version": 1, "id": "half')
    partial = read_jsonl_lenient(predictions)
    assert 5 <= len(partial) < 48

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    records = read_jsonl(predictions)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 48
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2
    assert manifest["sessions"][1]["repaired"]["truncated_bytes"] > 0
    reference = {r["id"]: r for r in read_jsonl(full_run[0] / "predictions.jsonl")}
    for record in records:
        ref = reference[record["id"]]
        assert (record["outcome"], record["raw_response"]) == (ref["outcome"], ref["raw_response"])


def read_jsonl_lenient(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def test_changed_configuration_refuses_to_resume(full_run, tiny_model_dir, synth_data):
    out, _ = full_run
    before = (out / "predictions.jsonl").read_text()
    proc = run_cli(run_args(tiny_model_dir, synth_data, out, "--prompt", "gemma4-point2d"))
    assert proc.returncode == EXIT_USER_ERROR
    assert "different configuration" in proc.stderr
    assert "prompt.template" in proc.stderr and "--restart" in proc.stderr
    assert (out / "predictions.jsonl").read_text() == before
