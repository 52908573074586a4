"""Whatever fails while the engine starts, loads, probes or checks itself: exit 4, one line
naming the stage and vLLM's log, never a traceback. Each stage is broken on purpose.

The engine core runs inline on CPU (the tool's default), so a function replaced in the CLI's own
process is the one the engine calls: the CLI runs under a small wrapper that breaks one function
by its dotted path, then calls the real entry point.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import DECODING_ARGS, ENGINE_ARGS, cli_env, run_args, run_cli

from screenspot_eval.errors import EXIT_BACKEND_FAILURE

pytestmark = pytest.mark.engine

BREAK_AND_RUN = """
import importlib, sys
path, name = sys.argv[1].rsplit(".", 1)
try:
    owner = importlib.import_module(path)
except ImportError:
    module, attr = path.rsplit(".", 1)
    owner = getattr(importlib.import_module(module), attr)
def broken(*args, **kwargs):
    raise RuntimeError("broken on purpose")
setattr(owner, name, broken)
from screenspot_eval.cli.app import main
sys.argv = ["screenspot-eval", *sys.argv[2:]]
main()
"""


def run_broken(target: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BREAK_AND_RUN, target, *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
        check=False,
    )


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], stage: str, log: Path):
    output = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_BACKEND_FAILURE, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"vLLM failed while {stage}" in line and str(log) in line, line
    assert "broken on purpose" in log.read_text(errors="replace")  # the traceback went there


def test_a_checkpoint_that_does_not_load(tiny_model_dir: Path, synth_data: Path, tmp_path: Path):
    model = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated download
    out = tmp_path / "run"
    proc = run_cli(run_args(model, synth_data, out, "--limit", "2"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_BACKEND_FAILURE, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "vLLM failed while starting the engine and loading the model" in proc.stderr
    assert str(out / "vllm.log") in proc.stderr


@pytest.mark.parametrize(
    ("target", "stage"),
    [
        ("screenspot_eval.backends.vllm.probe.embedder_report", "probing the embedder"),
        ("screenspot_eval.backends.vllm.provenance.worker_provenance", "reading the engine"),
    ],
)
def test_a_stage_after_the_load_fails(target, stage, tiny_model_dir, synth_data, tmp_path):
    out = tmp_path / "run"
    proc = run_broken(target, run_args(tiny_model_dir, synth_data, out, "--limit", "2"))
    assert_one_line_failure(proc, stage, out / "vllm.log")


def test_the_probe_image_fails_in_verify_embedder(tiny_model_dir: Path, tmp_path: Path):
    log = tmp_path / "verify.log"
    args = ["verify-embedder", "--model", str(tiny_model_dir), "--norm", "pre", *ENGINE_ARGS]
    proc = run_broken("vllm.LLM.chat", [*args, "--log", str(log)])
    assert_one_line_failure(proc, "running the probe image through the model", log)


def test_the_in_place_switch_failing_falls_back_to_two_engines(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path
):
    """A switch that cannot run is not a crash: compare says so and loads the model twice."""
    out = tmp_path / "ab"
    args = [
        "compare", "--model", str(tiny_model_dir), "--a", "post", "--b", "pre",
        "--data", str(synth_data), "--limit", "2", "--out", str(out), *ENGINE_ARGS, *DECODING_ARGS,
    ]  # fmt: skip
    proc = run_broken("screenspot_eval.backends.vllm.probe.set_embedder_placement", args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert "switching the embedder" in output and "two engines" in output, output[-3000:]
