"""Everything that imports vLLM: embedder variants, the plugin, the engine and server backends."""
