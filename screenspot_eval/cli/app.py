"""The `screenspot-eval` command line: one Typer app, commands grouped in help panels."""

from __future__ import annotations

from typing import Annotated

import typer

from screenspot_eval import __version__
from screenspot_eval.cli.compare_cmd import compare
from screenspot_eval.cli.data_cmds import data_app
from screenspot_eval.cli.handling import exits_cleanly
from screenspot_eval.cli.model_cmds import tiny_model, verify_embedder
from screenspot_eval.cli.parity_cmd import parity
from screenspot_eval.cli.presets_cmd import presets
from screenspot_eval.cli.run_cmds import report, run
from screenspot_eval.cli.serve_cmd import serve
from screenspot_eval.cli.study_cmd import study
from screenspot_eval.cli.sweep_cmd import sweep

app = typer.Typer(
    name="screenspot-eval",
    help=(
        "Evaluate GUI grounding (Gemma 4, Qwen-VL and their derivatives) on ScreenSpot-Pro and "
        "the sets in its layout in vLLM, and compare the pre-norm, post-norm and native Gemma 4 "
        "embedders, or any engine factor, with paired statistics."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
app.command("run", rich_help_panel="Evaluate")(exits_cleanly(run, resumable=True))
app.command("compare", rich_help_panel="Evaluate")(exits_cleanly(compare, resumable=True))
app.command("sweep", rich_help_panel="Evaluate")(exits_cleanly(sweep, resumable=True))
app.command("study", rich_help_panel="Evaluate")(exits_cleanly(study, resumable=True))
app.command("parity", rich_help_panel="Evaluate")(exits_cleanly(parity))
app.command("report", rich_help_panel="Evaluate")(exits_cleanly(report))
app.command("serve", rich_help_panel="Serve")(exits_cleanly(serve))
app.add_typer(data_app, name="data", rich_help_panel="Data")
app.command("tiny-model", rich_help_panel="Model")(exits_cleanly(tiny_model))
app.command("verify-embedder", rich_help_panel="Model")(exits_cleanly(verify_embedder))
app.command("presets", rich_help_panel="Model")(exits_cleanly(presets))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"screenspot-eval {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Evaluate GUI grounding in vLLM: Gemma 4, Qwen-VL and their derivatives."""


def main() -> None:
    app()
