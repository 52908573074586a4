"""Typer options defined once and reused by every command that needs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from screenspot_eval.backends.vllm.engine_args import EngineSettings

ENGINE = "Engine (vLLM)"
MODEL = "Model"

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="HF repo id or local checkpoint folder.", rich_help_panel=MODEL
    ),
]
NormOpt = Annotated[
    str | None,
    typer.Option(
        "--norm",
        help="Embedder variant: pre (HF reference), post (vLLM <= 0.19) or native (untouched).",
        rich_help_panel=MODEL,
    ),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="Model revision (hub).", rich_help_panel=MODEL)
]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="Model dtype.", rich_help_panel=ENGINE)
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Engine seed.", rich_help_panel=ENGINE)]
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
    int | None,
    typer.Option(
        "--tensor-parallel-size", "--tp", help="Tensor parallel size.", rich_help_panel=ENGINE
    ),
]
DataParallelOpt = Annotated[
    int | None,
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
    bool | None,
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
OutDirOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Results folder (e.g. results/NAME).")
]


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


# --- run / compare options: all default to None so a --config file can supply them ------------

DATA = "Data"
PROMPT = "Prompt and decoding"
RUNTIME = "Runtime"

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML run config (configs/*.toml); options given here win."
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        "-d",
        help="Dataset: a folder in the official layout, a parquet file, or a hub id "
        "(default likaixin/ScreenSpot-Pro).",
        rich_help_panel=DATA,
    ),
]
DataRevisionOpt = Annotated[
    str | None,
    typer.Option("--data-revision", help="Hub revision of the dataset.", rich_help_panel=DATA),
]
StrictOpt = Annotated[
    bool | None,
    typer.Option(
        "--strict/--lenient",
        help="Strict (default): any invalid sample stops the run. Lenient: exclude and list it.",
        rich_help_panel=DATA,
    ),
]
GroupOpt = Annotated[
    list[str] | None, typer.Option("--group", help="Only these groups.", rich_help_panel=DATA)
]
ApplicationOpt = Annotated[
    list[str] | None,
    typer.Option("--application", help="Only these applications.", rich_help_panel=DATA),
]
PlatformOpt = Annotated[
    list[str] | None,
    typer.Option("--platform", help="Only these platforms.", rich_help_panel=DATA),
]
UiTypeOpt = Annotated[
    list[str] | None,
    typer.Option("--ui-type", help="Only text or icon targets.", rich_help_panel=DATA),
]
IdOpt = Annotated[
    list[str] | None, typer.Option("--id", help="Only these sample ids.", rich_help_panel=DATA)
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", min=0, help="At most this many samples.", rich_help_panel=DATA),
]
LanguageOpt = Annotated[
    str | None,
    typer.Option(
        "--language", help="Instruction language: en or cn (instruction_cn).", rich_help_panel=DATA
    ),
]
PromptOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        help="Prompt template: a built-in name (default gemma4-box2d) or a .toml path.",
        rich_help_panel=PROMPT,
    ),
]
ConventionOpt = Annotated[
    str | None,
    typer.Option(
        "--convention",
        help="Override the template's coordinate convention: yx-1000, xy-1000, xy-1, "
        "xy-pixels-sent, xy-pixels-original.",
        rich_help_panel=PROMPT,
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(
        "--temperature", help="Sampling temperature (0 = greedy).", rich_help_panel=PROMPT
    ),
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option("--max-tokens", min=1, help="Answer token limit.", rich_help_panel=PROMPT),
]
StructuredOpt = Annotated[
    bool | None,
    typer.Option(
        "--structured/--no-structured",
        help="Constrain decoding to the template's answer format (vLLM structured outputs).",
        rich_help_panel=PROMPT,
    ),
]
EndpointOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="OpenAI-compatible vLLM server URL(s) instead of the in-process engine "
        "(repeatable or comma-separated).",
        rich_help_panel=RUNTIME,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="SCREENSPOT_API_KEY", help="Server API key.", rich_help_panel=RUNTIME
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency", min=1, help="Requests in flight per endpoint.", rich_help_panel=RUNTIME
    ),
]
ImageWorkersOpt = Annotated[
    int | None,
    typer.Option("--image-workers", min=1, help="Image decode threads.", rich_help_panel=RUNTIME),
]
RestartOpt = Annotated[
    bool,
    typer.Option("--restart", help="Discard what the results folder holds and start over."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar (for logs).")]
PrintConfigOpt = Annotated[
    bool,
    typer.Option(
        "--print-config", help="Print the resolved config and vLLM engine arguments, then exit."
    ),
]


def split_endpoints(values: list[str] | None) -> tuple[str, ...] | None:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``; None when none given."""
    if not values:
        return None
    return tuple(part.strip() for v in values for part in v.split(",") if part.strip())


def engine_overrides(engine_arg: list[str] | None) -> dict[str, Any]:
    """``--engine-arg`` values as dotted config keys (known fields first, the rest as extra)."""
    extra = parse_key_values(engine_arg)
    dotted: dict[str, Any] = {}
    for known in ("mm_processor_kwargs", "limit_mm_per_prompt", *EngineSettings.model_fields):
        if known in extra and known != "extra":
            dotted[f"engine.{known}"] = extra.pop(known)
    if extra:
        dotted["engine.extra"] = extra
    return dotted


COMPARE = "Comparison"

VariantAOpt = Annotated[
    str, typer.Option("--a", help="Variant A (the baseline).", rich_help_panel=COMPARE)
]
VariantBOpt = Annotated[
    str, typer.Option("--b", help="Variant B (the change).", rich_help_panel=COMPARE)
]
EnginesOpt = Annotated[
    str,
    typer.Option(
        "--engines",
        help="auto: one engine with an in-place switch when both are pre/post and its "
        "self-check passes, else two; one; two (a fresh engine per variant).",
        rich_help_panel=COMPARE,
    ),
]
EndpointAOpt = Annotated[
    str | None,
    typer.Option("--endpoint-a", help="Server running variant A.", rich_help_panel=COMPARE),
]
EndpointBOpt = Annotated[
    str | None,
    typer.Option("--endpoint-b", help="Server running variant B.", rich_help_panel=COMPARE),
]
AllowMismatchOpt = Annotated[
    bool,
    typer.Option(
        "--allow-mismatch",
        help="Compare runs whose settings differ in more than the variant (differences listed).",
        rich_help_panel=COMPARE,
    ),
]
SharedOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--shared-only",
        help="Compare only the samples present in both runs (the others are listed).",
        rich_help_panel=COMPARE,
    ),
]
BootstrapSeedOpt = Annotated[
    int, typer.Option("--bootstrap-seed", help="Bootstrap seed.", rich_help_panel=COMPARE)
]
ResamplesOpt = Annotated[
    int,
    typer.Option("--resamples", min=100, help="Bootstrap resamples.", rich_help_panel=COMPARE),
]
