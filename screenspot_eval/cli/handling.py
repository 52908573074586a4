"""How a command ends: an expected failure becomes one line on stderr and its exit code."""

from __future__ import annotations

import functools
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

import typer

from screenspot_eval.errors import ScreenspotError


def exits_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``command``; a :class:`ScreenspotError` prints ``error: ...`` (and how to resume)
    and exits with the error's own code. No traceback for anything a user can cause."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScreenspotError as exc:
            typer.echo(f"error: {exc}", err=True)
            if exc.resume:
                typer.echo(f"resume with: {exc.resume}", err=True)
            raise typer.Exit(code=exc.exit_code) from exc

    return wrapper


def resume_command() -> str:
    """The command line that continues this run (the same one, without --restart)."""
    return shlex.join(["screenspot-eval", *[a for a in sys.argv[1:] if a != "--restart"]])


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2))
