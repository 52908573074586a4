"""Every `screenspot-eval` and `make` command in the README parses against the real CLI.

The CPU-safe ones run elsewhere: `make demo` / `make test` in CI, the engine commands in the
engine tests. This test catches a README that drifts from the options the CLI really has.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from screenspot_eval.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands(prefix: str) -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                commands.append(line)
    return commands


CLI_COMMANDS = readme_commands("screenspot-eval ")


def test_the_readme_shows_the_main_commands():
    names = {shlex.split(c)[1] for c in CLI_COMMANDS}
    assert {"run", "compare", "serve", "verify-embedder"} <= names
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_readme_command_parses(command: str):
    args = shlex.split(command)[1:]
    group = typer.main.get_command(app)
    sub = group.commands.get(args[0])  # type: ignore[attr-defined]
    assert sub is not None, f"no command {args[0]!r}"
    with group.make_context("screenspot-eval", ["--help"], resilient_parsing=True) as ctx:
        sub.make_context(args[0], args[1:], parent=ctx)  # raises on unknown options


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for command in readme_commands("make "):
        target = command.split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
