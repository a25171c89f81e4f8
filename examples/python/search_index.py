"""Search an index: build one over the sample corpus (first run only), then query every modality and fuse.

    python examples/python/search_index.py [INDEX_DIR]
"""

import sys
from pathlib import Path

from mmfuse import Pipeline
from mmfuse.ingest import IndexConfig, index_folder

corpus = Path(__file__).resolve().parents[1] / "corpus"
index = Path(sys.argv[1] if len(sys.argv) > 1 else ".mmfuse-cache/example-index")

if not (index / "videos.lance").exists():  # `mmfuse index examples/corpus --index DIR` does the same
    index_folder(corpus, index, IndexConfig(modalities=["ocr", "asr", "meta"]))

pipe = Pipeline(index=index)  # every retriever the index supports, fused with the library default
result = pipe.run({"q1": "lighthouse", "q2": "the train to Chicago"}, k=3)

for qid, text in result.queries.items():
    print(f"{qid} {text!r}")
    for rank, (video, score) in enumerate(result.final.query(qid), 1):
        seen_by = [r.name for r in result.runs if qid in r and video in r[qid]]
        print(f"  {rank}. {video:<14} {score:7.3f}   found by: {', '.join(seen_by)}")
