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

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from screenspot_eval.backends.overrides import read_toml
from screenspot_eval.backends.sides import SideSettings, resolve_sides
from screenspot_eval.errors import UserError
from screenspot_eval.report.study import FinishedCell, write_study_report
from screenspot_eval.run.compare import ComparisonResult, SideRuns, compare_variants
from screenspot_eval.run.config import diff_settings, resolve_config, with_defaults
from screenspot_eval.run.repeats import repeat_dirs
from screenspot_eval.stats.pooled import Weighting

CELLS_DIR = "cells"
CELL_RECORD = "cell.json"
CELL_LOG = "study-cell.log"  # a cell run by its own process (cells against servers)


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
    endpoint_a: str | None = None
    """A server of this checkpoint for side A (``serve`` or ``vllm serve``); None: in-process."""
    endpoint_b: str | None = None
    """Side B's server (the same URL as A's where the sides differ only in the harness)."""


class Side(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str | None = None
    set: list[str] = Field(default_factory=list)
    """``KEY=VALUE`` settings as ``--a-set`` takes them."""


class Dataset(BaseModel):
    """A dataset of the matrix: its name in cell names, its source and layout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    source: str
    """A folder in the layout or a hub dataset (``--data``)."""
    layout: str = "screenspot-pro"
    revision: str | None = None


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
    datasets: list[Dataset | None] = Field(default_factory=lambda: [None])
    """Datasets of the matrix; None (the default): the configs' own data."""
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
    dataset: Dataset | None = None
    hardware: str | None = None
    endpoints: tuple[str, ...] = ()
    """The servers it runs against (A's, B's); empty: in-process."""

    def describe(self) -> str:
        budget = "the config's budget" if self.budget is None else f"budget {self.budget}"
        if self.dataset is not None:
            budget = f"{self.dataset.name} ({self.dataset.layout}), {budget}"
        extra = f"; needs {self.hardware}" if self.hardware else ""
        if self.endpoints:
            extra += f"; against {' and '.join(dict.fromkeys(self.endpoints))}"
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
        """The matrix in order: checkpoint, then dataset, budget and protocol; a factor with
        one value is not in the names."""
        spec = self.spec
        cells = []
        for ckpt, dataset, budget, protocol in itertools.product(
            spec.checkpoints, spec.datasets, spec.budgets, spec.protocols
        ):
            parts = [ckpt.name]
            if len(spec.datasets) > 1:
                parts.append(dataset.name if dataset is not None else "data")
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
                    dataset=dataset,
                    hardware=ckpt.hardware,
                    endpoints=_endpoints(ckpt),
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
            "cell": cell.model_dump(mode="json", include={"name", "model", "budget", "protocol"}),
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
        if cell.dataset is not None:
            overrides["data.source"] = cell.dataset.source
            overrides["data.layout"] = cell.dataset.layout
            overrides["data.revision"] = cell.dataset.revision
        return resolve_config(_relative(self.path, file) if file else None, overrides)


def _endpoints(ckpt: Checkpoint) -> tuple[str, ...]:
    if not (ckpt.endpoint_a or ckpt.endpoint_b):
        return ()
    if not (ckpt.endpoint_a and ckpt.endpoint_b):
        raise StudyError(
            f"checkpoint {ckpt.name}: give both endpoint_a and endpoint_b (the same URL when "
            "one server serves both sides), or neither (in-process)"
        )
    return (ckpt.endpoint_a, ckpt.endpoint_b)


def _relative(study: Path, name: str) -> Path:
    """A config file named in a study: as given when it exists there, else beside the study."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else study.parent / path


def changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a cell's recorded definition and its definition now; a setting
    added to the tool since the cell ran counts as its default (what the cell ran with)."""
    recorded = dict(recorded)
    recorded["outcome_settings"] = with_defaults(
        recorded.get("outcome_settings", {}), now["outcome_settings"]
    )
    return diff_settings(
        json.loads(json.dumps(recorded, default=str)), json.loads(json.dumps(now, default=str))
    )


def finished(study: Study, cell: Cell) -> dict[str, Any] | None:
    """The cell's record when it finished; refused when its definition changed since."""
    record_path = study.cell_dir(cell) / CELL_RECORD
    if not record_path.exists():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    differences = changes(record.get("definition", {}), study.definition(cell))
    if differences:
        listed = "\n  ".join(differences)
        raise StudyError(
            f"cell {cell.name} changed since it ran ({record_path} records other settings):\n"
            f"  {listed}\nput the change in a new cell, or delete {study.cell_dir(cell)} to run "
            "it again"
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
    endpoint_a, endpoint_b = cell.endpoints or (None, None)
    how = SideRuns(
        quiet=quiet,
        log=log,
        repeats=study.spec.repeats,
        resume_command=resume,
        endpoint_a=endpoint_a,
        endpoint_b=endpoint_b,
    )
    result: ComparisonResult = compare_variants(study.config(cell), a, b, how)
    record = {
        "cell": cell.model_dump(mode="json"),
        "definition": study.definition(cell),
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
    """Every cell not finished yet (or only ``only``). In-process cells run one after another
    here; cells against servers run concurrently, each set of servers one cell at a time. One
    progress line per cell: done / running / left, elapsed and an estimate of what remains."""
    cells = [study.cell(only)] if only else study.cells()
    progress = Progress(study.spec.name, len(cells), log)
    todo = []
    for cell in cells:  # each check resolves the cell's configuration: once per cell
        if finished(study, cell) is None:
            todo.append(cell)
        else:
            progress.skipped(cell)
    lanes: dict[tuple[str, ...], list[Cell]] = {}
    for cell in todo:
        lanes.setdefault(cell.endpoints, []).append(cell)

    if len(lanes) <= 1:
        for lane in lanes.values():
            for cell in lane:
                progress.start(cell)
                record = run_cell(study, cell, quiet=quiet, log=log, resume=resume)
                progress.finish(cell, record["headline"])
        return cells

    def run_lane(lane: list[Cell]) -> None:
        for cell in lane:
            progress.start(cell)
            progress.finish(cell, cell_process(study, cell))

    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="study-lane") as pool:
        for future in [pool.submit(run_lane, lane) for lane in lanes.values()]:
            future.result()
    return cells


def cell_process(study: Study, cell: Cell) -> str:
    """Run one cell as its own ``study --cell`` process (its output in the cell's folder), so
    that a Ctrl-C reaches every running cell as it reaches a single one; returns its
    headline, or raises what stopped it."""
    folder = study.cell_dir(cell)
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "screenspot_eval", "study", str(study.path),
        "--out", str(study.out), "--cell", cell.name, "--quiet",
    ]  # fmt: skip
    with (folder / CELL_LOG).open("a", encoding="utf-8") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    record = finished(study, cell)
    if code == 130:
        raise KeyboardInterrupt(f"cell {cell.name}")
    if code != 0 or record is None:
        raise StudyError(f"cell {cell.name} failed (exit {code}): see {folder / CELL_LOG}")
    return str(record["headline"])


class Progress:
    """The study's one-line progress: cells done / running / left, elapsed, estimate."""

    def __init__(self, name: str, total: int, log: Callable[[str], None]):
        self.name, self.total, self.log = name, total, log
        self.started = time.monotonic()
        self.done = self.ran = self.running = 0
        self.lock = threading.Lock()

    def skipped(self, cell: Cell) -> None:
        with self.lock:
            self.done += 1
        self.log(f"study {self.name}: cell {cell.name} finished earlier, not run again")

    def start(self, cell: Cell) -> None:
        with self.lock:
            self.running += 1
            left = self.total - self.done - self.running
            elapsed = time.monotonic() - self.started
            rate = elapsed / self.ran if self.ran else None
            line = (
                f"study {self.name}: cell {cell.name} started; {self.done} done, "
                f"{self.running} running, {left} left; {elapsed / 60:.1f} min elapsed"
            )
            if rate is not None:
                line += f", about {rate * (left + self.running) / 60:.0f} min to go"
        self.log(line)

    def finish(self, cell: Cell, headline: str) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1
            self.ran += 1
        self.log(f"study {self.name}: cell {cell.name}: {headline}")


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
                dataset=cell.dataset.name if cell.dataset else None,
                side_a=repeat_dirs(folder / f"a-{a.variant}")[0],
                side_b=repeat_dirs(folder / f"b-{b.variant}")[0],
            )
        )
    files = write_study_report(
        study.out, study.spec.name, done, missing, weighting=study.spec.weighting
    )
    return files, missing
