"""The tiny model on a vLLM whose ``LLM`` lacks ``enqueue_chat`` (as 0.20 / 0.21 do): the run
stops early with a non-zero exit naming the error, never exit 0 with every sample failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_args
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.errors import EXIT_BACKEND_FAILURE
from screenspot_eval.run.guard import SAME_ERROR_STREAK


@pytest.mark.engine
def test_a_vllm_without_enqueue_chat_stops_the_run(
    tiny_model_dir: Path, synth_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vllm.entrypoints.llm import LLM

    monkeypatch.delattr(LLM, "enqueue_chat")
    out = tmp_path / "no-enqueue-chat"
    args = run_args(tiny_model_dir, synth_data, out, "--limit", "12", "--quiet")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_BACKEND_FAILURE, result.output
    assert f"the same error on {SAME_ERROR_STREAK} samples in a row" in result.output
    assert "AttributeError" in result.output and "enqueue_chat" in result.output
    assert str(out / "vllm.log") in result.output
    assert len((out / "predictions.jsonl").read_text().splitlines()) == SAME_ERROR_STREAK
