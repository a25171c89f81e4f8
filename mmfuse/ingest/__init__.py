"""Ingest: media decoding (PyAV), planning an indexing run over a folder, per-file/per-segment extraction, and the two
engines (local threads, Ray Data) that write the index."""
