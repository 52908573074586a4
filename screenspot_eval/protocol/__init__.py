"""The grounding protocol: prompt templates, coordinate conventions, answer parsing, scoring."""
