"""The run store: typed JSONL records, the manifest, resume and the results-folder lock."""
