"""A study: many A/Bs declared in one file, run cell by cell, reported together (issue 33).

A **cell** is one ``compare`` (its two sides, its proof inside the engine, its statistics)
on one checkpoint at one image budget and protocol. The study adds only the matrix, the order
and the combined report (:mod:`screenspot_eval.report.study`). Each cell runs into
``OUT/cells/NAME`` as ``compare`` would, so it resumes sample by sample; a finished cell holds
``cell.json`` (its definition and headline) and never runs again, and a cell whose definition
changed since is refused. ``--list-cells`` / ``--cell NAME`` / ``--report`` split the same
work over processes (a Slurm array: one cell per task).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from screenspot_eval.backends.overrides import read_toml
from screenspot_eval.backends.sides import SideSettings, resolve_sides
from screenspot_eval.errors import UserError
from screenspot_eval.report.study import FinishedCell, write_study_report
from screenspot_eval.run.compare import ComparisonResult, SideRuns, compare_variants
from screenspot_eval.run.config import resolve_config
from screenspot_eval.run.repeats import repeat_dirs
from screenspot_eval.stats.pooled import Weighting

CELLS_DIR = "cells"
CELL_RECORD = "cell.json"


class StudyError(UserError, ValueError):
    """A study file that cannot make a study, or a cell that cannot run as asked."""


class Checkpoint(BaseModel):
    """One model of the study: its name in cell names, the model, its own settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str
    config: str | None = None
    """A run config file for this checkpoint (its engine settings), relative to the study."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Dotted run settings for this checkpoint only (``"engine.max_model_len" = 8192``)."""
    hardware: str | None = None
    """What it needs (documentation: shown by ``--list-cells``)."""


class Side(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str | None = None
    set: list[str] = Field(default_factory=list)
    """``KEY=VALUE`` settings as ``--a-set`` takes them."""


class StudySpec(BaseModel):
    """A study file (TOML), validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    out: str
    config: str | None = None
    """A run config file every cell starts from (relative to the study file)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """Dotted run settings shared by every cell (``"data.selection.limit" = 100``)."""
    a: Side = Field(default_factory=lambda: Side(variant="post"))
    b: Side = Field(default_factory=lambda: Side(variant="pre"))
    checkpoints: list[Checkpoint] = Field(min_length=1)
    budgets: list[int | None] = Field(default_factory=lambda: [None])
    """Image budgets (``engine.max_soft_tokens``); None: the checkpoint's config decides."""
    protocols: list[str] = Field(default_factory=lambda: ["one-shot"])
    repeats: int = Field(default=1, ge=1)
    weighting: Weighting = "equal"


class Cell(BaseModel):
    """One A/B of the matrix."""

    model_config = ConfigDict(frozen=True)

    name: str
    checkpoint: str
    model: str
    budget: int | None
    protocol: str
    hardware: str | None = None

    def describe(self) -> str:
        budget = "the config's budget" if self.budget is None else f"budget {self.budget}"
        extra = f"; needs {self.hardware}" if self.hardware else ""
        return f"{self.name}: {self.model}, {budget}, {self.protocol}{extra}"


class Study:
    """A study file and the folder it writes."""

    def __init__(self, path: Path, spec: StudySpec, out: Path | None = None):
        self.path, self.spec = path, spec
        self.out = out or Path(spec.out)  # as every command's --out: from the working folder

    @classmethod
    def load(cls, path: Path, out: Path | None = None) -> Study:
        data = read_toml(path, "study file", StudyError)
        try:
            return cls(path, StudySpec.model_validate(data), out)
        except ValidationError as exc:
            raise StudyError(f"study file {path} is not a study:\n{exc}") from exc

    def cells(self) -> list[Cell]:
        """The matrix in order: checkpoint, then budget, then protocol; a factor with one
        value is not in the names."""
        spec = self.spec
        cells = []
        for ckpt, budget, protocol in itertools.product(
            spec.checkpoints, spec.budgets, spec.protocols
        ):
            parts = [ckpt.name]
            if len(spec.budgets) > 1:
                parts.append(f"b{budget if budget is not None else 'default'}")
            if len(spec.protocols) > 1:
                parts.append(protocol.replace(":", "_").replace(",", "_").replace("=", ""))
            cells.append(
                Cell(
                    name="-".join(parts),
                    checkpoint=ckpt.name,
                    model=ckpt.model,
                    budget=budget,
                    protocol=protocol,
                    hardware=ckpt.hardware,
                )
            )
        names = [c.name for c in cells]
        if len(set(names)) != len(names):
            raise StudyError(f"study {self.path}: two cells share a name ({names})")
        return cells

    def cell(self, name: str) -> Cell:
        for cell in self.cells():
            if cell.name == name:
                return cell
        listed = ", ".join(c.name for c in self.cells())
        raise StudyError(f"no cell {name!r} in {self.path}; its cells: {listed}")

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / CELLS_DIR / cell.name

    def sides(self) -> tuple[SideSettings, SideSettings]:
        a, b = self.spec.a, self.spec.b
        return resolve_sides(a.variant, b.variant, a.set, b.set)

    def definition(self, cell: Cell) -> dict[str, Any]:
        """Everything that decides a cell's outcome, as resolved now (hashed in cell.json)."""
        config = self.config(cell)
        a, b = self.sides()
        return {
            "cell": cell.model_dump(mode="json", exclude={"hardware"}),
            "outcome_settings": config.outcome_settings(),
            "sides": [a.model_dump(mode="json"), b.model_dump(mode="json")],
            "repeats": self.spec.repeats,
        }

    def config(self, cell: Cell) -> Any:
        """The run configuration of a cell: the study's config file and settings, the
        checkpoint's, then the cell's model, budget, protocol and folder."""
        ckpt = next(c for c in self.spec.checkpoints if c.name == cell.checkpoint)
        file = ckpt.config or self.spec.config
        overrides: dict[str, Any] = {
            **self.spec.settings,
            **ckpt.settings,
            "engine.model": cell.model,
            "prompt.protocol": cell.protocol,
            "out": str(self.cell_dir(cell)),
        }
        if cell.budget is not None:
            overrides["engine.max_soft_tokens"] = cell.budget
        return resolve_config(_relative(self.path, file) if file else None, overrides)


def _relative(study: Path, name: str) -> Path:
    """A config file named in a study: as given when it exists there, else beside the study."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else study.parent / path


def _digest(definition: dict[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished(study: Study, cell: Cell) -> dict[str, Any] | None:
    """The cell's record when it finished; refused when its definition changed since."""
    record_path = study.cell_dir(cell) / CELL_RECORD
    if not record_path.exists():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("digest") != _digest(study.definition(cell)):
        raise StudyError(
            f"cell {cell.name} changed since it ran (its settings in {study.path} differ from "
            f"{record_path}); put the change in a new cell, or delete {study.cell_dir(cell)} "
            "to run it again"
        )
    return record


def run_cell(
    study: Study, cell: Cell, *, quiet: bool, log: Callable[[str], None], resume: str | None
) -> dict[str, Any]:
    """One cell as a ``compare`` into its folder; its record written when it finished."""
    done = finished(study, cell)
    if done is not None:
        return done
    a, b = study.sides()
    how = SideRuns(quiet=quiet, log=log, repeats=study.spec.repeats, resume_command=resume)
    result: ComparisonResult = compare_variants(study.config(cell), a, b, how)
    record = {
        "cell": cell.model_dump(mode="json"),
        "digest": _digest(study.definition(cell)),
        "headline": result.headline,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = study.cell_dir(cell) / CELL_RECORD
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def run_study(
    study: Study,
    *,
    only: str | None = None,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    resume: str | None = None,
) -> list[Cell]:
    """Every cell not finished yet, one after another (or only ``only``); one progress line
    per cell: done / left, elapsed and an estimate of what remains."""
    cells = [study.cell(only)] if only else study.cells()
    started = time.monotonic()
    ran = 0
    for index, cell in enumerate(cells):
        if finished(study, cell) is not None:
            log(f"study {study.spec.name}: cell {cell.name} finished earlier, not run again")
            continue
        left = len(cells) - index
        elapsed = time.monotonic() - started
        estimate = f", about {elapsed / ran * left / 60:.0f} min left" if ran else ""
        log(
            f"study {study.spec.name}: cell {index + 1}/{len(cells)} {cell.name} running; "
            f"{index} done, {left - 1} after it; {elapsed / 60:.1f} min elapsed{estimate}"
        )
        record = run_cell(study, cell, quiet=quiet, log=log, resume=resume)
        ran += 1
        log(f"study {study.spec.name}: cell {cell.name}: {record['headline']}")
    return cells


def report_study(study: Study) -> tuple[dict[str, Path], list[str]]:
    """The combined report from whatever cells are finished; returns its files and the cells
    still missing (named in the report too)."""
    done: list[FinishedCell] = []
    missing: list[str] = []
    a, b = study.sides()
    for cell in study.cells():
        if finished(study, cell) is None:
            missing.append(cell.name)
            continue
        folder = study.cell_dir(cell)
        done.append(
            FinishedCell(
                name=cell.name,
                checkpoint=cell.checkpoint,
                budget=cell.budget,
                protocol=cell.protocol,
                folder=folder,
                side_a=repeat_dirs(folder / f"a-{a.variant}")[0],
                side_b=repeat_dirs(folder / f"b-{b.variant}")[0],
            )
        )
    files = write_study_report(
        study.out, study.spec.name, done, missing, weighting=study.spec.weighting
    )
    return files, missing
