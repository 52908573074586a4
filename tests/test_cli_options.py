"""Every command builds its engine settings through one path, so the same flags mean the same.

Dry runs (``--print-config``) through Typer's CliRunner: no engine starts, no vLLM import.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from screenspot_eval.cli.app import app
from screenspot_eval.cli.options import STATISTICS, Given, with_options
from screenspot_eval.errors import EXIT_USER_ERROR
from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED

ENGINE_COMMANDS = ("run", "compare", "serve", "verify-embedder")


def plain(output: str) -> str:
    """Typer's boxed error text as one line (the box wraps long messages)."""
    return " ".join(output.replace("│", " ").split())


def dry_run(command: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, [command, "--model", "m", *args, "--print-config"], env={"SCREENSPOT_API_KEY": None}
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout)


def engine_kwargs(command: str, *args: str) -> dict[str, Any]:
    """The vLLM arguments without the variant (each command picks its own: --norm, --a)."""
    kwargs = dry_run(command, *args)["llm_kwargs"]
    kwargs.pop("hf_overrides", None)
    return kwargs


@pytest.mark.parametrize(
    ("flags", "given"),
    [
        (("--engine-arg", "dtype=float16"), {"dtype": "float16"}),
        (("--dtype", "float16"), {"dtype": "float16"}),
        (
            ("--engine-arg", "max_model_len=4096", "--engine-arg", "swap_space=2"),
            {"max_model_len": 4096, "swap_space": 2},
        ),
        (
            ("--max-soft-tokens", "560", "--tp", "2", "--enforce-eager", "--seed", "7"),
            {
                "mm_processor_kwargs": {"max_soft_tokens": 560},
                "tensor_parallel_size": 2,
                "enforce_eager": True,
                "seed": 7,
            },
        ),
        (
            ("--engine-arg", 'mm_processor_kwargs={"do_pan_and_scan": false}'),
            {"mm_processor_kwargs": {"do_pan_and_scan": False}},
        ),
    ],
    ids=["engine-arg-dtype", "dtype", "extra", "named", "mm-kwargs"],
)
def test_every_command_gives_the_same_engine_arguments(
    flags: tuple[str, ...], given: dict[str, Any]
) -> None:
    seen = {command: engine_kwargs(command, *flags) for command in ENGINE_COMMANDS}
    assert all(kwargs == seen["run"] for kwargs in seen.values()), seen
    assert {key: seen["run"].get(key) for key in given} == given  # the flags took effect


def test_engine_arg_naming_a_setting_sets_that_setting_everywhere() -> None:
    for command in ENGINE_COMMANDS:
        assert engine_kwargs(command, "--engine-arg", "dtype=float16")["dtype"] == "float16"
        assert engine_kwargs(command, "--engine-arg", "dtype=float16") == engine_kwargs(
            command, "--dtype", "float16"
        )


def test_every_settings_key_has_one_spelling_in_every_command(tmp_path) -> None:
    """One grammar: ``--engine-arg enforce-eager=true`` is ``--enforce-eager``; a config file's
    ``[engine]`` and ``[engine.extra]`` tables read keys the same way; ``hf_overrides.`` before
    a dotted key is the same as none."""
    file = tmp_path / "c.toml"
    file.write_text(
        "[engine]\nmodel = 'm'\nmax-model-len = 1024\n[engine.extra]\nenforce-eager = true\n"
        "'hf_overrides.text_config.x' = 2\nswap-space = 3\n"
    )
    for command in ENGINE_COMMANDS:
        flag = engine_kwargs(command, "--enforce-eager")
        assert flag["enforce_eager"] is True
        assert engine_kwargs(command, "--engine-arg", "enforce-eager=true") == flag
        assert engine_kwargs(command, "--engine-arg", "enforce_eager=true") == flag
        dotted = dry_run(command, "--engine-arg", "hf-overrides.text-config.x=2")["llm_kwargs"]
        plain_key = dry_run(command, "--engine-arg", "text_config.x=2")["llm_kwargs"]
        assert dotted["hf_overrides"] == plain_key["hf_overrides"]
        assert dotted["hf_overrides"]["text_config"] == {"x": 2}
        result = CliRunner().invoke(app, [command, "--config", str(file), "--print-config"])
        assert result.exit_code == 0, result.output
        from_file = json.loads(result.stdout)["llm_kwargs"]
        assert from_file["enforce_eager"] is True and from_file["max_model_len"] == 1024
        assert from_file["swap_space"] == 3 and from_file["hf_overrides"]["text_config"] == {"x": 2}
        given_twice = CliRunner().invoke(
            app,
            [command, "--model", "m", "--engine-arg", "enforce-eager=true",
             "--engine-arg", "enforce_eager=false", "--print-config"],
        )  # fmt: skip
        assert given_twice.exit_code == EXIT_USER_ERROR
        assert "--engine-arg enforce_eager: given twice" in plain(given_twice.output)


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_an_option_given_twice_is_a_usage_error_in_every_command(command: str) -> None:
    result = CliRunner().invoke(
        app,
        [command, "--model", "m", "--dtype", "float32", "--engine-arg", "dtype=float16",
         "--print-config"],
    )  # fmt: skip
    assert result.exit_code == EXIT_USER_ERROR
    assert "given both as an option and as --engine-arg" in plain(result.output)


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_a_config_file_feeds_every_command_and_the_command_line_wins(command, tmp_path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[engine]\nmodel = 'from-file'\ndtype = 'bfloat16'\nmax_model_len = 1024\n")
    result = CliRunner().invoke(
        app, [command, "--config", str(file), "--dtype", "float32", "--print-config"]
    )
    assert result.exit_code == 0, result.output
    kwargs = json.loads(result.stdout)["llm_kwargs"]
    assert (kwargs["model"], kwargs["dtype"], kwargs["max_model_len"]) == (
        "from-file",
        "float32",
        1024,
    )


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_bad_engine_values_are_clean_usage_errors_in_every_command(command: str) -> None:
    for bad in (["--engine-arg", "novalue"], ["--max-soft-tokens", "100"]):
        result = CliRunner().invoke(app, [command, "--model", "m", *bad, "--print-config"])
        assert result.exit_code == EXIT_USER_ERROR, (bad, result.output)
        assert isinstance(result.exception, SystemExit), repr(result.exception)


def test_serve_dry_run_shows_the_server_command_with_the_same_flags() -> None:
    shown = dry_run("serve", "--engine-arg", "dtype=float16", "--norm", "post")
    command = shown["server_command"]
    assert command[command.index("--dtype") + 1] == "float16"
    assert command.count("--dtype") == 1
    assert '{"screenspot_embedder_norm":"post"}' in command


def test_statistics_options_are_one_group_with_their_defaults() -> None:
    """compare and sweep take --bootstrap-seed, --resamples and --repeats from one group, and a
    command that is called without them gets the group's defaults, not None."""

    @with_options(STATISTICS)
    def command(given: Given) -> Given:
        return given

    given = command()
    assert (given["repeats"], given.resampling()) == (
        1,
        {"seed": DEFAULT_SEED, "n_resamples": DEFAULT_N_RESAMPLES},
    )
    assert command(bootstrap_seed=7, resamples=200).resampling() == {"seed": 7, "n_resamples": 200}
    assert given.overrides() == {}  # no config keys: the statistics never reach the run config
    for name in ("compare", "sweep"):
        help_text = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"}).stdout
        assert all(flag in help_text for flag in ("--bootstrap-seed", "--resamples", "--repeats"))
