"""Names shared by the plugin, the model and the in-engine probe."""

from __future__ import annotations

from typing import Any

from screenspot_eval.backends.variant import Variant
from screenspot_eval.backends.vllm.engine_args import HF_CONFIG_KEY

VARIANTS: tuple[str, ...] = ("pre", "post", "native")
ARCHITECTURE = "Gemma4ForConditionalGeneration"
MODEL_CLASS_PATH = "screenspot_eval.backends.vllm.model:Gemma4WithSelectableEmbedder"
EMBEDDER_ATTRS: tuple[str, ...] = ("embed_vision", "embed_audio")


def requested_variant_from_config(hf_config: Any) -> Variant:
    value = getattr(hf_config, HF_CONFIG_KEY, None) or "native"
    if value not in VARIANTS:
        raise ValueError(
            f"hf_overrides {HF_CONFIG_KEY}={value!r} is not a known embedder variant {VARIANTS}"
        )
    return value
