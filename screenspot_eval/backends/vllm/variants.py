"""Names shared by the plugin, the model and the in-engine probe."""

from __future__ import annotations

from typing import Any

from screenspot_eval.backends.variant import PLUGIN_CLASS_FOR, VARIANTS, Variant
from screenspot_eval.backends.vllm.engine_args import HF_CONFIG_KEY

#: Where vLLM defines each architecture the plugin covers (its name keys Gemma 4 specific setup;
#: ``gemma4_unified`` exists from 0.32, and the plugin registers what the release has).
UPSTREAM_MODULES: dict[str, str] = {
    "Gemma4ForConditionalGeneration": "vllm.model_executor.models.gemma4_mm",
    "Gemma4UnifiedForConditionalGeneration": "vllm.model_executor.models.gemma4_unified",
}
#: vLLM architecture name -> (upstream module, our subclass's import path).
ARCHITECTURES: dict[str, tuple[str, str]] = {
    name: (UPSTREAM_MODULES[name], f"screenspot_eval.backends.vllm.model:{ours}")
    for name, ours in PLUGIN_CLASS_FOR.items()
}
EMBEDDER_ATTRS: tuple[str, ...] = ("embed_vision", "embed_audio")


def requested_variant_from_config(hf_config: Any) -> Variant:
    value = getattr(hf_config, HF_CONFIG_KEY, None) or "native"
    if value not in VARIANTS:
        raise ValueError(
            f"hf_overrides {HF_CONFIG_KEY}={value!r} is not a known embedder variant {VARIANTS}"
        )
    return value
