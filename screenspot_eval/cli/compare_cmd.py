"""`screenspot-eval compare`: run post vs pre (or any two variants) and report, or compare runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from screenspot_eval.cli import options as o
from screenspot_eval.cli.run_cmds import fail, resolve_or_fail, run_overrides
from screenspot_eval.stats.paired import DEFAULT_N_RESAMPLES, DEFAULT_SEED

VARIANTS = ("pre", "post", "native")


def compare(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="Two existing run folders (RUN_A RUN_B) to compare instead."),
    ] = None,
    model: o.ModelOpt = None,
    a: o.VariantAOpt = "post",
    b: o.VariantBOpt = "pre",
    data: o.DataOpt = None,
    out: o.OutDirOpt = None,
    config: o.ConfigOpt = None,
    engines: o.EnginesOpt = "auto",
    endpoint_a: o.EndpointAOpt = None,
    endpoint_b: o.EndpointBOpt = None,
    allow_mismatch: o.AllowMismatchOpt = False,
    shared_only: o.SharedOnlyOpt = False,
    bootstrap_seed: o.BootstrapSeedOpt = DEFAULT_SEED,
    resamples: o.ResamplesOpt = DEFAULT_N_RESAMPLES,
    revision: o.RevisionOpt = None,
    data_revision: o.DataRevisionOpt = None,
    strict: o.StrictOpt = None,
    group: o.GroupOpt = None,
    application: o.ApplicationOpt = None,
    platform: o.PlatformOpt = None,
    ui_type: o.UiTypeOpt = None,
    id: o.IdOpt = None,
    limit: o.LimitOpt = None,
    language: o.LanguageOpt = None,
    prompt: o.PromptOpt = None,
    convention: o.ConventionOpt = None,
    temperature: o.TemperatureOpt = None,
    max_tokens: o.MaxTokensOpt = None,
    structured: o.StructuredOpt = None,
    max_soft_tokens: o.MaxSoftTokensOpt = None,
    dtype: o.DtypeOpt = None,
    seed: o.SeedOpt = None,
    max_model_len: o.MaxModelLenOpt = None,
    max_num_seqs: o.MaxNumSeqsOpt = None,
    gpu_memory_utilization: o.GpuMemOpt = None,
    tensor_parallel_size: o.TensorParallelOpt = None,
    data_parallel_size: o.DataParallelOpt = None,
    distributed_executor_backend: o.ExecutorOpt = None,
    enforce_eager: o.EnforceEagerOpt = None,
    engine_arg: o.EngineArgOpt = None,
    api_key: o.ApiKeyOpt = None,
    concurrency: o.ConcurrencyOpt = None,
    image_workers: o.ImageWorkersOpt = None,
    restart: o.RestartOpt = False,
    quiet: o.QuietOpt = False,
) -> None:
    """Compare two embedder variants with paired statistics, per slice.

    Runs A and B with identical settings into OUT/a-A and OUT/b-B (each resumable), pairs
    the samples by id and writes comparison.csv, flips.csv, comparison.md, deltas.png and
    report.html into OUT. With two run folders instead, compares those.

    Example: screenspot-eval compare --model google/gemma-4-31B-it --a post --b pre --out results/pr40411

    Example: screenspot-eval compare results/e4b-post results/e4b-pre --out results/e4b-ab
    """
    from screenspot_eval.report.pairing import UnpairedSamplesError
    from screenspot_eval.run.compare import (
        OneEngineUnavailableError,
        RunMismatchError,
        compare_runs,
    )
    from screenspot_eval.store.run_dir import RunDirError

    stats = {"seed": bootstrap_seed, "n_resamples": resamples}
    try:
        if runs:
            if len(runs) != 2:
                fail("give exactly two run folders: RUN_A RUN_B", code=2)
            target = out or runs[0].parent / f"{runs[0].name}-vs-{runs[1].name}"
            result = compare_runs(
                runs[0],
                runs[1],
                target,
                allow_mismatch=allow_mismatch,
                shared_only=shared_only,
                **stats,
            )
        else:
            values = {k: v for k, v in locals().items() if k in RUN_OPTION_NAMES}
            result = _run_and_compare(values, a, b, engines, endpoint_a, endpoint_b, stats)
    except (RunMismatchError, UnpairedSamplesError, RunDirError, OneEngineUnavailableError) as exc:
        fail(str(exc))
    typer.echo(result.terminal)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for name, path in result.files.items():
        typer.echo(f"{name}: {path}")


RUN_OPTION_NAMES = frozenset(
    [
        "model",
        "data",
        "out",
        "config",
        "revision",
        "data_revision",
        "strict",
        "group",
        "application",
        "platform",
        "ui_type",
        "id",
        "limit",
        "language",
        "prompt",
        "convention",
        "temperature",
        "max_tokens",
        "structured",
        "max_soft_tokens",
        "dtype",
        "seed",
        "max_model_len",
        "max_num_seqs",
        "gpu_memory_utilization",
        "tensor_parallel_size",
        "data_parallel_size",
        "distributed_executor_backend",
        "enforce_eager",
        "engine_arg",
        "api_key",
        "concurrency",
        "image_workers",
        "restart",
        "quiet",
    ]
)


def _run_and_compare(
    values: dict[str, Any],
    a: str,
    b: str,
    engines: str,
    endpoint_a: str | None,
    endpoint_b: str | None,
    stats: dict[str, int],
) -> Any:
    from screenspot_eval.cli.run_cmds import guarded, resume_command
    from screenspot_eval.run.compare import compare_runs, run_ab

    for name, variant in (("--a", a), ("--b", b)):
        if variant not in VARIANTS:
            fail(f"{name} must be one of {', '.join(VARIANTS)}, not {variant!r}", code=2)
    if engines not in ("auto", "one", "two"):
        fail("--engines must be auto, one or two", code=2)
    overrides = run_overrides(
        **{k: values.get(k) for k in RUN_OPTION_NAMES if k not in ("restart", "quiet")},
        norm=a,
        endpoint=None,
    )
    config = resolve_or_fail(values["config"], overrides)
    if config.out is None:
        fail("no results folder: pass --out results/NAME or set out in the config", code=2)
    out = Path(config.out)
    if engines == "one" and ({a, b} != {"pre", "post"} or endpoint_a or endpoint_b):
        fail("--engines one needs the in-process engine and the variants pre and post", code=2)

    def runner() -> Any:
        return run_ab(
            config,
            a,  # type: ignore[arg-type]
            b,  # type: ignore[arg-type]
            out,
            engines=engines,  # type: ignore[arg-type]
            endpoint_a=endpoint_a,
            endpoint_b=endpoint_b,
            restart=values["restart"],
            quiet=values["quiet"],
            resume_command=resume_command(),
            log=typer.echo,
        )

    _, _, notes = guarded(runner)
    return compare_runs(out / f"a-{a}", out / f"b-{b}", out, notes=notes, **stats)
