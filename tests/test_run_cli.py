"""`screenspot-eval run --print-config`: the exact vLLM arguments that options and config give.

In-process through Typer's ``CliRunner``; ``--print-config`` resolves and exits before any data
is read or engine started, so no vLLM import happens here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.errors import EXIT_USER_ERROR

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIMIT_MM = {"image": 1, "audio": 0}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    # SCREENSPOT_API_KEY from the environment must not leak into the resolved config
    return runner.invoke(app, list(args), env={"SCREENSPOT_API_KEY": None, "COLUMNS": "200"})


def printed(runner: CliRunner, *args: str) -> dict[str, Any]:
    result = invoke(runner, "run", *args, "--print-config")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


# --- (a) plain options -----------------------------------------------------------------------


def test_plain_options_give_exact_llm_kwargs(runner):
    shown = printed(
        runner,
        "--model",
        "m",
        "--norm",
        "post",
        "--max-soft-tokens",
        "280",
        "--tp",
        "2",
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.8",
        "--enforce-eager",
        "--out",
        "x",
    )
    assert set(shown) == {"config", "prompt", "llm_kwargs"}
    assert shown["llm_kwargs"] == {
        "model": "m",
        "dtype": "auto",
        "seed": 0,
        "tensor_parallel_size": 2,
        "data_parallel_size": 1,
        "enforce_eager": True,
        "limit_mm_per_prompt": DEFAULT_LIMIT_MM,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.8,
        "mm_processor_kwargs": {"max_soft_tokens": 280},
        "hf_overrides": {"screenspot_embedder_norm": "post"},
        "mm_processor_cache_gb": 0.116,  # default: 16 images at the budget
    }
    config = shown["config"]
    assert config["out"] == "x"
    assert config["engine"]["norm"] == "post"
    assert config["engine"]["max_soft_tokens"] == 280
    assert config["engine"]["extra"] == {}


def test_minimal_options_give_defaults(runner):
    shown = printed(runner, "--model", "m")
    assert shown["llm_kwargs"] == {
        "model": "m",
        "dtype": "auto",
        "seed": 0,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": False,
        "limit_mm_per_prompt": DEFAULT_LIMIT_MM,
        "mm_processor_cache_gb": 0.464,  # default: 16 images at the budget
    }
    config = shown["config"]
    assert config["engine"]["norm"] == "native"
    assert config["data"]["source"] == "likaixin/ScreenSpot-Pro"
    assert config["prompt"] == {
        "template": "gemma4-box2d",
        "convention": None,
        "protocol": "one-shot",
    }
    assert config["out"] is None


# --- (b) native ----------------------------------------------------------------------------


def test_native_norm_adds_no_hf_overrides(runner):
    shown = printed(runner, "--model", "m", "--norm", "native", "--max-soft-tokens", "560")
    assert "hf_overrides" not in shown["llm_kwargs"]
    assert shown["llm_kwargs"]["mm_processor_kwargs"] == {"max_soft_tokens": 560}


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_plugin_norms_travel_in_hf_overrides(runner, norm):
    shown = printed(runner, "--model", "m", "--norm", norm)
    assert shown["llm_kwargs"]["hf_overrides"] == {"screenspot_embedder_norm": norm}


# --- (c) config file + overrides -----------------------------------------------------------

CONFIG_TOML = """
out = "results/from-file"

[engine]
model = "file/model"
norm = "pre"
dtype = "float32"
max_model_len = 2048
max_num_seqs = 8
max_soft_tokens = 70
seed = 3

[data]
source = "data/from-file"
strict = false

[data.selection]
groups = ["CAD", "Dev"]
limit = 50
language = "cn"

[prompt]
template = "point-xy-1000"

[sampling]
temperature = 0.5
max_tokens = 48
structured = true
"""


def test_config_file_with_cli_overrides_cli_wins(runner, tmp_path):
    file = tmp_path / "run.toml"
    file.write_text(CONFIG_TOML, encoding="utf-8")
    shown = printed(
        runner,
        "--config",
        str(file),
        "--norm",
        "post",
        "--max-model-len",
        "4096",
        "--limit",
        "5",
        "--group",
        "OS",
        "--max-tokens",
        "32",
        "--data",
        "data/from-cli",
        "--out",
        "results/from-cli",
    )
    assert shown["llm_kwargs"] == {
        "model": "file/model",
        "dtype": "float32",
        "seed": 3,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": False,
        "limit_mm_per_prompt": DEFAULT_LIMIT_MM,
        "max_model_len": 4096,  # CLI
        "max_num_seqs": 8,
        "mm_processor_kwargs": {"max_soft_tokens": 70},
        "hf_overrides": {"screenspot_embedder_norm": "post"},  # CLI
        "mm_processor_cache_gb": 0.029,  # default: 16 images at the budget
    }
    config = shown["config"]
    assert config["out"] == "results/from-cli"
    assert config["data"] == {
        "source": "data/from-cli",  # CLI
        "revision": None,
        "layout": "screenspot-pro",
        "strict": False,  # file
        "check_images": True,
        "selection": {
            "groups": ["OS"],  # CLI lists replace the file's
            "applications": None,
            "platforms": None,
            "ui_types": None,
            "ids": None,
            "limit": 5,  # CLI
            "language": "cn",  # file
        },
    }
    assert config["prompt"] == {
        "template": "point-xy-1000",
        "convention": None,
        "protocol": "one-shot",
    }
    assert config["sampling"] == {
        "temperature": 0.5,
        "top_p": 1.0,
        "max_tokens": 32,  # CLI
        "seed": 0,
        "structured": True,
    }


def test_seed_option_sets_engine_and_sampling_seed(runner, tmp_path):
    file = tmp_path / "run.toml"
    file.write_text(CONFIG_TOML, encoding="utf-8")
    shown = printed(runner, "--config", str(file), "--seed", "7", "--lenient", "--no-structured")
    assert shown["llm_kwargs"]["seed"] == 7
    assert shown["config"]["sampling"]["seed"] == 7
    assert shown["config"]["sampling"]["structured"] is False
    assert shown["config"]["data"]["strict"] is False


def test_missing_and_invalid_config_files_are_clean_errors(runner, tmp_path):
    missing = invoke(runner, "run", "--config", str(tmp_path / "nope.toml"), "--print-config")
    assert missing.exit_code == 2
    assert "not found" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\nmodel = 'm'\n")
    bad = invoke(runner, "run", "--config", str(broken), "--print-config")
    assert bad.exit_code == 2
    assert "not valid TOML" in bad.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[engine]\nmodel = 'm'\nmax_soft_token = 70\n")
    typo = invoke(runner, "run", "--config", str(unknown), "--print-config")
    assert typo.exit_code == 2
    assert "engine.max_soft_token" in typo.stderr
    assert "Extra inputs are not permitted" in typo.stderr


# --- (d) --engine-arg ----------------------------------------------------------------------


def test_engine_args_extra_and_known_fields(runner):
    shown = printed(
        runner,
        "--model",
        "m",
        "--engine-arg",
        "kv_cache_dtype=fp8",
        "--engine-arg",
        'limit_mm_per_prompt={"image": 2}',
    )
    assert shown["llm_kwargs"] == {
        "model": "m",
        "dtype": "auto",
        "seed": 0,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": False,
        # the given dict replaces the default one (audio: 0 is not kept)
        "limit_mm_per_prompt": {"image": 2},
        "kv_cache_dtype": "fp8",
        "mm_processor_cache_gb": 0.464,  # default: 16 images at the budget
    }
    assert shown["config"]["engine"]["extra"] == {"kv_cache_dtype": "fp8"}
    assert shown["config"]["engine"]["limit_mm_per_prompt"] == {"image": 2}


def test_engine_arg_values_are_json_when_they_can_be(runner):
    shown = printed(
        runner,
        "--model",
        "m",
        "--norm",
        "pre",
        "--engine-arg",
        "enable-prefix-caching=false",
        "--engine-arg",
        "swap_space=4",
        "--engine-arg",
        'hf_overrides={"foo": 1}',
        "--engine-arg",
        'mm_processor_kwargs={"do_pan_and_scan": true}',
        "--max-soft-tokens",
        "140",
    )
    kwargs = shown["llm_kwargs"]
    assert kwargs["enable_prefix_caching"] is False  # dashes become underscores
    assert kwargs["swap_space"] == 4
    assert kwargs["hf_overrides"] == {"foo": 1, "screenspot_embedder_norm": "pre"}
    assert kwargs["mm_processor_kwargs"] == {"do_pan_and_scan": True, "max_soft_tokens": 140}


def test_engine_arg_without_equals_is_a_usage_error(runner):
    result = invoke(runner, "run", "--model", "m", "--engine-arg", "bogus", "--print-config")
    assert result.exit_code == 2
    assert "--engine-arg must be KEY=VALUE" in result.output
    assert "bogus" in result.output


# --- (e) invalid values --------------------------------------------------------------------


def test_invalid_image_budget_is_a_clean_usage_error(runner):
    result = invoke(runner, "run", "--model", "m", "--max-soft-tokens", "100", "--print-config")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2
    assert "max_soft_tokens must be one of (70, 140, 280, 560, 1120)" in result.stderr


def test_engine_arg_clashing_with_an_option_is_refused(runner):
    result = invoke(
        runner,
        "run",
        "--model",
        "m",
        "--max-model-len",
        "4096",
        "--engine-arg",
        "max_model_len=2048",
        "--print-config",
    )
    assert result.exit_code != 0
    assert "max_model_len" in result.output


def test_config_extra_naming_a_setting_sets_it_and_clashing_is_a_clean_error(runner, tmp_path):
    """``[engine.extra]`` reads keys as ``--engine-arg`` does: a key naming one of our engine
    settings sets it; the same setting also in ``[engine]`` is given twice."""
    file = tmp_path / "extra.toml"
    file.write_text("[engine]\nmodel = 'm'\n[engine.extra]\nmax-model-len = 2048\n")
    shown = invoke(runner, "run", "--config", str(file), "--print-config")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["config"]["engine"]["max_model_len"] == 2048
    file.write_text(
        "[engine]\nmodel = 'm'\nmax_model_len = 1024\n[engine.extra]\nmax_model_len = 2048\n"
    )
    result = invoke(runner, "run", "--config", str(file), "--print-config")
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2
    assert "given twice" in result.stderr


def test_unknown_norm_is_a_clean_config_error(runner):
    result = invoke(runner, "run", "--model", "m", "--norm", "sideways", "--print-config")
    assert result.exit_code == 2
    assert "engine.norm" in result.stderr
    assert "'pre', 'post' or 'native'" in result.stderr


# --- (f) no model --------------------------------------------------------------------------


def test_no_model_is_exit_2_with_a_message(runner):
    result = invoke(runner, "run", "--print-config")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: no model given: pass --model or set engine.model in the config"
    )
    assert result.stdout == ""


def test_no_model_without_print_config_is_refused_before_any_work(runner, tmp_path):
    result = invoke(runner, "run", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "no model given" in result.stderr
    assert not (tmp_path / "out").exists()


def test_no_out_folder_is_refused(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, "run", "--model", "m")
    assert result.exit_code == 2
    assert "no results folder" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- (g) endpoints and secrets -------------------------------------------------------------


def test_endpoints_repeatable_and_comma_separated(runner):
    shown = printed(
        runner,
        "--model",
        "m",
        "--adapter",
        "gemma4",
        "--endpoint",
        "http://a:8000,http://b:8000",
        "--endpoint",
        "c",
    )
    assert shown["config"]["runtime"]["endpoints"] == ["http://a:8000", "http://b:8000", "c"]


def test_against_servers_only_the_client_engine_settings_are_recorded(runner, tmp_path):
    """vLLM's settings are the server's when a run goes to servers: the config shows only what
    this side decides, names the rest as unused, and no vLLM arguments are built (even a
    config file written for in-process runs serves)."""
    file = tmp_path / "gpu.toml"
    file.write_text('[engine]\nmodel = "m"\ndtype = "bfloat16"\nmax_model_len = 8192\n')
    shown = printed(
        runner,
        "--config",
        str(file),
        "--endpoint",
        "http://a:8000",
        "--adapter",
        "gemma4",
        "--max-soft-tokens",
        "560",
        "--norm",
        "post",
        "--enforce-eager",
    )
    engine = shown["config"]["engine"]
    assert engine == {
        "model": "m",
        "norm": "post",
        "adapter": "gemma4",
        "preset": None,
        "revision": None,
        "max_soft_tokens": 560,
    }
    assert shown["not_used_against_servers"] == ["dtype", "enforce_eager", "max_model_len"]
    assert "llm_kwargs" not in shown
    in_process = printed(runner, "--config", str(file))
    assert in_process["config"]["engine"]["dtype"] == "bfloat16"
    assert in_process["llm_kwargs"]["max_model_len"] == 8192


def test_api_key_is_never_printed(runner):
    result = invoke(runner, "run", "--model", "m", "--api-key", "s3cret-key", "--print-config")
    assert result.exit_code == 0
    assert "s3cret-key" not in result.output
    assert "api_key" not in json.loads(result.stdout)["config"]["runtime"]


# --- (h) shipped config --------------------------------------------------------------------


def test_tiny_cpu_config_loads(runner):
    shown = printed(runner, "--config", str(REPO / "configs" / "tiny-cpu.toml"))
    assert shown["llm_kwargs"] == {
        "model": "models/tiny-gemma4",
        "dtype": "float32",
        "seed": 0,
        "tensor_parallel_size": 1,
        "data_parallel_size": 1,
        "enforce_eager": False,
        "limit_mm_per_prompt": DEFAULT_LIMIT_MM,
        "max_model_len": 2048,
        "max_num_seqs": 8,
        "mm_processor_kwargs": {"max_soft_tokens": 70},
        "hf_overrides": {"screenspot_embedder_norm": "pre"},
        "mm_processor_cache_gb": 0.029,  # default: 16 images at the budget
    }
    config = shown["config"]
    assert config["out"] == "results/demo"
    assert config["data"]["source"] == "data/synth-demo"
    assert config["prompt"]["template"] == "gemma4-box2d"
    assert config["sampling"]["structured"] is True
    assert config["sampling"]["max_tokens"] == 48


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [("run", "--print-config"), ("report", "Regenerate samples.csv")],
)
def test_help_exits_zero(runner, command, expected):
    result = invoke(runner, command, "--help")
    assert result.exit_code == 0, result.output
    assert expected in result.output


def test_report_on_a_folder_without_manifest_is_a_clean_error(runner, tmp_path):
    result = invoke(runner, "report", str(tmp_path))
    assert result.exit_code == EXIT_USER_ERROR
    assert "has no manifest.json" in result.stderr


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_resolves(runner, path):
    """Each config in configs/ loads through the one config path, its model and output named."""
    shown = printed(runner, "--config", str(path))
    assert shown["llm_kwargs"]["model"] and shown["config"]["out"]
