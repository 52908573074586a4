"""The image-budget sweep: every budget x variant, one resumable run each, few model loads.

ScreenSpot-Pro screenshots are up to 6016x3384 and Gemma 4 sees at most 1120 soft tokens, so
the budget is the largest single lever on accuracy. vLLM applies the image processor's
``max_soft_tokens`` per request, so one engine, started at the largest budget (its encoder
budget profiled for the worst case), serves every budget; with the in-place switch it serves
pre and post too. ``native`` needs an engine of its own (upstream's class cannot switch). A
test shows a cell of the sweep equals a run whose engine was started at that budget.

Layout: ``OUT/<budget>/<variant>`` (``r1..rK`` inside with ``--repeats``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenspot_eval.backends.engines import IMAGE_BUDGETS, EngineRotation
from screenspot_eval.backends.variant import VARIANTS
from screenspot_eval.errors import UserError
from screenspot_eval.run.config import RunConfig, require_out
from screenspot_eval.run.repeats import Pass, borrowing, engine_starter, run_passes, side_passes
from screenspot_eval.run.session import BackendFactory
from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED
from screenspot_eval.store.run_dir import RunDir


def check_budgets(budgets: list[int]) -> tuple[int, ...]:
    """The budgets, sorted; any the Gemma 4 processor cannot take is refused up front."""
    bad = [b for b in budgets if b not in IMAGE_BUDGETS]
    if bad or not budgets:
        allowed = ", ".join(str(b) for b in IMAGE_BUDGETS)
        raise UserError(f"image budget(s) {bad or budgets} not supported: use {allowed}")
    return tuple(sorted(set(budgets)))


def check_variants(variants: list[str]) -> tuple[str, ...]:
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UserError(f"variant(s) {bad or variants} unknown: use {', '.join(VARIANTS)}")
    return tuple(dict.fromkeys(variants))


def cell_dir(out: Path, budget: int, variant: str) -> Path:
    return out / str(budget) / variant


def cell_config(config: RunConfig, budget: int, variant: str) -> RunConfig:
    engine = config.engine.model_copy(update={"max_soft_tokens": budget, "norm": variant})
    return config.model_copy(update={"engine": engine})


def finished(p: Pass) -> bool:
    manifest = RunDir(p.out).read_manifest() if (p.out / "manifest.json").exists() else None
    return manifest is not None and manifest.status == "complete" and manifest.counts.missing == 0


def sweep_engines(
    config: RunConfig, budget: int, variants: tuple[str, ...], log: Any
) -> EngineRotation:
    """The sweep's engines: started at the largest ``budget`` (vLLM applies a smaller one per
    request), pre <-> post switched in place after a self-check, a fresh one where not."""
    cfg = cell_config(config, budget, variants[0])
    return EngineRotation(engine_starter(cfg, Path(str(cfg.out))), variants, log=log)  # type: ignore[arg-type]


def factory_for(engines: EngineRotation, variant: str) -> BackendFactory:
    """The backend factory of one cell: the rotation's engine, made ready for ``variant``."""

    def make(cfg: RunConfig) -> Any:
        return borrowing(engines.ready(variant))(cfg)  # type: ignore[arg-type]

    return make


@dataclass
class SweepResult:
    out: Path
    files: dict[str, Path]
    headline: str
    loads: int
    notes: list[str]


def run_sweep(
    config: RunConfig,
    budgets: list[int],
    variants: list[str],
    *,
    repeats: int = 1,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
    log: Any = print,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> SweepResult:
    """``screenspot-eval sweep``: every budget x variant into ``config.out``, then the report
    (``sweep.csv``, ``sweep_deltas.csv``, ``sweep.md``, ``accuracy_vs_budget.png``)."""
    from screenspot_eval.report.sweep import write_sweep

    budgets_t, variants_t = check_budgets(budgets), check_variants(variants)
    out = require_out(config)
    if config.against_servers:
        raise UserError("sweep runs the in-process engine (the budget is applied per request)")
    if repeats < 1:
        raise UserError(f"--repeats must be at least 1, not {repeats}")
    cells: dict[tuple[int, str], list[Pass]] = {}
    for variant in variants_t:
        for budget in budgets_t:
            cfg = cell_config(config, budget, variant)
            cfg = cfg.model_copy(update={"out": str(cell_dir(out, budget, variant))})
            cells[(budget, variant)] = side_passes(cfg, cell_dir(out, budget, variant), repeats)
    engines = sweep_engines(
        config.model_copy(update={"out": str(out)}), max(budgets_t), variants_t, log
    )
    kwargs = {"restart": restart, "quiet": quiet, "resume_command": resume_command}
    skipped = 0
    try:
        for (_, variant), passes in cells.items():
            todo = passes if restart else [p for p in passes if not finished(p)]
            skipped += len(passes) - len(todo)
            if todo:
                run_passes(todo, backend_factory=factory_for(engines, variant), **kwargs)
    finally:
        engines.close()
    notes = [*engines.notes, f"model loads: {engines.loads}; cells already finished: {skipped}"]
    files, headline = write_sweep(
        out, budgets_t, variants_t, {k: [p.out for p in v] for k, v in cells.items()},
        seed=seed, n_resamples=n_resamples, notes=notes,
    )  # fmt: skip
    return SweepResult(out=out, files=files, headline=headline, loads=engines.loads, notes=notes)
