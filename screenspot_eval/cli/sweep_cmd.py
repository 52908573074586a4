"""`screenspot-eval sweep`: accuracy of each variant at each image budget, and the delta's trend."""

from __future__ import annotations

from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json, resume_command
from screenspot_eval.cli.options import Given, with_options

SWEEP = "Sweep"


def comma_ints(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"expected numbers like 70,280,1120, got {value!r}") from exc


@with_options(o.STATISTICS, o.EVAL)
def sweep(
    given: Given,
    budgets: Annotated[
        str,
        typer.Option(
            "--budgets",
            help="Image budgets (soft tokens per image), comma-separated: 70,140,280,560,1120.",
            rich_help_panel=SWEEP,
        ),
    ] = "70,140,280,560,1120",
    variants: Annotated[
        str,
        typer.Option(
            "--variants",
            help="Embedder variants, comma-separated; the first two are A and B of the delta.",
            rich_help_panel=SWEEP,
        ),
    ] = "post,pre",
    restart: o.RestartOpt = False,
    quiet: o.QuietOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Evaluate every variant at every image budget: does the fix matter at your resolution?

    One resumable run per budget x variant under OUT/BUDGET/VARIANT, in one engine where
    the in-place switch holds (the budget is applied per request). Writes sweep.csv,
    sweep_deltas.csv, sweep.md and accuracy_vs_budget.png, with the per-budget delta
    (Holm-adjusted) and a test of whether the delta depends on the budget.

    Example: screenspot-eval sweep --model google/gemma-4-E4B-it --budgets 70,280,1120 --out results/e4b-sweep
    """
    from screenspot_eval.run.config import describe_config
    from screenspot_eval.run.sweep import run_sweep

    config = given.resolve()
    if print_config:
        print_json(describe_config(config))
        return
    result = run_sweep(
        config,
        comma_ints(budgets),
        [v.strip() for v in variants.split(",") if v.strip()],
        repeats=given["repeats"],
        restart=restart,
        quiet=quiet,
        resume_command=resume_command(),
        log=typer.echo,
        **given.resampling(),
    )
    typer.echo(result.headline)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")
