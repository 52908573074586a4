"""A tiny, randomly initialised Gemma 4 checkpoint built offline (tests, demo, smoke tests)."""
