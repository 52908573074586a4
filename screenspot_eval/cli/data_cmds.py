"""`screenspot-eval data ...`: dataset accounting and synthesis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli.handling import exits_cleanly
from screenspot_eval.cli.options import LayoutOpt
from screenspot_eval.data.errors import InvalidSampleError

data_app = typer.Typer(
    help="Inspect, validate and synthesise ScreenSpot-Pro data (or another --layout).",
    no_args_is_help=True,
)


@data_app.command("check")
@exits_cleanly
def check(
    spec: Annotated[
        str,
        typer.Argument(
            metavar="PATH|REPO",
            help="A folder in the official layout, a parquet file/folder, or a hub dataset id.",
        ),
    ],
    revision: Annotated[
        str | None, typer.Option(help="Hub revision (branch, tag or commit) to load.")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--lenient",
            help="Strict: fail on any invalid sample. Lenient: exclude and list them.",
        ),
    ] = True,
    check_images: Annotated[
        bool, typer.Option("--images/--no-images", help="Open every image to check its size.")
    ] = True,
    layout: LayoutOpt = None,
) -> None:
    """Validate a ScreenSpot-Pro release and account for every sample against the official totals.

    Prints counts per group x ui_type and per application, the differences from the official
    release (1581 samples), and every excluded sample with its reason. Exit 3 (a data error):
    invalid samples in strict mode, or a dataset that cannot be reached. With --layout, a
    folder in that layout, counted per slice against the layout's published totals.

    Example: screenspot-eval data check likaixin/ScreenSpot-Pro
    Example: screenspot-eval data check OSWorld-G/benchmark --layout osworld-g
    """
    from screenspot_eval.data.check import check_dataset, render_problems

    try:
        report = check_dataset(
            spec, revision, strict=strict, check_images=check_images, layout=layout
        )
    except InvalidSampleError as error:
        typer.echo(render_problems(error), err=True)
        raise typer.Exit(code=error.exit_code) from error
    typer.echo(report.render())


@data_app.command("synth")
@exits_cleanly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the synthetic release into.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    like_official: Annotated[
        bool,
        typer.Option(
            "--like-official",
            help="26 applications and the official group x ui_type mix (exact with --n 1581).",
        ),
    ] = False,
    max_width: Annotated[
        int | None,
        typer.Option(min=8, help="Scale screenshots down to at most this width (fast tests)."),
    ] = None,
    target_scale: Annotated[
        float,
        typer.Option(
            min=0.01, help="Enlarge target boxes (a random demo model hits real-sized ones ~never)."
        ),
    ] = 1.0,
    layout: LayoutOpt = None,
) -> None:
    """Write a synthetic dataset in the exact official ScreenSpot-Pro layout (or --layout's).

    Example: screenspot-eval data synth data/synth --n 60 --max-width 1280
    Example: screenspot-eval data synth data/osworld-g --layout osworld-g --n 40
    """
    from screenspot_eval.data.synth_layouts import synthesize

    summary = synthesize(
        layout,
        out_dir,
        n,
        seed=seed,
        like_official=like_official,
        max_width=max_width,
        target_scale=target_scale,
    )
    typer.echo(
        f"wrote {summary.samples} samples, {summary.screenshots} screenshots, "
        f"{len(summary.annotation_files)} annotation files, {summary.applications} applications "
        f"to {summary.root}"
    )
