"""vLLM's Gemma 4 models with the embedder placement taken from the HF config.

Registered under vLLM's own architecture names (vLLM keys Gemma 4 specific setup on them):
the tower-based ``Gemma4ForConditionalGeneration`` and the encoder-free
``Gemma4UnifiedForConditionalGeneration`` (12B), which runs the same embedder class. The
choice travels inside the engine configuration as
``hf_overrides={"screenspot_embedder_norm": "pre"|"post"}``, so it reaches every engine-core
and worker process (multiprocess, Ray, ``vllm serve``) without environment variables.
Without that key each model is exactly upstream's (``native``).
"""

from __future__ import annotations

from torch import nn
from vllm.model_executor.models.gemma4_mm import (
    Gemma4ForConditionalGeneration as UpstreamGemma4ForConditionalGeneration,
)

from screenspot_eval.backends.vllm.embedder import SelectableNormEmbedder, is_loaded
from screenspot_eval.backends.vllm.variants import EMBEDDER_ATTRS, requested_variant_from_config


def install_selectable_embedders(model: nn.Module, hf_config: object) -> None:
    """Replace every loaded embedder by ours when a variant is asked for.

    An embedder vLLM did not load (audio limited to 0: a ``StageMissingLayer`` over a module
    on the meta device) stays as it is: there is nothing to wrap, and nothing calls it.
    """
    variant = requested_variant_from_config(hf_config)
    model.screenspot_requested_variant = variant
    if variant == "native":
        return
    for name in EMBEDDER_ATTRS:
        native = getattr(model, name, None)
        if native is not None and is_loaded(native):
            setattr(model, name, SelectableNormEmbedder.replacing(native, variant))


class Gemma4WithSelectableEmbedder(UpstreamGemma4ForConditionalGeneration):
    """Upstream Gemma 4 whose vision (and audio) embedders follow the requested placement."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        install_selectable_embedders(self, vllm_config.model_config.hf_config)


try:  # the encoder-free 12B arrived in vLLM 0.32 (gemma4_unified.py)
    from vllm.model_executor.models.gemma4_unified import (
        Gemma4UnifiedForConditionalGeneration as UpstreamGemma4UnifiedForConditionalGeneration,
    )
except ImportError:  # an older vLLM: the plugin registers the architecture only where it exists
    pass
else:

    class Gemma4UnifiedWithSelectableEmbedder(UpstreamGemma4UnifiedForConditionalGeneration):
        """Upstream encoder-free Gemma 4 (12B) whose embedders follow the requested placement."""

        def __init__(self, *, vllm_config, prefix: str = ""):
            super().__init__(vllm_config=vllm_config, prefix=prefix)
            install_selectable_embedders(self, vllm_config.model_config.hf_config)
