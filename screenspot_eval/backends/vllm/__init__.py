"""Everything that imports vLLM or torch: the embedder, plugin, probe, switch, engine, launcher.

Submodules import vllm and torch lazily or at their top; this package itself imports neither,
so pure modules (``engine_args``) can be imported without them.
"""
