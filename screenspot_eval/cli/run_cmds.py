"""`screenspot-eval run` and `report`: thin wrappers that parse options and call the run layer."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from screenspot_eval.cli import options as o


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


def run_overrides(**values: Any) -> dict[str, Any]:
    """Command-line values as dotted config keys; ``None`` means "not given"."""
    v = values
    from_engine_args = o.engine_overrides(v["engine_arg"])
    listed = {k: tuple(v[k]) if v[k] else None for k in ("group", "application", "platform")}
    overrides: dict[str, Any] = {
        "engine.model": v["model"],
        "engine.norm": v["norm"],
        "engine.revision": v["revision"],
        "engine.dtype": v["dtype"],
        "engine.seed": v["seed"],
        "engine.max_model_len": v["max_model_len"],
        "engine.max_num_seqs": v["max_num_seqs"],
        "engine.gpu_memory_utilization": v["gpu_memory_utilization"],
        "engine.tensor_parallel_size": v["tensor_parallel_size"],
        "engine.data_parallel_size": v["data_parallel_size"],
        "engine.distributed_executor_backend": v["distributed_executor_backend"],
        "engine.enforce_eager": v["enforce_eager"],
        "engine.max_soft_tokens": v["max_soft_tokens"],
        "data.source": v["data"],
        "data.revision": v["data_revision"],
        "data.strict": v["strict"],
        "data.selection.groups": listed["group"],
        "data.selection.applications": listed["application"],
        "data.selection.platforms": listed["platform"],
        "data.selection.ui_types": tuple(v["ui_type"]) if v["ui_type"] else None,
        "data.selection.ids": tuple(v["id"]) if v["id"] else None,
        "data.selection.limit": v["limit"],
        "data.selection.language": v["language"],
        "prompt.template": v["prompt"],
        "prompt.convention": v["convention"],
        "sampling.temperature": v["temperature"],
        "sampling.max_tokens": v["max_tokens"],
        "sampling.structured": v["structured"],
        "sampling.seed": v["seed"],
        "runtime.endpoints": o.split_endpoints(v["endpoint"]),
        "runtime.api_key": v["api_key"],
        "runtime.concurrency": v["concurrency"],
        "runtime.image_workers": v["image_workers"],
        "out": str(v["out"]) if v["out"] is not None else None,
    }
    clash = sorted(k for k in from_engine_args if overrides.get(k) is not None)
    if clash:
        names = ", ".join(k.removeprefix("engine.") for k in clash)
        fail(f"{names} given both as an option and as --engine-arg; give it once", code=2)
    return {**overrides, **from_engine_args}


def run(
    model: o.ModelOpt = None,
    norm: o.NormOpt = None,
    data: o.DataOpt = None,
    out: o.OutDirOpt = None,
    config: o.ConfigOpt = None,
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
    endpoint: o.EndpointOpt = None,
    api_key: o.ApiKeyOpt = None,
    concurrency: o.ConcurrencyOpt = None,
    image_workers: o.ImageWorkersOpt = None,
    restart: o.RestartOpt = False,
    quiet: o.QuietOpt = False,
    print_config: o.PrintConfigOpt = False,
) -> None:
    """Evaluate one model and embedder variant on ScreenSpot-Pro, resumably.

    Writes predictions.jsonl (as samples finish), manifest.json, samples.csv, metrics.csv,
    screenspot_pro_results.json (official format) and summary.md into --out. Re-running the
    same command resumes; a different configuration is refused unless --restart.

    Example: screenspot-eval run --model google/gemma-4-E4B-it --norm pre --out results/e4b-pre
    """
    given = run_overrides(**{k: v for k, v in locals().items() if k != "print_config"})
    resolved = resolve_or_fail(config, given)
    if print_config:
        typer.echo(json.dumps(describe_config(resolved), indent=2))
        return
    execute_or_fail(resolved, restart=restart, quiet=quiet)


def resolve_or_fail(config: Path | None, overrides: dict[str, Any]) -> Any:
    from screenspot_eval.run.config import ConfigError, resolve_config

    try:
        return resolve_config(config, overrides)
    except ConfigError as exc:
        fail(str(exc), code=2)


def describe_config(config: Any) -> dict[str, Any]:
    """The resolved configuration and the exact ``vllm.LLM`` keyword arguments it gives."""
    from screenspot_eval.backends.vllm.engine_args import llm_kwargs

    return {"config": config.model_dump(mode="json"), "llm_kwargs": llm_kwargs(config.engine)}


def guarded(action: Callable[[], Any]) -> Any:
    """Run ``action``; turn every expected failure into a short error and an exit code."""
    from screenspot_eval.backends.variant import VariantMismatchError
    from screenspot_eval.data.errors import DatasetError
    from screenspot_eval.protocol.prompts import PromptTemplateError
    from screenspot_eval.run.session import RunAbortedError, RunRefusedError
    from screenspot_eval.store.run_dir import RunDirError

    try:
        return action()
    except RunAbortedError as exc:
        typer.echo(f"error: {exc}", err=True)
        if exc.resume:
            typer.echo(f"resume with: {exc.resume}", err=True)
        raise typer.Exit(code=130 if "interrupted" in str(exc) else 1) from exc
    except (DatasetError, PromptTemplateError, RunRefusedError, RunDirError) as exc:
        fail(str(exc))
    except VariantMismatchError as exc:
        fail(f"embedder check failed, nothing was evaluated: {exc}")


def resume_command() -> str:
    """The command line that continues this run (the same one, without --restart)."""
    return shlex.join(["screenspot-eval", *[a for a in sys.argv[1:] if a != "--restart"]])


def execute_or_fail(config: Any, *, restart: bool, quiet: bool) -> Any:
    """Run one configuration and print the final table and the files written."""
    from screenspot_eval.report.run_exports import leaderboard_markdown
    from screenspot_eval.run.session import execute_run
    from screenspot_eval.store.records import records_frame

    if config.out is None:
        fail("no results folder: pass --out results/NAME or set out in the config", code=2)
    result = guarded(
        lambda: execute_run(
            config, Path(config.out), restart=restart, quiet=quiet, resume_command=resume_command()
        )
    )
    frame = records_frame(result.records)
    if len(frame):
        typer.echo(leaderboard_markdown(frame))
    for name, path in result.exports.items():
        typer.echo(f"{name}: {path}")
    return result


def report(
    run_dir: Annotated[Path, typer.Argument(help="A results folder written by `run`.")],
) -> None:
    """Regenerate samples.csv, metrics.csv, the official JSON and summary.md from the records.

    Example: screenspot-eval report results/e4b-pre
    """
    from screenspot_eval.report.run_exports import write_run_exports
    from screenspot_eval.store.run_dir import RunDir, RunDirError

    store = RunDir(run_dir)
    try:
        manifest = store.read_manifest()
        records, repair = store.read_records()
    except RunDirError as exc:
        fail(str(exc))
    if manifest is None:
        fail(f"{run_dir} has no manifest.json: is it a results folder?")
    if repair.truncated_bytes:
        typer.echo(f"note: ignored a truncated last line ({repair.truncated_bytes} bytes)")
    exports = write_run_exports(run_dir, records, manifest)
    typer.echo(exports["summary"].read_text())
    for name, path in exports.items():
        typer.echo(f"{name}: {path}")
