"""vLLM's Gemma 4 model with the embedder placement taken from the HF config.

Registered under vLLM's own architecture name ``Gemma4ForConditionalGeneration`` (vLLM keys
Gemma 4 specific setup on that name). The choice travels inside the engine configuration as
``hf_overrides={"screenspot_embedder_norm": "pre"|"post"}``, so it reaches every engine-core
and worker process (multiprocess, Ray, ``vllm serve``) without environment variables.
Without that key the model is exactly upstream's (``native``).
"""

from __future__ import annotations

from vllm.model_executor.models.gemma4_mm import (
    Gemma4ForConditionalGeneration as UpstreamGemma4ForConditionalGeneration,
)

from screenspot_eval.backends.vllm.embedder import SelectableNormEmbedder
from screenspot_eval.backends.vllm.variants import EMBEDDER_ATTRS, requested_variant_from_config


class Gemma4WithSelectableEmbedder(UpstreamGemma4ForConditionalGeneration):
    """Upstream Gemma 4 whose vision (and audio) embedders follow the requested placement."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        variant = requested_variant_from_config(vllm_config.model_config.hf_config)
        self.screenspot_requested_variant = variant
        if variant == "native":
            return
        for name in EMBEDDER_ATTRS:
            native = getattr(self, name, None)
            if native is not None:
                setattr(self, name, SelectableNormEmbedder.replacing(native, variant))
