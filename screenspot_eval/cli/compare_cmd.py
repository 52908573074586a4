"""`screenspot-eval compare`: run post vs pre (or any two variants) and report, or compare runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import print_json, resume_command
from screenspot_eval.cli.options import Given, with_options


@with_options(o.STATISTICS, o.EVAL)
def compare(
    given: Given,
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="Two existing run folders (RUN_A RUN_B) to compare instead."),
    ] = None,
    a: o.VariantAOpt = None,
    b: o.VariantBOpt = None,
    a_set: o.ASetOpt = None,
    b_set: o.BSetOpt = None,
    sides: o.SidesOpt = None,
    factor: o.FactorOpt = None,
    engines: o.EnginesOpt = "auto",
    endpoint_a: o.EndpointAOpt = None,
    endpoint_b: o.EndpointBOpt = None,
    allow_mismatch: o.AllowMismatchOpt = False,
    shared_only: o.SharedOnlyOpt = False,
    restart: o.RestartOpt = False,
    quiet: o.QuietOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Compare two embedder variants with paired statistics, per slice.

    Runs A and B with identical settings into OUT/a-A and OUT/b-B (each resumable), pairs
    the samples by id and writes comparison.csv, flips.csv, comparison.md, deltas.png and
    report.html into OUT. With two run folders instead, compares those.

    Example: screenspot-eval compare --model google/gemma-4-31B-it --a post --b pre --out results/pr40411

    Example: screenspot-eval compare results/e4b-post results/e4b-pre --out results/e4b-ab

    With --repeats K each side runs K times and the report sets the A/B discordance beside
    the A/A noise floor; --a pre --b pre is an A/A control (labelled so).

    Any engine-side factor: --b-set KEY=VALUE (and --a-set) give a side its own settings;
    each is proven inside its engine before the first sample, and the factor is named in
    the headline.

    Example: screenspot-eval compare --model google/gemma-4-31B-it --a pre --b pre --b-set text_config.use_bidirectional_attention=null --out results/bidi
    """
    from screenspot_eval.backends.sides import resolve_sides
    from screenspot_eval.run.compare import SideRuns, compare_runs, compare_variants

    if runs:
        if len(runs) != 2:
            raise typer.BadParameter("give exactly two run folders: RUN_A RUN_B")
        target = given["out"] or runs[0].parent / f"{runs[0].name}-vs-{runs[1].name}"
        result = compare_runs(
            runs[0],
            runs[1],
            target,
            allow_mismatch=allow_mismatch,
            shared_only=shared_only,
            factor=tuple(factor or ()),
            **given.resampling(),
        )
    else:
        side_a, side_b = resolve_sides(a, b, a_set or (), b_set or (), sides)
        servers = tuple(url for url in (endpoint_a, endpoint_b) if url)
        config = given.resolve(servers=servers, **{"engine.norm": side_a.variant})
        if print_config:
            from screenspot_eval.run.compare import describe_sides

            print_json(describe_sides(config, side_a, side_b))
            return
        how = SideRuns(
            engines=engines,
            endpoint_a=endpoint_a,
            endpoint_b=endpoint_b,
            restart=restart,
            quiet=quiet,
            resume_command=resume_command(),
            log=typer.echo,
            repeats=given["repeats"],
            factor=tuple(factor or ()),
        )
        result = compare_variants(config, side_a, side_b, how, **given.resampling())
    typer.echo(result.terminal)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")
