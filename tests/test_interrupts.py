"""Interrupts and per-request engine failures in the real engine: nothing finished is lost.

Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM (to the run
process only, as `kill` does) end the run with exit code 130, the resume command, every finished
record on disk, and no engine process left behind. A sample the engine rejects is recorded as
``failed`` with the engine's error, counted apart from wrong answers, and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from cli_helpers import popen_cli, run_args, run_cli

from screenspot_eval.errors import EXIT_BACKEND_FAILURE

pytestmark = pytest.mark.engine


def group_processes(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def wait_for_records(proc, predictions: Path, n: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and len(predictions.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("the run ended before it could be interrupted")


@pytest.mark.parametrize("how", ["sigint-group", "sigterm-process"])
def test_interrupt_keeps_records_and_leaves_no_processes(
    how, tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    out = tmp_path / how
    proc = popen_cli(run_args(tiny_model_dir, synth_data, out))
    wait_for_records(proc, out / "predictions.jsonl", 3)
    if how == "sigint-group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "resume with: screenspot-eval run" in output
    deadline = time.monotonic() + 30
    while group_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not group_processes(proc.pid), "engine processes outlived the run"
    records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) >= 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["counts"]["recorded"] == len(records)


def test_a_sample_the_engine_rejects_is_recorded_as_failed(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    annotation = sorted((data / "annotations").glob("*.json"))[0]
    samples = json.loads(annotation.read_text())
    rejected = samples[0]["id"]
    samples[0]["instruction"] = "click the button " * 3000  # far beyond max_model_len 2048
    annotation.write_text(json.dumps(samples))
    out = tmp_path / "run"
    proc = run_cli(run_args(tiny_model_dir, data, out, "--limit", "12"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = {
        r["id"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
    }
    assert len(records) == 12
    bad = records[rejected]
    assert bad["outcome"] == "failed" and bad["raw_response"] is None
    assert "length" in bad["error"].lower() or "too long" in bad["error"].lower(), bad["error"]
    assert all(r["outcome"] != "failed" for i, r in records.items() if i != rejected)
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    overall = metrics[metrics["slice"] == "overall"].iloc[0]
    assert overall["failed"] == 1 and overall["wrong_format"] == 0 and overall["n"] == 12


def test_engine_core_killed_mid_run_then_resume(
    full_run, tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    out = tmp_path / "engine-died"
    args = run_args(tiny_model_dir, synth_data, out)
    proc = popen_cli([*args, "--engine-core", "process"])  # an engine-core process to kill
    wait_for_records(proc, out / "predictions.jsonl", 3)
    cores = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "EngineCore" in " ".join([*p.cmdline(), p.name()])
    ]
    assert cores, "no engine-core process found"
    for core in cores:
        core.kill()
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == EXIT_BACKEND_FAILURE, output[-3000:]
    assert "engine failed mid-run" in output or "engine died" in output, output[-3000:]
    assert "resume with:" in output
    kept = (out / "predictions.jsonl").read_text().splitlines()
    assert len(kept) >= 3
    resumed = run_cli(args)  # the engine core inline this time: placement is not an outcome
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    records = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records) == 48
    reference = {
        r["id"]: r["outcome"]
        for r in map(json.loads, (full_run[0] / "predictions.jsonl").read_text().splitlines())
    }
    assert {r["id"]: r["outcome"] for r in records} == reference


def test_sigint_right_after_the_last_record(tiny_model_dir: Path, synth_data: Path, tmp_path: Path):
    """Ctrl-C while the engine shuts down or the exports are written: the exports get written
    (exit 130, said so), or the interruption is recorded and the resume command printed."""
    out = tmp_path / "tail"
    proc = popen_cli(run_args(tiny_model_dir, synth_data, out, "--limit", "6"))
    wait_for_records(proc, out / "predictions.jsonl", 6)
    with contextlib.suppress(ProcessLookupError):  # already finished: nothing to interrupt
        os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert "Traceback" not in output, output[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    exports = [out / n for n in ("samples.csv", "metrics.csv", "summary.md")]
    if proc.returncode == 0:
        assert manifest["status"] == "complete" and all(p.is_file() for p in exports)
        return
    assert proc.returncode == 130, output[-3000:]
    if manifest["status"] == "complete":
        assert all(p.is_file() for p in exports), output[-3000:]
        assert "exports are written" in output
    else:
        assert manifest["status"] == "interrupted", manifest
        assert "resume with: screenspot-eval run" in output
        resumed = run_cli(run_args(tiny_model_dir, synth_data, out, "--limit", "6"))
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert all(p.is_file() for p in exports)
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
