"""An installed vLLM outside the supported range is refused in one line before any engine
starts; ``--allow-untested-vllm`` runs anyway and is recorded with the engine settings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from screenspot_eval.backends.vllm import compat
from screenspot_eval.backends.vllm.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.cli.app import app
from screenspot_eval.errors import EXIT_USER_ERROR


@pytest.mark.parametrize("command", ["run", "compare", "serve", "verify-embedder"])
def test_an_unsupported_vllm_is_refused_in_one_line(command, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(compat, "installed_vllm", lambda: "0.21.0")
    args = [command, "--model", str(tmp_path / "none")]
    if command in ("run", "compare"):  # refused before the (missing) data is looked at
        args += ["--out", str(tmp_path / "out"), "--data", str(tmp_path / "data")]
    if command == "compare":
        args += ["--a", "pre", "--b", "post"]
    result = CliRunner().invoke(app, args)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert errors == [
        "error: vLLM 0.21.0 is installed; supported: >= 0.22.0, <= 0.34.x (pip install "
        "'vllm>=0.22.0,<0.35'), or pass --allow-untested-vllm to run anyway (recorded in the "
        "manifest)"
    ]


def test_allow_untested_vllm_passes_and_is_recorded(monkeypatch) -> None:
    monkeypatch.setattr(compat, "installed_vllm", lambda: "0.35.0")
    assert compat.require_supported_vllm(allow_untested=True) == "0.35.0"
    result = CliRunner().invoke(
        app, ["run", "--model", "m", "--allow-untested-vllm", "--print-config"]
    )
    shown = json.loads(result.stdout)
    assert shown["config"]["engine"]["allow_untested_vllm"] is True
    assert "allow_untested_vllm" not in shown["llm_kwargs"]
    assert "allow_untested_vllm" not in EngineSettings(model="m").model_dump(mode="json")
    assert "allow_untested_vllm" not in llm_kwargs(
        EngineSettings(model="m", allow_untested_vllm=True)
    )
