"""Fuse and rerank result lists you already have: TREC runs in, one TREC run out.

    python examples/python/fuse_and_rerank.py [RUN.trec ...] [-o out/fused.trec]

Fusion uses the library default (adaptive, per query). To also rerank the fused top 5 with a
vision-language model, point it at any OpenAI-compatible server (vLLM, Ollama, ...):

    OPENAI_BASE_URL=http://localhost:8000/v1 MMFUSE_VLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct \
        python examples/python/fuse_and_rerank.py
"""

import os
import sys
from pathlib import Path

from mmfuse import Qrels, Run, evaluate, fuse

here = Path(__file__).resolve().parent
args = sys.argv[1:]
out = Path(args.pop(args.index("-o") + 1) if "-o" in args else "out/fused.trec")
paths = [a for a in args if a != "-o"] or sorted((here / "runs").glob("*.trec"))

runs = [Run.read(p) for p in paths]  # TREC, Parquet or JSON, by extension
fused = fuse(runs).with_name("fused")
final = fused

if os.environ.get("MMFUSE_VLM_MODEL") and os.environ.get("OPENAI_BASE_URL"):
    from mmfuse.rerankers import VLMReranker, get_backend, load_queries

    vlm = VLMReranker(get_backend("openai", os.environ["MMFUSE_VLM_MODEL"]), top=5, grid=(2, 2))
    queries = load_queries(here.parent / "corpus" / "queries.tsv")
    final = vlm.rerank(queries, fused, here.parent / "corpus", retriever_runs=runs).with_name("reranked")
    print("reranked:", vlm.stats.summary())

out.parent.mkdir(parents=True, exist_ok=True)
final.write(out, tag=final.name)
qrels = Qrels.read(here.parent / "corpus" / "qrels.txt")
for run in [*runs, *([fused] if final is not fused else []), final]:
    m = evaluate(qrels, run, ["recall@1", "ndcg@10"])
    print(f"{run.name:<10} R@1 {m['recall@1']:.2f}  nDCG@10 {m['ndcg@10']:.2f}")
print(f"wrote {out}")
