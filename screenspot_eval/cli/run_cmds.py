"""`screenspot-eval run` and `report`: parse options, call one library function, print results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json, resume_command
from screenspot_eval.cli.options import Given, with_options


@with_options(o.EVAL, o.VARIANT, o.ENDPOINT)
def run(
    given: Given,
    repeats: o.RepeatsOpt = 1,
    restart: o.RestartOpt = False,
    quiet: o.QuietOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Evaluate one model and embedder variant on ScreenSpot-Pro, resumably.

    Writes predictions.jsonl (as samples finish), manifest.json, samples.csv, metrics.csv,
    screenspot_pro_results.json (official format) and summary.md into --out. Re-running the
    same command resumes; a different configuration is refused unless --restart. Against a
    server (--endpoint) without --model, the model name is the one the server serves.

    Example: screenspot-eval run --model google/gemma-4-E4B-it --norm pre --out results/e4b-pre
    """
    from screenspot_eval.report.run_exports import leaderboard_markdown
    from screenspot_eval.run.config import describe_config
    from screenspot_eval.run.repeats import RepeatsResult, evaluate
    from screenspot_eval.store.records import records_frame

    config = given.resolve()
    if print_config:
        print_json(describe_config(config))
        return
    result = evaluate(
        config, repeats=repeats, restart=restart, quiet=quiet, resume_command=resume_command()
    )
    if isinstance(result, RepeatsResult):
        typer.echo(result.headline)
        files = result.files
    else:
        frame = records_frame(result.records)
        if len(frame):
            typer.echo(leaderboard_markdown(frame))
        files = result.exports
    for name, path in files.items():
        typer.echo(f"{name}: {path}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A results folder written by `run`.")],
) -> None:
    """Regenerate samples.csv, metrics.csv, the official JSON and summary.md from the records.

    Example: screenspot-eval report results/e4b-pre
    """
    from screenspot_eval.report.run_exports import regenerate_run_exports

    exports, notes = regenerate_run_exports(run_dir)
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(exports["summary"].read_text())
    for name, path in exports.items():
        typer.echo(f"{name}: {path}")
