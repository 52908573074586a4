"""Shared fixtures: the tiny Gemma 4 checkpoint and an offline, loopback-only vLLM setup."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# What the test machine needs and the product leaves to its user: no model hub (the tiny
# checkpoints are local), and no tokenizers thread pool (forked test processes warn about it).
# What every engine needs (loopback, a small KV cache on CPU, the probes' serialisation) the
# product sets itself (backends/vllm/process_state.py); the tests check that it does.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Ctrl-C as a terminal delivers it, however the suite was started: a shell that runs it in the
# background (`cmd &`, nohup) starts it with SIGINT ignored, which every child would inherit, and
# the interrupt tests would see no interrupt at all.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Gemma 4 checkpoint, built once per test session (about 5 s)."""
    from screenspot_eval.backends.vllm.tiny import build_tiny_gemma4

    return build_tiny_gemma4(tmp_path_factory.mktemp("tiny-gemma4"))


@pytest.fixture(scope="session")
def tiny_qwen_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen2.5-VL twin (published image budget), built once per test session."""
    from screenspot_eval.backends.vllm.tiny_qwen import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"), "qwen2.5-vl")


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48-sample synthetic release in the official layout, small screenshots, large targets
    (so the random tiny model hits some and the variants can flip)."""
    from screenspot_eval.data.synth import synthesize_release

    root = tmp_path_factory.mktemp("synth")
    synthesize_release(root, 48, seed=1, max_width=640, target_scale=8.0)
    return root


@pytest.fixture(scope="session")
def full_run(tiny_model_dir: Path, synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted in-process `run` (pre, fp32, greedy, structured): the reference that
    resume, server and fault tests compare their outcomes with."""
    from cli_helpers import run_args, run_cli

    out = tmp_path_factory.mktemp("run") / "pre"
    proc = run_cli(run_args(tiny_model_dir, synth_data, out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


#: The README's `verify-embedder` command, as the README shows it (plus where to write JSON).
VERIFY_COMMAND = ["verify-embedder", "--model", "{model}"]


@pytest.fixture(scope="session")
def verified_embedder(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`verify-embedder` on the tiny model, all three variants (three engines), run once for the
    variant tests and the README test."""
    import json

    from cli_helpers import run_cli

    out = tmp_path_factory.mktemp("verify") / "checks.json"
    args = [a.format(model=tiny_model_dir) for a in VERIFY_COMMAND]
    args.append("--enforce-eager")  # CPU-sized, as the README test rewrites engine commands
    proc = run_cli([*args, "--json", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checks = {c["requested"]: c for c in json.loads(out.read_text())}
    return proc, checks


@pytest.fixture(scope="session")
def family_twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family's twin, built by the CLI as a user would (a few seconds in all)."""
    from cli_helpers import run_cli

    from screenspot_eval.backends.vllm.families import FAMILIES

    root = tmp_path_factory.mktemp("twins")
    built = {}
    for name in FAMILIES:
        proc = run_cli(["tiny-model", str(root / name), "--family", name])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        built[name] = root / name
    return built


@pytest.fixture(scope="session")
def family_study(family_twins, synth_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One `study` over the family twins, stopped in its second cell and resumed
    (tests/study_helpers.py); its cells are the family engine tests' compares."""
    from study_helpers import run_family_study

    return run_family_study(family_twins, synth_data, tmp_path_factory.mktemp("family-study"))
