"""Names shared by the plugin, the model and the in-engine probe."""

from __future__ import annotations

from typing import Any

from screenspot_eval.backends.variant import VARIANTS, Variant
from screenspot_eval.backends.vllm.engine_args import HF_CONFIG_KEY

#: vLLM architecture name -> (upstream module, our subclass). Every Gemma 4 architecture that runs
#: ``Gemma4MultimodalEmbedder`` is covered: the tower-based family (E2B, E4B, 26B-A4B, 31B) and
#: the encoder-free 12B (``gemma4_unified``, which imports the embedder class by name, so only
#: a registration of its own reaches it). The names stay vLLM's own: vLLM keys Gemma 4
#: specific setup on them.
ARCHITECTURES: dict[str, tuple[str, str]] = {  # name -> (upstream module, our class)
    "Gemma4ForConditionalGeneration": (
        "vllm.model_executor.models.gemma4_mm",
        "screenspot_eval.backends.vllm.model:Gemma4WithSelectableEmbedder",
    ),
    "Gemma4UnifiedForConditionalGeneration": (
        "vllm.model_executor.models.gemma4_unified",
        "screenspot_eval.backends.vllm.model:Gemma4UnifiedWithSelectableEmbedder",
    ),
}
EMBEDDER_ATTRS: tuple[str, ...] = ("embed_vision", "embed_audio")
#: The embedder every run needs; the others (audio) may be left unloaded by vLLM.
REQUIRED_EMBEDDER = "embed_vision"


def requested_variant_from_config(hf_config: Any) -> Variant:
    value = getattr(hf_config, HF_CONFIG_KEY, None) or "native"
    if value not in VARIANTS:
        raise ValueError(
            f"hf_overrides {HF_CONFIG_KEY}={value!r} is not a known embedder variant {VARIANTS}"
        )
    return value
