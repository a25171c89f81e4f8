"""Helpers shared by the pipeline/demo/example tests: one index of the sample corpus per test session.

The index lives in the session's base temp folder under a fixed name, so test_demo (which builds it through
``run_demo``), test_examples and test_pipeline all reuse the same one and the corpus is indexed once.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "corpus"


def demo_cache(tmp_path_factory) -> Path:
    """The session-wide demo cache folder (index in ``demo-index``, S-Grids in ``grids``)."""
    # MMFUSE_TEST_CACHE keeps the index between sessions while developing; CI builds it fresh in the temp folder.
    keep = os.environ.get("MMFUSE_TEST_CACHE")
    return Path(keep) if keep else tmp_path_factory.getbasetemp() / "mmfuse-demo-cache"


def corpus_index(tmp_path_factory) -> Path:
    """The sample corpus indexed with OCR, ASR and metadata (the bundled models), built on first use."""
    import pytest

    if not (CORPUS / "queries.tsv").exists():
        pytest.skip(f"sample corpus missing at {CORPUS}")
    idx = demo_cache(tmp_path_factory) / "demo-index"
    if not (idx / "videos.lance").exists():
        from mmfuse.ingest import IndexConfig, index_folder

        summary = index_folder(CORPUS, idx, IndexConfig(modalities=["ocr", "asr", "meta"]))
        assert not summary.failed, summary.failed
    return idx
