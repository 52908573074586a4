"""Model backends behind one small contract (in-process vLLM engine, OpenAI-compatible servers)."""
