"""Thin model commands: CliRunner tests of the exact engine settings they produce."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from screenspot_eval import __version__
from screenspot_eval.backends.vllm.engine_args import EngineSettings, llm_kwargs
from screenspot_eval.cli.app import app

runner = CliRunner()


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout
    for command in (["--help"], ["tiny-model", "--help"], ["verify-embedder", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_verify_embedder_passes_exact_engine_settings(monkeypatch):
    seen: dict = {}

    def fake_verify(base: EngineSettings, variants, on_result=None, **logging):
        seen["base"], seen["variants"] = base, list(variants)
        return []

    monkeypatch.setattr("screenspot_eval.backends.vllm.verify.verify_variants", fake_verify)
    result = runner.invoke(
        app,
        [
            "verify-embedder",
            "--model", "some/model",
            "--norm", "post", "--norm", "pre",
            "--dtype", "float32",
            "--max-model-len", "4096",
            "--enforce-eager",
            "--engine-arg", "swap_space=0",
            "--engine-arg", 'mm_processor_kwargs={"max_soft_tokens": 560}',
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["variants"] == ["post", "pre"]
    assert llm_kwargs(seen["base"]) == {
        "model": "some/model",
        "dtype": "float32",
        "seed": 0,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": True,
        "limit_mm_per_prompt": {"image": 1, "audio": 0},
        "max_model_len": 4096,
        "mm_processor_kwargs": {"max_soft_tokens": 560},
        "swap_space": 0,
        "mm_processor_cache_gb": 0.232,  # default: 16 images at the budget
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--norm", "middle"], "unknown variant"),
        (["--engine-arg", "novalue"], "--engine-arg must be KEY=VALUE"),
    ],
)
def test_verify_embedder_rejects_bad_options(args, message):
    result = runner.invoke(app, ["verify-embedder", "--model", "m", *args])
    assert result.exit_code == 2
    assert message in result.output
