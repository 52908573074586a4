"""The A/B comparison: run two variants with identical settings, pair them, report.

Two ways in: :func:`run_ab` runs both variants (each a resumable ``run`` into ``OUT/a-<A>`` and
``OUT/b-<B>``) and then compares; :func:`compare_runs` compares two existing run folders.
Runs that differ in anything but the variant are refused unless explicitly allowed, and then
every difference is written into the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from screenspot_eval.backends.variant import Variant
from screenspot_eval.errors import BackendFailure, UserError
from screenspot_eval.report.comparison import render_terminal, write_comparison
from screenspot_eval.report.pairing import pair_records
from screenspot_eval.run.config import RunConfig, diff_settings
from screenspot_eval.run.session import VLLM_LOG, BackendFactory, RunResult, execute_run
from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED
from screenspot_eval.stats.slices import compare_slices
from screenspot_eval.store.manifest import Manifest
from screenspot_eval.store.records import records_frame
from screenspot_eval.store.run_dir import RunDir, RunDirError

EngineMode = Literal["auto", "one", "two"]
ENGINE_MODES: tuple[str, ...] = ("auto", "one", "two")
VARIANTS: tuple[str, ...] = ("pre", "post", "native")


class OneEngineUnavailableError(BackendFailure, RuntimeError):
    """``--engines one`` was required but the in-place switch did not pass its self-check."""


class RunMismatchError(UserError, ValueError):
    """Two runs whose settings differ in more than the variant."""


@dataclass
class ComparisonResult:
    out: Path
    headline: str
    terminal: str
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def variant_label(variant: str) -> str:
    return f"{variant}-norm" if variant in ("pre", "post") else variant


def _load(run_dir: Path) -> tuple[Manifest, Any]:
    store = RunDir(run_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run_dir} has no manifest.json: is it a results folder of `run`?")
    records, _ = store.read_records()
    return manifest, records_frame(records)


def settings_differences(a: Manifest, b: Manifest) -> list[str]:
    """Everything but the variant that differs between two manifests."""

    def comparable(m: Manifest) -> dict[str, Any]:
        settings = json.loads(json.dumps(m.outcome_settings))
        settings.get("engine", {}).pop("norm", None)
        return {
            "settings": settings,
            "prompt_hash": m.prompt_hash,
            "dataset_content_hash": m.dataset.content_hash,
            "image_budget": m.image_budget,
        }

    return diff_settings(comparable(a), comparable(b))


def compare_runs(
    run_a: Path,
    run_b: Path,
    out: Path,
    *,
    allow_mismatch: bool = False,
    shared_only: bool = False,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
    notes: list[str] | None = None,
) -> ComparisonResult:
    """Pair two finished runs by sample id and write every comparison output into ``out``."""
    manifest_a, frame_a = _load(run_a)
    manifest_b, frame_b = _load(run_b)
    notes = list(notes or [])
    differences = settings_differences(manifest_a, manifest_b)
    if differences and not allow_mismatch:
        listed = "\n  ".join(differences)
        raise RunMismatchError(
            f"{run_a} and {run_b} differ in more than the embedder variant:\n  {listed}\n"
            "compare runs made with identical settings, or pass --allow-mismatch"
        )
    if differences:
        notes.append("Settings differ (allowed by --allow-mismatch): " + "; ".join(differences))
    for name, manifest in ((run_a, manifest_a), (run_b, manifest_b)):
        if manifest.status != "complete":
            notes.append(f"{name} is not complete (status {manifest.status})")
    var_a, var_b = manifest_a.effective_variant, manifest_b.effective_variant
    label_a, label_b = variant_label(str(var_a)), variant_label(str(var_b))
    if label_a == label_b:
        label_a, label_b = f"A ({run_a.name})", f"B ({run_b.name})"
    paired = pair_records(frame_a, frame_b, shared_only=shared_only)
    comparison = compare_slices(paired.frame, seed=seed, n_resamples=n_resamples)
    root = manifest_b.dataset.root
    notes.append(
        f"A = {run_a} (variant {var_a}), B = {run_b} (variant {var_b}); "
        f"structured decoding {'on' if manifest_a.structured_decoding else 'off'}"
    )
    out.mkdir(parents=True, exist_ok=True)
    files = write_comparison(
        out,
        paired,
        comparison,
        label_a=label_a,
        label_b=label_b,
        dataset_root=Path(root) if root else None,
        notes=notes,
    )
    return ComparisonResult(
        out=out,
        headline=comparison.headline(label_a, label_b),
        terminal=render_terminal(comparison, label_a=label_a, label_b=label_b),
        files=files,
        notes=notes,
    )


def side_config(config: RunConfig, variant: Variant, out: Path, endpoint: str | None) -> RunConfig:
    """The config of one side: same settings, its own variant, folder and (optional) server."""
    runtime = config.runtime
    if endpoint is not None:
        runtime = runtime.model_copy(update={"endpoints": (endpoint,)})
    return config.model_copy(
        update={
            "engine": config.engine.model_copy(update={"norm": variant}),
            "runtime": runtime,
            "out": str(out),
        }
    )


def run_ab(
    config: RunConfig,
    a: Variant,
    b: Variant,
    out: Path,
    *,
    engines: EngineMode = "auto",
    endpoint_a: str | None = None,
    endpoint_b: str | None = None,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
    log: Any = print,
) -> tuple[RunResult, RunResult, list[str]]:
    """Run A then B with identical settings; returns both results and notes for the report."""
    cfg_a = side_config(config, a, out / f"a-{a}", endpoint_a)
    cfg_b = side_config(config, b, out / f"b-{b}", endpoint_b)
    kwargs: dict[str, Any] = {"restart": restart, "quiet": quiet, "resume_command": resume_command}
    notes: list[str] = []
    in_process = not cfg_a.runtime.endpoints and not cfg_b.runtime.endpoints
    switchable = {a, b} <= {"pre", "post"} and a != b
    if engines == "one" and not (in_process and switchable):
        raise UserError("--engines one needs the in-process engine and the variants pre and post")
    if in_process and switchable and engines != "two":
        shared = _one_engine(cfg_a, cfg_b, a, b, kwargs, log)
        if shared is not None:
            notes.append(shared[2])
            return shared[0], shared[1], notes
        if engines == "one":
            raise OneEngineUnavailableError(
                "the one-engine self-check failed (see above); use --engines two or auto"
            )
        notes.append("one-engine self-check failed: ran two engines instead")
    result_a = execute_run(cfg_a, Path(str(cfg_a.out)), **kwargs)
    result_b = execute_run(cfg_b, Path(str(cfg_b.out)), **kwargs)
    notes.append("two engines: the model was loaded once per variant")
    return result_a, result_b, notes


def _one_engine(
    cfg_a: RunConfig, cfg_b: RunConfig, a: Variant, b: Variant, kwargs: dict[str, Any], log: Any
) -> tuple[RunResult, RunResult, str] | None:
    from screenspot_eval.backends.vllm.engine import VllmEngine
    from screenspot_eval.backends.vllm.switch import BorrowedEngine, self_check, switch_embedder

    engine = VllmEngine(
        cfg_a.engine,
        window=cfg_a.runtime.window,
        log_file=Path(str(cfg_a.out)).parent / VLLM_LOG,
        verbose=cfg_a.runtime.verbose,
    )
    try:
        ok, message = self_check(engine, a, b)
        log(message)
        if not ok:
            return None
        factory: BackendFactory = lambda _config: BorrowedEngine(engine)  # noqa: E731
        result_a = execute_run(cfg_a, Path(str(cfg_a.out)), backend_factory=factory, **kwargs)
        switch_embedder(engine, b)
        result_b = execute_run(cfg_b, Path(str(cfg_b.out)), backend_factory=factory, **kwargs)
    finally:
        engine.close()
    return (
        result_a,
        result_b,
        f"one engine: model loaded once, embedder switched in place; {message}",
    )


def compare_variants(
    config: RunConfig,
    a: str,
    b: str,
    *,
    engines: str = "auto",
    endpoint_a: str | None = None,
    endpoint_b: str | None = None,
    restart: bool = False,
    quiet: bool = False,
    resume_command: str | None = None,
    log: Any = print,
    seed: int = DEFAULT_SEED,
    n_resamples: int = DEFAULT_N_RESAMPLES,
) -> ComparisonResult:
    """``screenspot-eval compare --a A --b B``: run both sides into ``config.out``, compare."""
    for name, variant in (("--a", a), ("--b", b)):
        if variant not in VARIANTS:
            raise UserError(f"{name} must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if engines not in ENGINE_MODES:
        raise UserError(f"--engines must be one of {', '.join(ENGINE_MODES)}, not {engines!r}")
    if config.out is None:
        raise UserError("no results folder: pass --out results/NAME or set out in the config")
    out = Path(config.out)
    _, _, notes = run_ab(
        config,
        a,  # type: ignore[arg-type]
        b,  # type: ignore[arg-type]
        out,
        engines=engines,  # type: ignore[arg-type]
        endpoint_a=endpoint_a,
        endpoint_b=endpoint_b,
        restart=restart,
        quiet=quiet,
        resume_command=resume_command,
        log=log,
    )
    return compare_runs(
        out / f"a-{a}", out / f"b-{b}", out, notes=notes, seed=seed, n_resamples=n_resamples
    )
