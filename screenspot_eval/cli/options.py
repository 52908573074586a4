"""Typer options defined once and reused by every command that needs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from screenspot_eval.backends.engine_args import EngineSettings

ENGINE = "Engine (vLLM)"
MODEL = "Model"

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="HF repo id or local checkpoint folder.", rich_help_panel=MODEL
    ),
]
NormOpt = Annotated[
    str,
    typer.Option(
        "--norm",
        help="Embedder variant: pre (HF reference), post (vLLM <= 0.19) or native (untouched).",
        rich_help_panel=MODEL,
    ),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="Model revision (hub).", rich_help_panel=MODEL)
]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Model dtype.", rich_help_panel=ENGINE)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Engine seed.", rich_help_panel=ENGINE)]
MaxModelLenOpt = Annotated[
    int | None, typer.Option("--max-model-len", help="Context length.", rich_help_panel=ENGINE)
]
MaxNumSeqsOpt = Annotated[
    int | None,
    typer.Option("--max-num-seqs", help="Max sequences batched at once.", rich_help_panel=ENGINE),
]
GpuMemOpt = Annotated[
    float | None,
    typer.Option(
        "--gpu-memory-utilization", help="Fraction of GPU memory.", rich_help_panel=ENGINE
    ),
]
TensorParallelOpt = Annotated[
    int,
    typer.Option(
        "--tensor-parallel-size", "--tp", help="Tensor parallel size.", rich_help_panel=ENGINE
    ),
]
DataParallelOpt = Annotated[
    int,
    typer.Option(
        "--data-parallel-size", "--dp", help="Data parallel size.", rich_help_panel=ENGINE
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--distributed-executor-backend",
        help="mp, ray, uni (passed to vLLM).",
        rich_help_panel=ENGINE,
    ),
]
EnforceEagerOpt = Annotated[
    bool,
    typer.Option(
        "--enforce-eager/--no-enforce-eager", help="Disable graph capture.", rich_help_panel=ENGINE
    ),
]
MaxSoftTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-soft-tokens",
        help="Image budget in soft tokens: 70, 140, 280, 560 or 1120 (default: the checkpoint's).",
        rich_help_panel=ENGINE,
    ),
]
EngineArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--engine-arg",
        help="Any other vLLM engine argument as key=value (value parsed as JSON when it can be).",
        rich_help_panel=ENGINE,
    ),
]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]


def parse_key_values(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=x", 'c={"k": 2}']`` -> ``{"a": 1, "b": "x", "c": {"k": 2}}``."""
    parsed: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}")
        try:
            parsed[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.replace("-", "_")] = raw
    return parsed


def engine_settings(
    *,
    model: str,
    norm: str,
    revision: str | None = None,
    dtype: str = "auto",
    seed: int = 0,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    gpu_memory_utilization: float | None = None,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    distributed_executor_backend: str | None = None,
    enforce_eager: bool = False,
    max_soft_tokens: int | None = None,
    engine_arg: list[str] | None = None,
) -> EngineSettings:
    """Options -> settings; a bad value becomes a clean usage error, not a traceback."""
    extra = parse_key_values(engine_arg)
    mm_processor_kwargs = extra.pop("mm_processor_kwargs", {})
    limit = extra.pop("limit_mm_per_prompt", None)
    try:
        return EngineSettings(
            model=model,
            norm=norm,  # type: ignore[arg-type]
            revision=revision,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            distributed_executor_backend=distributed_executor_backend,
            enforce_eager=enforce_eager,
            max_soft_tokens=max_soft_tokens,
            mm_processor_kwargs=mm_processor_kwargs,
            **({"limit_mm_per_prompt": limit} if limit is not None else {}),
            extra=extra,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
