"""The ``vllm.general_plugins`` entry point: vLLM calls ``register`` in every process it starts."""

from __future__ import annotations

from screenspot_eval.backends.vllm.variants import ARCHITECTURE, MODEL_CLASS_PATH


def register() -> None:
    """Point vLLM's Gemma 4 architecture at our subclass (lazily: nothing heavy is imported).

    Without ``hf_overrides`` the subclass is exactly upstream's model, so having the plugin
    installed changes nothing for runs that do not ask for a variant.
    """
    from vllm import ModelRegistry

    ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS_PATH)
