"""`screenspot-eval study`: a matrix of A/Bs from one file, resumable by cell, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.handling import resume_command


def study(
    file: Annotated[
        Path, typer.Argument(help="The study file (TOML): checkpoints, sides, matrix.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study folder (default: the file's out).")
    ] = None,
    list_cells: Annotated[
        bool, typer.Option("--list-cells", help="Print the cells, one per line, then exit.")
    ] = False,
    cell: Annotated[
        str | None, typer.Option("--cell", help="Run only this cell (e.g. one Slurm array task).")
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option("--report", help="Only build the combined report from the finished cells."),
    ] = False,
    quiet: o.QuietOpt = False,
) -> None:
    """Run every cell of a study (each a `compare`), then write the combined report.

    A finished cell never runs again; a cell added to the file runs alone; a changed cell is
    refused. --list-cells, --cell NAME and --report split the same work over processes.

    Example: screenspot-eval study configs/studies/gemma-4.toml --list-cells
    """
    from screenspot_eval.run.study import Study, report_study, run_study

    plan = Study.load(file, out)
    if list_cells:
        for one in plan.cells():
            typer.echo(one.describe())
        return
    if not report_only:
        run_study(plan, only=cell, quiet=quiet, log=typer.echo, resume=resume_command())
    if cell and not report_only:
        typer.echo(f"cell {cell} finished; build the report with --report once all have")
        return
    files, missing = report_study(plan)
    if missing:
        typer.echo(f"not finished yet (left out of the report): {', '.join(missing)}")
    study_md = files["study.md"].read_text(encoding="utf-8").splitlines()
    for line in study_md:
        if line.startswith("- "):
            typer.echo(line[2:])
    for name, path in files.items():
        typer.echo(f"{name}: {path}")
