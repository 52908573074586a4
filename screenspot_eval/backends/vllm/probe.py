"""Functions that run inside vLLM workers (through ``LLM.apply_model``) and report back.

They live in an importable module because under ``spawn`` a function defined in ``__main__``
cannot be pickled to the workers. They return plain dicts (cheap to serialise).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from screenspot_eval.backends.vllm.embedder import (
    SelectableNormEmbedder,
    is_loaded,
    rms_norm_without_weight,
)
from screenspot_eval.backends.vllm.engine_args import HF_CONFIG_KEY
from screenspot_eval.backends.vllm.variants import EMBEDDER_ATTRS, requested_variant_from_config

PROBE_SEED = 1234
PROBE_TOKENS = 5


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _probe_input(in_dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(PROBE_SEED)
    # Non-zero mean and unequal scales per token: the two placements then differ clearly.
    x = (
        torch.randn(PROBE_TOKENS, in_dim, generator=gen)
        * torch.linspace(0.5, 4.0, PROBE_TOKENS)[:, None]
    )
    return (x + 0.3).to(device=device, dtype=dtype)


def _rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def _projection_matrix(module: nn.Module) -> torch.Tensor:
    """The projection as a dense (in_dim, out_dim) fp32 matrix, read by projecting the identity.

    vLLM's CPU backend repacks linear weights after loading (``weight`` is then not the
    matrix), so the map is measured through the layer itself; it has no bias.
    """
    projection = module.embedding_projection
    in_dim = int(getattr(projection, "input_size", 0) or projection.weight.shape[-1])
    param = next(projection.parameters())
    eye = torch.eye(in_dim, device=param.device, dtype=param.dtype)
    out = projection(eye)
    out = out[0] if isinstance(out, tuple) else out
    return out.float()


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(module.embedding_projection.parameters())
    return param.device, param.dtype


@torch.inference_mode()
def measure_embedder(module: nn.Module, eps: float) -> dict[str, Any]:
    """Run the embedder on a probe input and compare with both formulas in fp32."""
    matrix = _projection_matrix(module)
    in_dim, out_dim = int(matrix.shape[0]), int(matrix.shape[1])
    device, dtype = _device_dtype(module)
    x = _probe_input(in_dim, device, dtype)
    y = module(inputs_embeds=x).float()
    pre = rms_norm_without_weight(x.float(), eps) @ matrix
    post = rms_norm_without_weight(x.float() @ matrix, eps)
    err_pre, err_post = _rel_error(y, pre), _rel_error(y, post)
    # bf16 gives ~1e-2 relative error; a wrong placement gives order 1.
    tolerance = 5e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-3
    best = min(err_pre, err_post)
    measured = ("pre" if err_pre <= err_post else "post") if best <= tolerance else "unknown"
    declared = module.placement if isinstance(module, SelectableNormEmbedder) else None
    return {
        "class_path": _class_path(module),
        "declared_placement": declared,
        "measured_placement": measured,
        "in_dim": in_dim,
        "out_dim": out_dim,
        "norm_width": {"pre": in_dim, "post": out_dim}.get(measured),
        "rel_error_vs_pre": err_pre,
        "rel_error_vs_post": err_post,
    }


@torch.inference_mode()
def hf_reference_max_abs_diff(
    module: SelectableNormEmbedder, mm_config: Any, text_config: Any
) -> float:
    """Max |ours - HF transformers' Gemma4MultimodalEmbedder| on the probe input, in fp32.

    The reference gets the same projection (as the engine holds it) and the same input; both
    run in fp32, so the difference measures the formula, not the engine's dtype.
    """
    matrix = _projection_matrix(module).cpu()
    reference = _hf_embedder_class(mm_config)(mm_config, text_config).float().eval()
    reference.embedding_projection.weight.copy_(matrix.T)
    x = _probe_input(matrix.shape[0], torch.device("cpu"), torch.float32)
    ours = _fp32_copy(module)(inputs_embeds=x)
    return float((ours - reference(x)).abs().max())


def _hf_embedder_class(mm_config: Any) -> type[nn.Module]:
    """HF's embedder for this config: the encoder-free 12B's configs (``gemma4_unified_*``)
    have their own class (the same RMSNorm -> Linear)."""
    if str(getattr(mm_config, "model_type", "")).startswith("gemma4_unified"):
        from transformers.models.gemma4_unified.modeling_gemma4_unified import (
            Gemma4UnifiedMultimodalEmbedder,
        )

        return Gemma4UnifiedMultimodalEmbedder
    from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder

    return Gemma4MultimodalEmbedder


def _fp32_copy(module: SelectableNormEmbedder) -> SelectableNormEmbedder:
    """Our embedder with the engine's projection as an fp32 ``nn.Linear`` on CPU."""
    matrix = _projection_matrix(module).cpu()
    linear = nn.Linear(matrix.shape[0], matrix.shape[1], bias=False)
    linear.weight.data.copy_(matrix.T)
    return SelectableNormEmbedder(
        linear, module.in_dim, module.out_dim, module.eps, module.placement
    ).eval()


def embedder_report(model: nn.Module, with_hf_reference: bool = False) -> dict[str, Any]:
    """The report ``EmbedderReport`` is built from; runs in every worker via ``apply_model``."""
    import vllm

    config = model.config
    embedders, not_loaded = [], []
    for name in EMBEDDER_ATTRS:
        module = getattr(model, name, None)
        if module is None:
            continue
        if not is_loaded(module):  # e.g. audio limited to 0: nothing to run, nothing runs it
            not_loaded.append(name)
            continue
        mm_config = config.vision_config if name == "embed_vision" else config.audio_config
        info = measure_embedder(module, float(mm_config.rms_norm_eps))
        info["attribute"] = name
        if (
            with_hf_reference
            and isinstance(module, SelectableNormEmbedder)
            and module.placement == "pre"
        ):
            info["hf_reference_max_abs_diff"] = hf_reference_max_abs_diff(
                module, mm_config, config.text_config
            )
        embedders.append(info)
    return {
        "model_class": _class_path(model),
        "config_variant": requested_variant_from_config(config),
        "embedders": embedders,
        "not_loaded": not_loaded,
        "vllm_version": vllm.__version__,
        "vllm_plugins_env": os.environ.get("VLLM_PLUGINS"),
    }


def set_embedder_placement(model: nn.Module, placement: str) -> list[str]:
    """Switch every selectable embedder in place (one model load for an A/B).

    The model's config attribute follows, so later reports say which variant is active now
    rather than which one the engine was started with.
    """
    switched = []
    for name in EMBEDDER_ATTRS:
        module = getattr(model, name, None)
        if isinstance(module, SelectableNormEmbedder):
            module.set_placement(placement)  # type: ignore[arg-type]
            switched.append(name)
    if switched:
        setattr(model.config, HF_CONFIG_KEY, placement)
    return switched
