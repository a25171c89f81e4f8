"""Pipeline: retrievers (and their runs with language-model query expansion) -> fusion -> optional VLM reranker, built
in Python or from a TOML config."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.config import PipelineConfig, load_config, parse_config
from mmfuse.encoders import load_encoder
from mmfuse.errors import ConfigError, InputError, ModelError, ParameterError, suggest
from mmfuse.expand import ExpansionReport, QueryExpander, build_expander
from mmfuse.fusion import fuse, get_method
from mmfuse.rerankers import build_reranker
from mmfuse.retrievers import VectorRetriever, load_retriever, plugin_modality, retrievers_for_index
from mmfuse.runs import Run
from mmfuse.store.lance import IndexStore

Progress = Callable[[int, int, str], None]


@dataclass
class PipelineResult:
    """Everything one ``Pipeline.run`` produced: each retriever's run (then each retriever's expanded run, named
    ``NAME@METHOD``, when the pipeline expands queries), the fused run, the reranked run."""

    queries: dict[str, str]
    runs: list["Run"]  # one per retriever, named after it, ``depth`` deep, every query present
    fused: "Run"  # the fusion of ``runs``, cut to max(k, rerank top)
    reranked: "Run | None"  # the fused run after the VLM, when a reranker is set
    final: "Run"  # what ``search`` returns: reranked (or fused) cut to ``k``
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rerank_stats: Any = None
    fusion: str = "default"
    texts: "SegmentTexts | None" = None  # matched text per segment, for hits (index-backed pipelines)
    expansion: ExpansionReport | None = None  # what the language model made of each query, with the prompt's hash

    def by_name(self) -> dict[str, "Run"]:
        """Each retriever's run by name, then ``fused`` (and ``reranked``) - convenient for display and eval."""
        out = {r.name: r for r in self.runs}
        out["fused"] = self.fused
        if self.reranked is not None:
            out["reranked"] = self.reranked
        return out

    def entries(self, run: "Run", qid: str) -> list[dict[str, Any]]:
        """One query's list of ``run`` as dicts: rank, video_id, score and the evidence (segment_id, start, end,
        and the segment's matched text when known)."""
        where = np.flatnonzero(run.query_ids == qid)
        if where.size == 0:
            return []
        lo, hi = int(run.offsets[where[0]]), int(run.offsets[where[0] + 1])
        ev = run.evidence or {}
        out = []
        for rank, j in enumerate(range(lo, hi), 1):
            e: dict[str, Any] = {"rank": rank, "video_id": str(run.doc_ids[run.doc_idx[j]]), "score": float(run.scores[j])}
            if "segment_id" in ev:
                e["segment_id"] = str(ev["segment_id"][j])
            for c in ("start", "end"):
                if c in ev:
                    e[c] = float(ev[c][j])
            if self.texts is not None and run.name != "fused" and "segment_id" in e:
                text = self.texts.get(run.name, e["segment_id"])
                if text:
                    e["text"] = text
                lang = self.texts.language(run.name, e["segment_id"])
                if lang:
                    e["language"] = lang
            out.append(e)
        return out

    def hits(self, qid: str) -> list[dict[str, Any]]:
        """The final ranking of query ``qid`` joined with every retriever's view of each hit: for each video its
        rank and score, and under ``modalities`` the rank, score, segment, time span and matched text that each
        retriever which found it gave it (what ``mmfuse search`` shows and ``--json``/``serve`` return)."""
        per = {r.name: {e["video_id"]: e for e in self.entries(r, qid)} for r in self.runs}
        hits = []
        for e in self.entries(self.final, qid):
            mods = {m: {kk: v for kk, v in lst[e["video_id"]].items() if kk != "video_id"}
                    for m, lst in per.items() if e["video_id"] in lst}
            hits.append({"rank": e["rank"], "video_id": e["video_id"], "score": e["score"], "modalities": mods})
        return hits

    def as_dict(self, qid: str, per_modality: bool = False, k: int | None = None) -> dict[str, Any]:
        """The JSON object of one query, as ``mmfuse search --json`` prints it and ``mmfuse serve`` returns it."""
        doc: dict[str, Any] = {"query": self.queries.get(qid, ""), "fusion": self.fusion, "hits": self.hits(qid),
                               "warnings": list(self.warnings)}
        if self.expansion is not None:
            doc["expansion"] = self.expansion.as_dict(qid)
        if per_modality:
            n = k or len(doc["hits"])
            doc["per_modality"] = {r.name: self.entries(r, qid)[:n] for r in self.runs}
        return doc


class SegmentTexts:
    """The text each retriever matched in a segment (OCR line, transcript, translation, caption, metadata), and the
    language Whisper detected in its speech, looked up by segment id.

    Loaded from the index once, on first use, as sorted id arrays (a binary search per lookup: no per-segment
    Python objects, so a 1M-segment index costs two arrays, not a dict of a million strings)."""

    COLUMNS = {"ocr": "ocr_text", "asr": "asr_text", "asr_en": "asr_en_text", "caption": "caption_text",
               "asr_lang": "asr_lang"}

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._cols: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self._cols is None:
            seg = self.store.segments()
            ids = np.asarray(seg["segment_id"]).astype(str)
            order = np.argsort(ids, kind="stable")
            cols = {m: (ids[order], np.asarray(seg[c], dtype=object)[order]) for m, c in self.COLUMNS.items() if c in seg}
            meta = self.store.meta_rows()
            mids = np.asarray(meta["segment_id"]).astype(str)
            morder = np.argsort(mids, kind="stable")
            cols["meta"] = (mids[morder], np.asarray(meta["text"], dtype=object)[morder])
            self._cols = cols
        return self._cols

    def get(self, retriever: str, segment_id: str) -> str | None:
        """The text of ``segment_id`` that ``retriever`` (``ocr``, ``asr``, ``asr_dense``, ``meta``, ``asr@q2e``
        ...) matched."""
        col = self._load().get(retriever.partition("@")[0].removesuffix("_dense"))
        if col is None:
            return None
        ids, texts = col
        i = int(np.searchsorted(ids, segment_id))
        return str(texts[i]) if i < ids.size and ids[i] == segment_id and texts[i] else None

    def language(self, retriever: str, segment_id: str) -> str | None:
        """The language of the speech in ``segment_id``, for the speech retrievers (``asr``, ``asr_en``, their dense
        and expanded runs)."""
        return self.get("asr_lang", segment_id) if retriever.partition("@")[0].startswith("asr") else None


def _queries(queries: Mapping[str, str] | Sequence[str] | str, warn: Callable[[str], None]) -> dict[str, str]:
    """``{query_id: text}`` from a dict, a list of texts or one text. Empty or whitespace-only texts are an error
    when no query is left, else each is dropped from retrieval with a warning naming its id (it keeps an empty list
    in every output run)."""
    if isinstance(queries, str):
        queries = {"0": queries}
    if isinstance(queries, Mapping):
        out = {str(k): str(v) for k, v in queries.items()}
    else:
        out = {str(i): str(t) for i, t in enumerate(queries)}
    if not out:
        raise InputError("no queries given")
    blank = [q for q, t in out.items() if not t.strip()]
    if len(blank) == len(out):
        which = f"query {blank[0]!r} is" if len(blank) == 1 else f"all {len(blank)} queries are"
        raise InputError(f"{which} empty; give some text to search for")
    for q in blank:
        warn(f"query {q!r} is empty or whitespace only: no results for it")
    return out


class Pipeline:
    """Retrieve with several retrievers, fuse their runs, optionally rerank the top with a VLM.

    ``retrievers``: retriever objects (anything with ``name``, ``modality``, ``search(queries, k) -> Run``)
    and/or names of retrievers over ``index`` (``"ocr"``, ``"asr"``, ``"asr_dense"``, ``"meta"``, ``"meta_dense"``,
    ``"visual"``, ``"audio"``, plug-in names; each name picks exactly one);
    ``None`` = every modality of the index. ``fusion``: a method name from ``mmfuse.fusion.methods()``, ``None``
    for the library default, or a callable ``runs -> Run``. ``fusion_params`` go to ``mmfuse.fusion.fuse``
    (e.g. ``{"k": 60}``), as do ``norm`` and ``weights``. ``depth``: candidates each retriever contributes.
    ``reranker``: a :class:`mmfuse.rerankers.VLMReranker` (or anything with the same ``rerank`` method);
    ``videos`` tells it where the files are (a folder or ``{video_id: path}``; default: the paths in the index).
    ``aggregation``/``pooling``/``clip_encoder``/``clap_encoder`` configure the index-backed retrievers.
    ``expand``: query expansion with a language model, a method name (``"q2e"``, ``"hyde"``, ``"lamer"``: the model
    from ``$MMFUSE_LLM_BASE_URL``/``$MMFUSE_LLM_MODEL``, see :func:`mmfuse.expand.build_expander`) or a
    :class:`mmfuse.expand.QueryExpander`; each retriever's expanded run is fused with the others (weights given per
    retriever apply to its expanded run too).
    An index is data, so the plug-in modules it names are imported only when installed as ``mmfuse.retrievers``
    entry points or named by the user: in ``plugins`` or as a reference in ``retrievers`` (``"pkg.mod:Class"``).
    """

    def __init__(self, retrievers: Sequence[Any] | None = None, fusion: str | Callable | None = None,
                 fusion_params: Mapping[str, Any] | None = None, reranker: Any = None,
                 index: str | os.PathLike | None = None, *, norm: str | None = None,
                 weights: Sequence[float] | None = None, depth: int = 100, videos: Any = None,
                 aggregation: str = "max", pooling: str = "mean", clip_encoder: Any = None,
                 clap_encoder: Any = None, dense: bool = True,
                 retriever_options: Mapping[str, Mapping[str, Any]] | None = None, expand: Any = None,
                 plugins: Sequence[str] = ()) -> None:
        if retrievers is not None and not isinstance(retrievers, (list, tuple)):
            retrievers = [retrievers]
        if retrievers is not None and len(retrievers) == 0:
            raise ParameterError("retrievers: the list is empty; pass None to use every modality of the index")
        if index is None and (retrievers is None or any(isinstance(r, str) for r in retrievers)):
            raise ParameterError("index: needed to search modalities by name; pass index=DIR or retriever objects")
        for r in retrievers or ():
            if not isinstance(r, str) and not callable(getattr(r, "search", None)):
                raise ParameterError(f"retrievers: {type(r).__name__} has no search(queries, k) method")
        if int(depth) < 1:
            raise ParameterError(f"depth must be >= 1, got {depth}")
        if fusion is not None and not callable(fusion):
            get_method(fusion)  # unknown names fail here, with a suggestion, not after retrieval
        if isinstance(expand, str):
            expand = build_expander(expand)
        if expand is not None and not callable(getattr(expand, "expand", None)):
            raise ParameterError(f"expand: {type(expand).__name__} is neither a method name nor a QueryExpander")
        self.retriever_specs = list(retrievers) if retrievers is not None else None
        self.fusion = fusion
        self.fusion_params = dict(fusion_params or {})
        self.norm = norm
        self.weights = list(weights) if weights is not None else None
        self.depth = int(depth)
        self.reranker = reranker
        self.index = str(index) if index is not None else None
        self.videos = videos
        self.aggregation = aggregation
        self.pooling = pooling
        self.clip_encoder = clip_encoder
        self.clap_encoder = clap_encoder
        self.dense = dense
        self.retriever_options = {k: dict(v) for k, v in (retriever_options or {}).items()}
        self.expander: QueryExpander | None = expand
        self.plugins = list(plugins)
        self.warnings: list[str] = []
        self.last: PipelineResult | None = None
        self._retrievers: list[Any] | None = None
        self._store: Any = None
        self._segment_texts: SegmentTexts | None = None

    # ------------------------------------------------------------------------------------------------- building
    @property
    def store(self) -> Any:
        """The opened :class:`mmfuse.store.lance.IndexStore` (None without an index)."""
        if self._store is None and self.index is not None:
            self._store = IndexStore.open(self.index)
        return self._store

    def retrievers(self) -> list[Any]:
        """The retriever objects, resolved once (index modalities whose model cannot load become warnings)."""
        if self._retrievers is not None:
            return self._retrievers
        out: list[Any] = []
        specs = self.retriever_specs
        if specs is None:
            out += self._from_index(None, {})
        else:
            for r in specs:
                if isinstance(r, str):
                    opts = self.retriever_options.get(r, {})
                    got = self._from_index([r], opts)
                    if not got and not opts.get("optional"):
                        known = sorted(self.store.specs())
                        self.warnings.append(f"retriever {r!r} skipped: not in index {self.index} "
                                             f"(it has {', '.join(known) or 'nothing'})")
                    out += got
                else:
                    out.append(r)
        if not out:
            raise InputError("pipeline: no retriever can search"
                             + (f" ({'; '.join(self.warnings)})" if self.warnings else ""))
        self._retrievers = out
        return out

    def _from_index(self, modalities: list[str] | None, opts: Mapping[str, Any]) -> list[Any]:
        kw = dict(aggregation=self.aggregation, pooling=self.pooling, clip_encoder=self.clip_encoder,
                  clap_encoder=self.clap_encoder, dense=self.dense)
        kw.update({k: v for k, v in opts.items() if k in kw})
        got = retrievers_for_index(self.store, modalities=modalities, plugins=self.plugins, warn=self._warn, **kw)
        if modalities is not None:  # a name or plug-in reference picks exactly that one ("asr" is not "asr_dense")
            name = plugin_modality(self.store, modalities[0]) or modalities[0]
            got = [g for g in got if getattr(g, "name", None) == name]
        return got

    def _warn(self, msg: str) -> None:
        if msg not in self.warnings:  # index retrievers are resolved one name at a time: say each thing once
            self.warnings.append(msg)

    def video_paths(self) -> Any:
        """Where the reranker finds each video: ``videos`` as given, else the paths recorded in the index."""
        if self.videos is not None:
            return self.videos
        if self.store is not None:
            return {vid: row["path"] for vid, row in self.store.video_states().items()}
        raise ParameterError("reranking needs the video files: pass videos=DIR (or {video_id: path}) or an index")

    # ------------------------------------------------------------------------------------------------- running
    def run(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 10,
            progress: Progress | None = None, batch_size: int | None = None) -> PipelineResult:
        """Retrieve, fuse and (optionally) rerank; returns every intermediate run (see :class:`PipelineResult`).

        This is the engine's one retrieve -> fuse path: ``mmfuse search`` (single and batch), the demo and the
        rerank-after-search path all call it, so they rank and score identically. Every output run has every query
        (in the given order), with no entries where nothing was found. ``batch_size``: run the queries in batches of
        this many (``progress`` then counts queries done; the results are the same as in one batch, since retrieval
        and fusion are per query).
        """
        if isinstance(k, bool) or int(k) < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        warnings: list[str] = []
        qs = _queries(queries, warnings.append)
        if batch_size is not None:
            if isinstance(batch_size, bool) or int(batch_size) < 1:
                raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
            if len(qs) > int(batch_size):
                return self._run_batches(qs, int(k), int(batch_size), progress, warnings)
        qids = list(qs)
        asked = {q: t for q, t in qs.items() if t.strip()}
        timings: dict[str, float] = {}
        rets = self.retrievers()
        top = int(getattr(self.reranker, "top", 0) or 0) if self.reranker is not None else 0
        depth = max(self.depth, int(k), top)
        runs, used = [], []
        stages = len(rets) + 1 + (self.reranker is not None) + (self.expander is not None)
        for i, r in enumerate(rets):
            name = str(getattr(r, "name", f"retriever{i}"))
            if progress:
                progress(i, stages, f"retrieve {name}")
            t0 = time.perf_counter()
            try:
                run = r.search(asked, depth)
            except ModelError as e:
                warnings.append(f"{name} skipped: {e}")
                continue
            timings[f"retrieve:{name}"] = time.perf_counter() - t0
            runs.append(run.with_name(name))
            used.append(r)
        if not runs:
            raise InputError("pipeline: no retriever could search" + (f" ({'; '.join(warnings)})" if warnings else ""))
        runs = self._unique_names(runs)
        expansion = None
        if self.expander is not None:
            if progress:
                progress(len(rets), stages, f"expand {self.expander.method}")
            t0 = time.perf_counter()
            more, expansion = self.expander.expand(asked, list(zip(used, runs)), depth, texts=self._texts())
            warnings += expansion.warnings
            runs += more
            timings["expand"] = time.perf_counter() - t0
        runs = [r.ensure_queries(qids) for r in runs]
        if progress:
            progress(stages - 1 - (self.reranker is not None), stages, "fuse")
        t0 = time.perf_counter()
        fused = self._fuse(runs, qids).cut(max(int(k), top)).with_name("fused")
        timings["fuse"] = time.perf_counter() - t0
        reranked = stats = None
        final = fused
        if self.reranker is not None:
            if progress:
                progress(stages - 1, stages, "rerank")
            t0 = time.perf_counter()

            def rerank_progress(d: int, t: int, label: str) -> None:
                progress(stages - 1, stages, f"rerank {d}/{t}")

            sub = rerank_progress if progress else None
            reranked = self.reranker.rerank(qs, fused, self.video_paths(), retriever_runs=runs,
                                            progress=sub).with_name("reranked")
            stats = getattr(self.reranker, "stats", None)
            timings["rerank"] = time.perf_counter() - t0
            final = reranked
        if progress:
            progress(stages, stages, "done")
        res = PipelineResult(queries=qs, runs=runs, fused=fused, reranked=reranked, final=final.cut(int(k)),
                             warnings=self.warnings + warnings, timings=timings, rerank_stats=stats,
                             fusion=self.fusion_name, texts=self._texts(), expansion=expansion)
        self.last = res
        return res

    def _run_batches(self, qs: dict[str, str], k: int, size: int, progress: Progress | None,
                     warnings: list[str]) -> PipelineResult:
        ids = list(qs)
        parts: list[PipelineResult] = []
        for start in range(0, len(ids), size):
            if progress:
                progress(start, len(ids), "queries")
            chunk = {q: qs[q] for q in ids[start:start + size]}
            if not any(t.strip() for t in chunk.values()):  # a batch of blank queries: nothing to retrieve
                continue
            parts.append(self.run(chunk, k))
        if progress:
            progress(len(ids), len(ids), "queries")
        if not parts:
            raise InputError("every query is empty; give some text to search for")
        first = parts[0]
        seen = set(warnings)
        for w in (w for p in parts for w in p.warnings):
            if w not in seen:
                seen.add(w)
                warnings.append(w)
        timings: dict[str, float] = {}
        for part in parts:
            for key, t in part.timings.items():
                timings[key] = timings.get(key, 0.0) + t
        reports = [p.expansion for p in parts if p.expansion is not None]
        res = PipelineResult(
            queries=qs, runs=[_concat([r for p in parts for r in p.runs if r.name == name], ids)
                              for name in dict.fromkeys(r.name for p in parts for r in p.runs)],
            fused=_concat([p.fused for p in parts], ids),
            reranked=_concat([p.reranked for p in parts], ids) if first.reranked is not None else None,
            final=_concat([p.final for p in parts], ids), warnings=warnings, timings=timings,
            rerank_stats=first.rerank_stats, fusion=first.fusion, texts=first.texts,
            expansion=functools.reduce(ExpansionReport.merge, reports) if reports else None)
        self.last = res
        return res

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 10,
               progress: Progress | None = None) -> "Run":
        """The final ranking (reranked when a reranker is set, else fused), ``k`` per query.

        Each retriever's run stays available as ``pipeline.last.runs`` (and ``.fused``/``.reranked``).
        """
        return self.run(queries, k, progress).final

    def _texts(self) -> SegmentTexts | None:
        if self.store is None:
            return None
        if self._segment_texts is None:
            self._segment_texts = SegmentTexts(self.store)
        return self._segment_texts

    @property
    def fusion_name(self) -> str:
        """The fusion method by its registered name (``custom`` for a callable)."""
        if callable(self.fusion):
            return "custom"
        return get_method(self.fusion).name

    def _fuse(self, runs: list["Run"], query_ids: list[str]) -> "Run":
        """One fusion call over every retriever's run; queries only some retrievers answered follow the coverage
        rule of :func:`mmfuse.fusion.fuse` (fused over the runs that answered them, on the method's scale)."""
        if callable(self.fusion):
            return self.fusion(runs).ensure_queries(query_ids)
        weights = self.weights
        base = [r.name for r in runs if "@" not in r.name]
        if weights is not None and len(weights) == len(base) < len(runs):  # an expanded run weighs as its retriever
            by_name = dict(zip(base, weights))
            weights = [by_name.get(r.name.partition("@")[0], 0.0) for r in runs]
        if weights is not None and len(weights) != len(runs):
            raise ParameterError(f"fusion weights: {len(weights)} given for {len(runs)} retrievers "
                                 f"({', '.join(r.name for r in runs)})")
        return fuse(runs, method=self.fusion, norm=self.norm, weights=weights, depth=self.depth,
                    queries=query_ids, **self.fusion_params)

    @staticmethod
    def _unique_names(runs: list["Run"]) -> list["Run"]:
        seen: dict[str, int] = {}
        out = []
        for r in runs:
            n = seen.get(r.name, 0)
            seen[r.name] = n + 1
            out.append(r if n == 0 else r.with_name(f"{r.name}#{n + 1}"))
        return out

    def describe(self) -> str:
        names = [r if isinstance(r, str) else str(getattr(r, "name", type(r).__name__))
                 for r in (self.retriever_specs or ["<every modality of the index>"])]
        fusion = self.fusion if isinstance(self.fusion, str) else ("default" if self.fusion is None else "custom")
        rr = type(self.reranker).__name__ if self.reranker is not None else "none"
        ex = self.expander.method if self.expander is not None else "none"
        return f"Pipeline(retrievers={names}, fusion={fusion}, expand={ex}, reranker={rr}, index={self.index})"

    __repr__ = describe

    # ------------------------------------------------------------------------------------------------- config
    @classmethod
    def from_config(cls, config: "str | os.PathLike | PipelineConfig | Mapping[str, Any]", *,
                    base_dir: str | os.PathLike | None = None, index: str | os.PathLike | None = None,
                    extra_retrievers: Sequence[Any] = (), with_reranker: bool | None = None) -> "Pipeline":
        """Build from a TOML file (or an already validated :class:`~mmfuse.config.PipelineConfig` / dict).

        Relative paths resolve against the file's folder (or ``base_dir``). ``index`` overrides ``[index] path``;
        ``extra_retrievers`` are appended to the configured ones; ``with_reranker`` overrides ``[rerank] enabled``;
        ``[expand] method`` turns on query expansion.
        Errors in the file raise a one-line :class:`~mmfuse.errors.ConfigError` naming the key.
        """
        if isinstance(config, PipelineConfig):
            cfg = config
        elif isinstance(config, Mapping):
            cfg = parse_config(dict(config))
        else:
            cfg, base = load_config(config)
            base_dir = base_dir or base
        idx = str(index) if index is not None else cfg.resolve(cfg.index.path, base_dir)
        specs: list[Any] = []
        options: dict[str, dict[str, Any]] = {}
        clip = clap = None
        for name, r in cfg.enabled_retrievers().items():
            if r.kind == "plugin":
                specs.append(_plugin(name, r, idx))
                continue
            opts: dict[str, Any] = {"aggregation": r.aggregation, "dense": r.dense}
            if r.kind == "visual":
                opts["pooling"] = r.pooling
                if r.model or r.checkpoint:
                    clip = load_encoder("clip", r.model, pretrained=r.pretrained,
                                        checkpoint=cfg.resolve(r.checkpoint, base_dir), lazy=True)
                    opts["clip_encoder"] = clip
            if r.kind == "audio" and r.model:
                local = cfg.resolve(r.model, base_dir)
                clap = load_encoder("clap", local if local and Path(local).exists() else r.model, lazy=True)
                opts["clap_encoder"] = clap
            options[r.kind] = opts
            specs.append(r.kind)
            for twin in _TWINS.get(r.kind, ()):  # when the index has them
                if r.dense or not twin.endswith("_dense"):
                    options[twin] = dict(opts, optional=True)
                    specs.append(twin)
        specs += list(extra_retrievers)
        if not specs:
            raise ConfigError("config: every retriever is disabled; enable at least one [retrievers.NAME]")
        reranker = None
        enabled = cfg.rerank.enabled if with_reranker is None else with_reranker
        if enabled:
            reranker = _reranker_from_config(cfg, base_dir, index=idx)
        return cls(retrievers=specs, fusion=cfg.fusion.method, fusion_params=cfg.fusion.params, reranker=reranker,
                   index=idx, norm=cfg.fusion.norm, weights=cfg.fusion.weights, depth=cfg.fusion.depth,
                   clip_encoder=clip, clap_encoder=clap, retriever_options=options,
                   expand=_expander_from_config(cfg, base_dir))


# the retrievers a configured built-in brings along: its dense twin, and the translation of the speech
_TWINS = {"asr": ("asr_dense", "asr_en", "asr_en_dense"), "meta": ("meta_dense",), "caption": ("caption_dense",)}


class _Renamed:
    """A plug-in retriever under the name its config table gives it."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner, self.name = inner, name
        self.modality = getattr(inner, "modality", "custom")

    def search(self, queries: Any, k: int = 100) -> "Run":
        return self.inner.search(queries, k).with_name(self.name)


def _plugin(name: str, r: Any, index: str | None) -> Any:
    obj = load_retriever(r.ref)
    if isinstance(obj, type):
        try:
            obj = obj(**r.params)
        except TypeError as e:
            raise ConfigError(f"[retrievers.{name}] params: {r.ref} does not accept them: {e}") from None
    if callable(getattr(obj, "search", None)):
        return _Renamed(obj, name) if getattr(obj, "name", None) != name else obj
    if callable(getattr(obj, "encode_queries", None)) and index is not None:

        store = IndexStore.open(index)
        key = str(getattr(obj, "name", name))
        if not store.has_vectors(key):
            raise ConfigError(f"[retrievers.{name}]: index {index} holds no vectors for {key!r}; "
                              f"index with `mmfuse index VIDEO_DIR --retriever {r.ref}`")
        return VectorRetriever(store, key, obj, name=name, aggregation=r.aggregation)
    raise ConfigError(f"[retrievers.{name}] ref {r.ref!r}: neither a retriever (search) nor a segment encoder")


def _reranker_from_config(cfg: "PipelineConfig", base_dir: str | os.PathLike | None = None, *,
                          index: str | None = None) -> Any:
    """The ``[rerank]`` section as :func:`mmfuse.rerankers.build_reranker` arguments (subtitles: the index's ASR)."""

    rr = cfg.rerank
    if not rr.model:
        raise ConfigError("[rerank] model: required when reranking (a served model name or a local path)")
    local = cfg.resolve(rr.model, base_dir) if rr.backend == "transformers" else None
    return build_reranker(rr.backend, local if local and Path(local).exists() else rr.model, mode=rr.mode,
                          top=rr.top, window=rr.window, step=rr.step, grid=rr.grid, cell=rr.cell,
                          subtitles=index_subtitles(index) if (rr.subtitles and index) else None,
                          cache_dir=cfg.resolve(rr.cache, base_dir), base_url=rr.base_url,
                          api_key=os.environ.get(rr.api_key_env) if rr.api_key_env else None)


def _expander_from_config(cfg: "PipelineConfig", base_dir: str | os.PathLike | None = None) -> Any:
    """The ``[expand]`` section as :func:`mmfuse.expand.build_expander` arguments (None when no method is set)."""
    ex = cfg.expand
    if not ex.method:
        return None
    local = cfg.resolve(ex.model, base_dir) if ex.model else None
    return build_expander(ex.method, model=local if local and Path(local).is_dir() else ex.model,
                          base_url=ex.base_url, api_key=os.environ.get(ex.api_key_env) if ex.api_key_env else None,
                          n=ex.n, template=cfg.resolve(ex.template, base_dir), fusion=ex.fusion,
                          fusion_params=ex.fusion_params, candidates=ex.candidates, max_tokens=ex.max_tokens,
                          temperature=ex.temperature, cache=cfg.resolve(ex.cache, base_dir) if ex.cache is not None
                          else True, timeout=ex.timeout, retries=ex.retries, concurrency=ex.concurrency)


def index_subtitles(index: str | os.PathLike) -> dict[str, str]:
    """``{video_id: transcript}`` from the ASR transcripts stored in an index (empty when it has none)."""
    import json

    try:
        store = IndexStore.open(index)
    except Exception:
        return {}
    t = store.transcripts()  # one read for every video
    if t is None:
        return {}
    out = {}
    for row in t.to_pylist():
        subs = json.loads(row.get("subtitles") or "[]")
        text = " ".join(str(s.get("text", "")).strip() for s in subs).strip()
        if text:
            out[str(row["video_id"])] = text
    return out


# ------------------------------------------------------------------------------------- searching an index
SearchResult = PipelineResult  # what search_index returned before it went through Pipeline (same fields)


def index_retrievers(store: IndexStore, modalities: Sequence[str] | None = None) -> list[str] | None:
    """The retriever names of ``store`` that ``modalities`` selects: a modality name picks its retriever and its
    dense twin (``asr`` -> ``asr``, ``asr_dense``); ``None`` = every one. An unknown name is an error that lists
    what the index has."""
    if modalities is None:
        return None
    have = list(store.specs())
    names = [m.strip() for m in modalities if m and m.strip()]
    if not names:
        raise ParameterError("--modalities: no modality named; give a comma-separated list such as ocr,asr")
    out: list[str] = []
    for m in names:
        got = [h for h in have if h == m or h == f"{m}_dense"]
        if not got:
            raise ParameterError(f"--modalities: the index has no modality {m!r}{suggest(m, have)}; it has "
                                 f"{', '.join(have) or 'none'}")
        out += [g for g in got if g not in out]
    return out


def search_index(index_dir: str | os.PathLike, queries: Any, k: int = 10, fusion: str | None = None,
                 modalities: Sequence[str] | None = None, aggregation: str = "max", pooling: str = "mean",
                 clip_encoder: Any = None, clap_encoder: Any = None, extra: Sequence[Any] = (),
                 depth: int | None = None, fusion_params: Mapping[str, Any] | None = None,
                 progress: Progress | None = None, plugins: Sequence[str] = (),
                 **more_fusion_params: Any) -> PipelineResult:
    """Search the modalities of an index (plus ``extra`` retriever objects) and fuse: a :class:`Pipeline` built
    from these arguments, run once (the same path as ``mmfuse search`` and the demo).

    ``fusion`` names a method of :mod:`mmfuse.fusion` (None = the library default); ``fusion_params`` (and further
    keywords) go to ``fuse`` (``norm``, ``weights``, method parameters: a dict, since RRF's ``k`` would clash with
    this function's). Each modality run keeps ``depth`` (default ``max(k, 100)``) videos for fusion; the fused run
    is cut to ``k``. ``plugins``: the plug-in references the index records that may be imported (see ``Pipeline``).
    """
    return searcher(index_dir, fusion=fusion, modalities=modalities, aggregation=aggregation, pooling=pooling,
                    clip_encoder=clip_encoder, clap_encoder=clap_encoder, extra=extra, depth=depth or max(int(k), 100),
                    fusion_params={**(fusion_params or {}), **more_fusion_params},
                    plugins=plugins).run(queries, k, progress)


def searcher(index_dir: "str | os.PathLike | IndexStore", *, fusion: str | None = None,
             modalities: Sequence[str] | None = None,
             aggregation: str = "max", pooling: str = "mean", clip_encoder: Any = None, clap_encoder: Any = None,
             extra: Sequence[Any] = (), depth: int = 100, fusion_params: Mapping[str, Any] | None = None,
             reranker: Any = None, expand: Any = None, plugins: Sequence[str] = ()) -> Pipeline:
    """The :class:`Pipeline` over an index that ``mmfuse search``/``serve`` run (models load once, on first use):
    ``modalities`` as in :func:`index_retrievers`; ``fusion_params`` may hold ``norm`` and ``weights`` too;
    ``expand`` as in :class:`Pipeline`. ``index_dir`` may be an open :class:`IndexStore`, which the pipeline then
    shares (with its cached tables)."""
    store = index_dir if isinstance(index_dir, IndexStore) else IndexStore.open(index_dir)
    if clip_encoder is not None:
        store.check_spec("visual", clip_encoder.spec)
    if clap_encoder is not None:
        store.check_spec("audio", clap_encoder.spec)
    params = dict(fusion_params or {})
    norm, weights = params.pop("norm", None), params.pop("weights", None)
    names = index_retrievers(store, modalities)
    specs = None if names is None and not extra else [*(names if names is not None else store.specs()), *extra]
    pipe = Pipeline(retrievers=specs, fusion=fusion, fusion_params=params, norm=norm, weights=weights, index=store.path,
                    depth=depth, aggregation=aggregation, pooling=pooling, clip_encoder=clip_encoder,
                    clap_encoder=clap_encoder, reranker=reranker, expand=expand, plugins=plugins)
    pipe._store = store
    return pipe


def _concat(runs: list["Run"], query_ids: Sequence[str]) -> "Run":
    """Runs over disjoint queries as one run over ``query_ids`` (the batches of ``Pipeline.run``)."""
    ev_cols = set.intersection(*(set(r.evidence or {}) for r in runs)) if runs else set()
    ev = {c: np.concatenate([np.asarray(r.evidence[c]) for r in runs]) for c in sorted(ev_cols)} or None
    return Run.from_arrays(np.concatenate([r.entry_query_ids() for r in runs]),
                           np.concatenate([r.entry_doc_ids() for r in runs]),
                           np.concatenate([r.scores for r in runs]), name=runs[0].name, evidence=ev,
                           queries=list(query_ids))
