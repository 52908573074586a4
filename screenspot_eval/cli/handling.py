"""How a command ends: an expected failure becomes one line on stderr and its exit code."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import typer
import typer.exceptions

from screenspot_eval.errors import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED, ScreenspotError

#: How Typer (and the click it may wrap) report usage errors and exits: not ours to handle.
CLI_EXCEPTIONS: tuple[type[BaseException], ...] = (
    typer.exceptions.TyperException,
    typer.Exit,
    typer.Abort,
    click.exceptions.ClickException,
    click.exceptions.Exit,
    click.exceptions.Abort,
)


def exits_cleanly(command: Callable[..., Any], *, resumable: bool = False) -> Callable[..., Any]:
    """Run ``command``; a :class:`ScreenspotError` prints ``error: ...`` (and how to resume)
    and exits with the error's own code. Anything else is a bug: one line naming it and the
    file its traceback went to, exit 1. No traceback reaches the terminal.

    ``resumable``: the same command line continues the work (every finished pass is kept and
    skipped), so a Ctrl-C that lands outside a run session (between the passes of a compare,
    a sweep or repeats, or while an engine starts) prints that command too."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScreenspotError as exc:
            typer.echo(f"error: {exc}", err=True)
            if exc.resume:
                typer.echo(f"resume with: {exc.resume}", err=True)
            raise typer.Exit(code=exc.exit_code) from exc
        except CLI_EXCEPTIONS:
            raise  # usage errors and exits: the CLI framework prints and exits as it should
        except KeyboardInterrupt as exc:
            typer.echo("error: interrupted", err=True)
            if resumable:
                typer.echo(f"resume with: {resume_command()}", err=True)
            raise typer.Exit(code=EXIT_INTERRUPTED) from exc
        except Exception as exc:
            where = write_traceback(exc)
            typer.echo(
                f"error: internal error ({type(exc).__name__}: {str(exc).strip()[:300]}); "
                f"a bug in screenspot-eval: please report it with the traceback in {where}",
                err=True,
            )
            raise typer.Exit(code=EXIT_INTERNAL_ERROR) from exc

    return wrapper


def write_traceback(exc: BaseException) -> Path:
    """The traceback of an unexpected error, kept in a file the message names."""
    name = f"screenspot-eval-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path = Path(tempfile.gettempdir()) / name
    path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


def resume_command() -> str:
    """The command line that continues this run (the same one, without --restart)."""
    return shlex.join(["screenspot-eval", *[a for a in sys.argv[1:] if a != "--restart"]])


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2))
