"""screenspot-eval: ScreenSpot-Pro grounding evaluation of Gemma 4 in vLLM.

The package is split so the architecture reads from the folder listing:

- ``data``, ``protocol``, ``stats``, ``store``, ``report``: the pure core (no vLLM, no torch);
- ``backends``: the small model contract and the HTTP backend for OpenAI-compatible servers;
- ``vllm_ext``: everything that imports vLLM (embedder variants, plugin, engine, server launcher);
- ``cli``: thin Typer commands that parse arguments and call one function each.
"""

__version__ = "0.1.0"
