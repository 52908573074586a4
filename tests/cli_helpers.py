"""Run the installed console script in a subprocess, as users do (the plugin loads by entry point)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def cli_command() -> list[str]:
    exe = shutil.which("screenspot-eval", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "screenspot_eval"]


def cli_env(update: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the default multiprocess engine
    env.update(update or {})
    return env


def run_cli(
    args: list[str], env_update: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args],
        capture_output=True,
        text=True,
        env=cli_env(env_update),
        timeout=timeout,
        check=False,
    )


def popen_cli(args: list[str], env_update: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the CLI in its own process group (so a test can kill the whole tree)."""
    return subprocess.Popen(
        [*cli_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(env_update),
        start_new_session=True,
    )


#: Deterministic engine settings for tests: fp32, and one sequence at a time, so outcomes do
#: not depend on batch composition (interrupted, resumed and served runs must agree).
COMPILED_ENGINE_ARGS = ["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "1"]
#: The same, eager: no torch.compile of the tiny model at every engine start (20-30 s each on
#: 2 cores, more with a cold compile cache). vLLM's compiled path, the default, is covered by
#: tests/test_compare_engine.py (one switched engine against two) and by `make demo`.
ENGINE_ARGS = [*COMPILED_ENGINE_ARGS, "--enforce-eager"]
DECODING_ARGS = ["--structured", "--max-tokens", "48", "--quiet"]


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--model",
        str(model),
        "--norm",
        "pre",
        "--data",
        str(data),
        "--out",
        str(out),
        *ENGINE_ARGS,
        *DECODING_ARGS,
        *extra,
    ]
