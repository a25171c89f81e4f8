"""Plug a custom retriever into the pipeline: any object with name, modality and search(queries, k) -> Run.

This one matches query words against the video file names, so "a yellow ball ..." finds v01_ball, which
no bundled text modality can (it is a visual query). It is fused with the index's OCR and ASR retrievers.

    python examples/python/custom_retriever.py [INDEX_DIR]
"""

import re
import sys
from pathlib import Path

from mmfuse import Pipeline, Run
from mmfuse.ingest import IndexConfig, index_folder

corpus = Path(__file__).resolve().parents[1] / "corpus"
index = Path(sys.argv[1] if len(sys.argv) > 1 else ".mmfuse-cache/example-index")
if not (index / "videos.lance").exists():
    index_folder(corpus, index, IndexConfig(modalities=["ocr", "asr", "meta"]))


class FileNameRetriever:
    name, modality = "filename", "text"

    def __init__(self, folder):
        self.videos = [p.stem for p in sorted(Path(folder).glob("v*.*"))]

    def search(self, queries, k=100):
        rows = [(qid, vid, len(set(re.findall(r"[a-z]+", text.lower())) & set(vid.lower().split("_"))))
                for qid, text in queries.items() for vid in self.videos]
        rows = [r for r in rows if r[2] > 0]
        return Run.from_arrays(*zip(*rows), name=self.name).cut(k) if rows else Run.from_dict({}, name=self.name)


pipe = Pipeline(retrievers=["ocr", "asr", FileNameRetriever(corpus)], index=index)
ranking = pipe.search({"q20": "a yellow ball on a dark blue background", "q18": "fireworks"}, k=3)

for qid in ranking.query_ids:
    print(qid, [(video, round(score, 3)) for video, score in ranking.query(qid)])
print("per retriever:", {run.name: len(run) for run in pipe.last.runs})
