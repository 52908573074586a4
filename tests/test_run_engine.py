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


def test_manifest_records_the_engine_provenance_read_in_the_workers(full_run):
    from importlib import metadata

    from screenspot_eval.backends.vllm.engine_args import is_vllm_cpu_build

    out, _ = full_run
    provenance = json.loads((out / "manifest.json").read_text())["engine_provenance"]
    assert provenance["dtype"] == "float32" and provenance["parameter_dtypes"] == ["float32"]
    assert provenance["batch_invariant"] is False
    assert provenance["batch_invariant_kernels"] is False  # vLLM's mode off in the worker
    distribution = "vllm-cpu" if is_vllm_cpu_build() else "vllm"
    assert provenance["vllm_distribution"] == distribution
    assert provenance["vllm_version"] == metadata.version(distribution)
    assert provenance["torch_version"].startswith(metadata.version("torch"))  # +cu130: build
    assert provenance["transformers_version"] == metadata.version("transformers")
    if is_vllm_cpu_build():
        assert provenance["vllm_build"] == "cpu"
        assert provenance["attention_backends"] == ["decoder:CPU_ATTN", "hf:Gemma4VisionModel:sdpa"]
    assert (provenance["max_num_seqs"], provenance["max_model_len"]) == (1, 2048)
    assert isinstance(provenance["chunked_prefill"], bool)
    assert isinstance(provenance["prefix_caching"], bool)
    assert provenance["compilation_mode"] and provenance["cudagraph_mode"]
    # the tests' engines run eager (cli_helpers.ENGINE_ARGS): read back from the engine
    assert provenance["enforce_eager"] is True and provenance["compilation_mode"] == "NONE"
    assert provenance["tensor_parallel_size"] == 1
    assert provenance["image_token_id"] == 7 and provenance["workers"] == 1
    if is_vllm_cpu_build():  # --engine-core auto: the worker ran in the run's own process
        assert (provenance["engine_core"], provenance["executor_backend"]) == ("inline", "uni")


def test_every_record_carries_the_soft_tokens_the_processor_gives(full_run):
    """Counted in the prompt the engine ran; 70 is the tiny checkpoint's budget (the sweep
    test shows the count growing with --max-soft-tokens)."""
    from screenspot_eval.adapters.gemma4 import gemma4_sent_size

    out, _ = full_run
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) == 48
    for record in records:
        sent_w, sent_h = gemma4_sent_size(*record["img_size"], 70)
        assert record["image_soft_tokens"] == (sent_w // 48) * (sent_h // 48), record["id"]
        assert record["schema_version"] == 4


def test_images_were_prepared_after_a_self_check_in_the_real_front_end(full_run):
    """Issue 16: before the first sample, every screenshot size was rendered through vLLM's own
    front end as the original and prepared, with identical pixel_values, positions and prompt
    tokens; then every image went prepared, with a uuid, through a full window."""
    out, _ = full_run
    session = json.loads((out / "manifest.json").read_text())["sessions"][-1]
    images = session["images"]
    assert images["input"] == "decoded" and images["uuids"] is True
    sizes = images["preparation"]["sizes"]
    assert sizes and images["preparation"]["budget"] == 70
    for size, plan in sizes.items():
        assert plan["path"] == "prepared", (size, plan)
        assert plan["self_check"] == "identical pixel_values, positions and prompt tokens"
    assert images["paths"] == {"prepared": 48}
    assert images["decode_s"] > 0 and images["prepare_s"] > 0
    frontend = session["frontend"]
    assert frontend["window"] == 2 and frontend["max_num_seqs"] == 1
    assert frontend["requests"] == 48 and frontend["enqueue_ms_per_request"] > 0
    assert frontend["steps_with_queued_work_share"] > 0.5  # a request waits behind the batch
    assert frontend["mm_processor_cache_gb"] == 0.029  # 16 images at 70 soft tokens
    assert frontend["mm_processor_cache_set_by"] == "default"


def test_metrics_csv_agrees_with_a_recount(full_run):
    out, _ = full_run
    records = pd.DataFrame(read_jsonl(out / "predictions.jsonl"))
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    overall = metrics[metrics["slice"] == "overall"].iloc[0]
    assert overall["n"] == len(records)
    assert overall["correct"] == (records["outcome"] == "correct").sum()
    applications = metrics[metrics["slice"] == "application"]
    assert set(applications["value"]) == set(records["application"])  # every one, none empty
    assert applications["n"].sum() == len(records) == 48
    for _, row in applications.iterrows():
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

    # The resume takes the path from before issue 16 (original images, pixels hashed): the
    # outcomes below must still equal the uninterrupted run's, whose images were prepared.
    resumed = run_cli([*args, "--image-prep", "off", "--no-image-uuids"])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    records = read_jsonl(predictions)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 48
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2
    assert manifest["sessions"][1]["images"]["paths"] == {"original": 48 - len(partial)}
    assert manifest["sessions"][1]["images"]["uuids"] is False
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
