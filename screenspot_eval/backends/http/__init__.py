"""Talk to vLLM's OpenAI-compatible servers: payloads, a connection pool, health and routes."""
