"""The ``vllm.general_plugins`` entry point: vLLM calls ``register`` in every process it starts."""

from __future__ import annotations

import importlib.util

from screenspot_eval.backends.vllm.variants import ARCHITECTURES


def register() -> None:
    """Point vLLM's Gemma 4 architectures at our subclasses (lazily: nothing heavy is imported).

    Without ``hf_overrides`` each subclass is exactly upstream's model, so having the plugin
    installed changes nothing for runs that do not ask for a variant. An architecture whose
    upstream module this vLLM lacks (the 12B's ``gemma4_unified`` before 0.32) is left alone.
    """
    from vllm import ModelRegistry

    for architecture, (upstream_module, class_path) in ARCHITECTURES.items():
        if importlib.util.find_spec(upstream_module) is not None:
            ModelRegistry.register_model(architecture, class_path)
