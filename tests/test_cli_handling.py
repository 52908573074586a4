"""How a command ends when something unexpected happens: one line, never a traceback."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from screenspot_eval.backends.vllm.failures import EngineStageError, engine_stage
from screenspot_eval.cli.app import app
from screenspot_eval.cli.handling import exits_cleanly
from screenspot_eval.errors import (
    EXIT_BACKEND_FAILURE,
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    UserError,
)


def _app(command) -> typer.Typer:
    app = typer.Typer()
    app.command()(exits_cleanly(command))
    return app


def test_a_bug_is_one_line_naming_the_file_its_traceback_went_to():
    def broken() -> None:
        raise ZeroDivisionError("boom")

    result = CliRunner().invoke(_app(broken), [])
    assert result.exit_code == EXIT_INTERNAL_ERROR
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: internal error (ZeroDivisionError: boom)")
    saved = Path(line.rsplit(" ", 1)[-1])
    assert "ZeroDivisionError: boom" in saved.read_text() and "Traceback" in saved.read_text()


def test_usage_errors_still_belong_to_the_cli_framework():
    def bad() -> None:
        raise typer.BadParameter("no such thing")

    result = CliRunner().invoke(_app(bad), [])
    assert result.exit_code == 2 and "no such thing" in result.output
    assert "internal error" not in result.output


def test_ctrl_c_outside_a_session_prints_the_command_that_resumes(monkeypatch, tmp_path: Path):
    """Between the passes of a compare (or while an engine starts) no session is there to say
    how to go on: the command line does, without --restart (finished passes are kept)."""
    import screenspot_eval.run.compare as library

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(library, "compare_variants", interrupted)
    args = ["compare", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d")]
    args += ["--a", "post", "--b", "pre", "--out", str(tmp_path / "ab")]
    monkeypatch.setattr(sys, "argv", ["screenspot-eval", *args, "--restart"])
    result = CliRunner().invoke(app, [*args, "--restart"])
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert result.output.strip().splitlines() == [
        "error: interrupted",
        f"resume with: {shlex.join(['screenspot-eval', *args])}",
    ]


def test_ctrl_c_in_a_command_with_nothing_to_resume_says_only_that():
    def interrupted() -> None:
        raise KeyboardInterrupt

    result = CliRunner().invoke(_app(interrupted), [])
    assert result.exit_code == EXIT_INTERRUPTED
    assert result.output.strip().splitlines() == ["error: interrupted"]


def test_engine_stage_names_the_stage_and_keeps_the_traceback_in_the_log(tmp_path: Path):
    log = tmp_path / "vllm.log"
    with pytest.raises(EngineStageError) as caught, engine_stage("loading the model", log):
        raise ValueError("bad checkpoint\nsecond line")
    message = str(caught.value)
    assert (
        message
        == f"vLLM failed while loading the model: ValueError: bad checkpoint; vLLM's log: {log}"
    )
    assert caught.value.exit_code == EXIT_BACKEND_FAILURE
    assert "Traceback" in log.read_text() and "second line" in log.read_text()


def test_engine_stage_lets_the_tools_own_errors_through(tmp_path: Path):
    with pytest.raises(UserError, match="mine"), engine_stage("probing", tmp_path / "log"):
        raise UserError("mine")
    assert not (tmp_path / "log").exists()
