"""Pipeline: retrievers -> fusion -> optional VLM reranker, built in Python or from a TOML config."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmfuse.encoders import load_encoder

from .errors import ConfigError, InputError, ModelError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from mmfuse.runs.run import Run

    from .config import PipelineConfig

Progress = Callable[[int, int, str], None]


@dataclass
class PipelineResult:
    """Everything one ``Pipeline.run`` produced: each retriever's run, the fused run, the reranked run."""

    queries: dict[str, str]
    runs: list["Run"]  # one per retriever, named after it, ``depth`` deep
    fused: "Run"  # the fusion of ``runs`` (the single run when there is only one), cut to max(k, rerank top)
    reranked: "Run | None"  # the fused run after the VLM, when a reranker is set
    final: "Run"  # what ``search`` returns: reranked (or fused) cut to ``k``
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rerank_stats: Any = None

    def by_name(self) -> dict[str, "Run"]:
        """Each retriever's run by name, then ``fused`` (and ``reranked``) - convenient for display and eval."""
        out = {r.name: r for r in self.runs}
        out["fused"] = self.fused
        if self.reranked is not None:
            out["reranked"] = self.reranked
        return out


def _queries(queries: Mapping[str, str] | Sequence[str] | str) -> dict[str, str]:
    if isinstance(queries, str):
        return {"0": queries}
    if isinstance(queries, Mapping):
        out = {str(k): str(v) for k, v in queries.items()}
    else:
        out = {str(i): str(t) for i, t in enumerate(queries)}
    if not out:
        raise InputError("no queries given")
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
    """

    def __init__(self, retrievers: Sequence[Any] | None = None, fusion: str | Callable | None = None,
                 fusion_params: Mapping[str, Any] | None = None, reranker: Any = None,
                 index: str | os.PathLike | None = None, *, norm: str | None = None,
                 weights: Sequence[float] | None = None, depth: int = 100, videos: Any = None,
                 aggregation: str = "max", pooling: str = "mean", clip_encoder: Any = None,
                 clap_encoder: Any = None, dense: bool = True,
                 retriever_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
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
            from .fusion import get_method

            get_method(fusion)  # unknown names fail here, with a suggestion, not after retrieval
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
        self.warnings: list[str] = []
        self.last: PipelineResult | None = None
        self._retrievers: list[Any] | None = None
        self._store: Any = None

    # ------------------------------------------------------------------------------------------------- building
    @property
    def store(self) -> Any:
        """The opened :class:`mmfuse.store.lance.IndexStore` (None without an index)."""
        if self._store is None and self.index is not None:
            from mmfuse.store.lance import IndexStore

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
        from .retrievers import plugin_modality, retrievers_for_index

        kw = dict(aggregation=self.aggregation, pooling=self.pooling, clip_encoder=self.clip_encoder,
                  clap_encoder=self.clap_encoder, dense=self.dense)
        kw.update({k: v for k, v in opts.items() if k in kw})
        got = retrievers_for_index(self.store, modalities=modalities, warn=self.warnings.append, **kw)
        if modalities is not None:  # a name or plug-in reference picks exactly that one ("asr" is not "asr_dense")
            name = plugin_modality(self.store, modalities[0]) or modalities[0]
            got = [g for g in got if getattr(g, "name", None) == name]
        return got

    def video_paths(self) -> Any:
        """Where the reranker finds each video: ``videos`` as given, else the paths recorded in the index."""
        if self.videos is not None:
            return self.videos
        if self.store is not None:
            return {vid: row["path"] for vid, row in self.store.video_states().items()}
        raise ParameterError("reranking needs the video files: pass videos=DIR (or {video_id: path}) or an index")

    # ------------------------------------------------------------------------------------------------- running
    def run(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 10,
            progress: Progress | None = None) -> PipelineResult:
        """Retrieve, fuse and (optionally) rerank; returns every intermediate run (see :class:`PipelineResult`)."""
        if int(k) < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        qs = _queries(queries)
        timings: dict[str, float] = {}
        rets = self.retrievers()
        top = int(getattr(self.reranker, "top", 0) or 0) if self.reranker is not None else 0
        depth = max(self.depth, int(k), top)
        runs = []
        stages = len(rets) + 1 + (1 if self.reranker is not None else 0)
        for i, r in enumerate(rets):
            name = str(getattr(r, "name", f"retriever{i}"))
            if progress:
                progress(i, stages, f"retrieve {name}")
            t0 = time.perf_counter()
            try:
                run = r.search(qs, depth)
            except ModelError as e:
                self.warnings.append(f"{name} skipped: {e}")
                continue
            timings[f"retrieve:{name}"] = time.perf_counter() - t0
            runs.append(run.with_name(name))
        runs = self._unique_names(runs)
        nonempty = [r for r in runs if len(r)]
        if not nonempty:
            raise InputError("pipeline: every retriever returned an empty run"
                             + (f" ({'; '.join(self.warnings)})" if self.warnings else ""))
        if progress:
            progress(len(rets), stages, "fuse")
        t0 = time.perf_counter()
        fused = self._fuse(nonempty).cut(max(int(k), top)).with_name("fused")
        timings["fuse"] = time.perf_counter() - t0
        reranked = stats = None
        final = fused
        if self.reranker is not None:
            if progress:
                progress(len(rets) + 1, stages, "rerank")
            t0 = time.perf_counter()
            def rerank_progress(d: int, t: int, label: str) -> None:
                progress(len(rets) + 1, stages, f"rerank {d}/{t}")

            sub = rerank_progress if progress else None
            reranked = self.reranker.rerank(qs, fused, self.video_paths(), retriever_runs=nonempty,
                                            progress=sub).with_name("reranked")
            stats = getattr(self.reranker, "stats", None)
            timings["rerank"] = time.perf_counter() - t0
            final = reranked
        if progress:
            progress(stages, stages, "done")
        res = PipelineResult(queries=qs, runs=runs, fused=fused, reranked=reranked, final=final.cut(int(k)),
                             warnings=list(self.warnings), timings=timings, rerank_stats=stats)
        self.last = res
        return res

    def search(self, queries: Mapping[str, str] | Sequence[str] | str, k: int = 10,
               progress: Progress | None = None) -> "Run":
        """The final ranking (reranked when a reranker is set, else fused), ``k`` per query.

        Each retriever's run stays available as ``pipeline.last.runs`` (and ``.fused``/``.reranked``).
        """
        return self.run(queries, k, progress).final

    def _fuse(self, runs: list["Run"]) -> "Run":
        if callable(self.fusion):
            return self.fusion(runs)
        if len(runs) == 1:
            return runs[0]
        from .fusion import fuse

        weights = self.weights
        if weights is not None and len(weights) != len(runs):
            raise ParameterError(f"fusion weights: {len(weights)} given for {len(runs)} retrievers "
                                 f"({', '.join(r.name for r in runs)})")
        kw = dict(method=self.fusion, norm=self.norm, depth=self.depth, **self.fusion_params)
        cover = _coverage(runs)
        if cover.all(axis=0).any() or cover.shape[1] == 0:
            return fuse(runs, weights=weights, **kw)
        # No query is answered by every retriever (e.g. BM25 over OCR text finds nothing for spoken queries):
        # fusion is per query, so fuse each group of queries with the retrievers that answered it.
        return _fuse_by_coverage(runs, cover, weights, kw)

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
        return f"Pipeline(retrievers={names}, fusion={fusion}, reranker={rr}, index={self.index})"

    __repr__ = describe

    # ------------------------------------------------------------------------------------------------- config
    @classmethod
    def from_config(cls, config: "str | os.PathLike | PipelineConfig | Mapping[str, Any]", *,
                    base_dir: str | os.PathLike | None = None, index: str | os.PathLike | None = None,
                    extra_retrievers: Sequence[Any] = (), with_reranker: bool | None = None) -> "Pipeline":
        """Build from a TOML file (or an already validated :class:`~mmfuse.config.PipelineConfig` / dict).

        Relative paths resolve against the file's folder (or ``base_dir``). ``index`` overrides ``[index] path``;
        ``extra_retrievers`` are appended to the configured ones; ``with_reranker`` overrides ``[rerank] enabled``.
        Errors in the file raise a one-line :class:`~mmfuse.errors.ConfigError` naming the key.
        """
        from .config import PipelineConfig, load_config, parse_config

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
            if r.kind in ("asr", "meta") and r.dense:  # the dense twin, when the index has its vectors
                options[f"{r.kind}_dense"] = dict(opts, optional=True)
                specs.append(f"{r.kind}_dense")
        specs += list(extra_retrievers)
        if not specs:
            raise ConfigError("config: every retriever is disabled; enable at least one [retrievers.NAME]")
        reranker = None
        enabled = cfg.rerank.enabled if with_reranker is None else with_reranker
        if enabled:
            reranker = _reranker_from_config(cfg, base_dir, index=idx)
        return cls(retrievers=specs, fusion=cfg.fusion.method, fusion_params=cfg.fusion.params, reranker=reranker,
                   index=idx, norm=cfg.fusion.norm, weights=cfg.fusion.weights, depth=cfg.fusion.depth,
                   clip_encoder=clip, clap_encoder=clap, retriever_options=options)


def _coverage(runs: list["Run"]) -> Any:
    """[R, Q] bool: run r has entries for query q, over the union of query ids (first-seen order)."""
    import numpy as np

    qids = list(dict.fromkeys(q for r in runs for q in r.query_ids.tolist()))
    pos = {q: i for i, q in enumerate(qids)}
    cover = np.zeros((len(runs), len(qids)), dtype=bool)
    for i, r in enumerate(runs):
        has = r.counts() > 0
        cover[i, [pos[q] for q in r.query_ids.tolist()]] = has
    return cover


def _fuse_by_coverage(runs: list["Run"], cover: Any, weights: list[float] | None, kw: dict[str, Any]) -> "Run":
    import numpy as np

    from mmfuse.runs.run import Run

    from .fusion import fuse

    qids = list(dict.fromkeys(q for r in runs for q in r.query_ids.tolist()))
    groups: dict[tuple[int, ...], list[str]] = {}
    for j, q in enumerate(qids):
        key = tuple(np.flatnonzero(cover[:, j]).tolist())
        if key:
            groups.setdefault(key, []).append(q)
    qcol, dcol, scol = [], [], []
    name = "fused"
    for key, qs in groups.items():
        part = [runs[i].subset([q for q in qs]) for i in key]
        w = [weights[i] for i in key] if weights is not None else None
        f = fuse(part, weights=w, **kw)
        name = f.name
        qcol.append(f.entry_query_ids())
        dcol.append(f.entry_doc_ids())
        scol.append(f.scores)
    return Run.from_arrays(np.concatenate(qcol), np.concatenate(dcol), np.concatenate(scol), name=name,
                           queries=[q for q in qids if any(q in g for g in groups.values())])


class _Renamed:
    """A plug-in retriever under the name its config table gives it."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner, self.name = inner, name
        self.modality = getattr(inner, "modality", "custom")

    def search(self, queries: Any, k: int = 100) -> "Run":
        return self.inner.search(queries, k).with_name(self.name)


def _plugin(name: str, r: Any, index: str | None) -> Any:
    from .retrievers import load_retriever

    obj = load_retriever(r.ref)
    if isinstance(obj, type):
        try:
            obj = obj(**r.params)
        except TypeError as e:
            raise ConfigError(f"[retrievers.{name}] params: {r.ref} does not accept them: {e}") from None
    if callable(getattr(obj, "search", None)):
        return _Renamed(obj, name) if getattr(obj, "name", None) != name else obj
    if callable(getattr(obj, "encode_queries", None)) and index is not None:
        from mmfuse.store.lance import IndexStore

        from .retrievers import VectorRetriever

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
    from mmfuse.rerankers import build_reranker

    rr = cfg.rerank
    if not rr.model:
        raise ConfigError("[rerank] model: required when reranking (a served model name or a local path)")
    local = cfg.resolve(rr.model, base_dir) if rr.backend == "transformers" else None
    return build_reranker(rr.backend, local if local and Path(local).exists() else rr.model, mode=rr.mode,
                          top=rr.top, window=rr.window, step=rr.step, grid=rr.grid, cell=rr.cell,
                          subtitles=index_subtitles(index) if (rr.subtitles and index) else None,
                          cache_dir=cfg.resolve(rr.cache, base_dir), base_url=rr.base_url,
                          api_key=os.environ.get(rr.api_key_env) if rr.api_key_env else None)


def index_subtitles(index: str | os.PathLike) -> dict[str, str]:
    """``{video_id: transcript}`` from the ASR transcripts stored in an index (empty when it has none)."""
    import json

    from mmfuse.store.lance import IndexStore

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
@dataclass
class SearchResult:
    """Per-modality runs, the fused run, and the warnings about modalities that were skipped."""

    fused: Any
    runs: list[Any]
    warnings: list[str]


def search_index(index_dir: str | os.PathLike, queries: Any, k: int = 10, fusion: str | None = None,
                 modalities: Sequence[str] | None = None, aggregation: str = "max", pooling: str = "mean",
                 clip_encoder: Any = None, clap_encoder: Any = None, extra: Sequence[Any] = (),
                 depth: int | None = None, fusion_params: Mapping[str, Any] | None = None,
                 plugins: Sequence[str] = (), **more_fusion_params: Any) -> SearchResult:
    """Search every modality of an index (plus ``extra`` retriever objects) and fuse the runs.

    ``fusion`` names a method of :mod:`mmfuse.fusion` (None = the library default); ``fusion_params`` (and
    further keywords) go to ``fuse`` (``norm``, ``weights``, method parameters: a dict, since RRF's ``k`` would
    clash with this function's). Each modality run keeps ``depth`` (default ``max(k, 100)``) videos for fusion;
    the fused run is cut to ``k``. ``plugins`` names the plug-in references the index records that may be
    imported (see :func:`mmfuse.retrievers.retrievers_for_index`).
    """
    from mmfuse.store.lance import IndexStore

    from .retrievers import retrievers_for_index

    warnings: list[str] = []
    store = IndexStore.open(index_dir)
    if clip_encoder is not None:
        store.check_spec("visual", clip_encoder.spec)
    if clap_encoder is not None:
        store.check_spec("audio", clap_encoder.spec)
    rets = retrievers_for_index(store, modalities=list(modalities) if modalities else None, aggregation=aggregation,
                                pooling=pooling, clip_encoder=clip_encoder, clap_encoder=clap_encoder,
                                plugins=plugins, warn=warnings.append) + list(extra)
    depth = int(depth or max(int(k), 100))
    runs = []
    for r in rets:
        try:
            runs.append(r.search(queries, depth).with_name(r.name))
        except ModelError as e:
            warnings.append(f"{r.name} modality skipped: {e}")
    if not runs:
        raise InputError(f"index {index_dir}: no modality can be searched" + (f" ({'; '.join(warnings)})" if warnings else ""))
    from mmfuse.retrievers.base import normalize_queries

    qids, _ = normalize_queries(queries)
    fused = fuse_available(runs, qids, method=fusion, k=int(k), params={**(fusion_params or {}), **more_fusion_params})
    return SearchResult(fused=fused.with_name("fused"), runs=runs, warnings=warnings)


def fuse_available(runs: Sequence[Any], query_ids: Sequence[str], method: str | None = None, k: int | None = None,
                   params: Mapping[str, Any] | None = None, **more_params: Any) -> Any:
    """Fuse, for each query, only the runs that returned something for it (cut to ``k`` when given).

    ``params`` (and further keywords) go to ``fuse``: ``norm``, ``weights``, method parameters (RRF's own ``k``
    fits in ``params`` only).

    Modalities legitimately miss queries (no on-screen text matches a spoken phrase), so queries are
    grouped by which runs answered them and each group is fused on its own (one vectorized ``fuse``
    call per group; at most 2^runs groups, in practice a handful). A query answered by one run keeps
    that run's list; a query answered by none gets no entries.
    """
    from mmfuse.retrievers.base import empty_run, ensure_queries
    from mmfuse.runs.run import Run

    from .fusion import fuse

    params = {**(params or {}), **more_params}
    qids = np.asarray(query_ids).astype(str)
    runs = [ensure_queries(r, qids) for r in runs]
    if not runs:
        return empty_run("fused", qids)
    mask = np.stack([np.diff(r.offsets) > 0 for r in runs])  # [R, Q]
    patterns, group = np.unique(mask.T, axis=0, return_inverse=True)
    if len(patterns) == 1:  # the common case: every query answered by the same runs, one fuse call
        members = np.flatnonzero(patterns[0])
        if members.size == 0:
            return empty_run("fused", qids)
        sub = [runs[i] for i in members]
        out = sub[0] if len(sub) == 1 else fuse(sub, method=method, **params)
        return ensure_queries(out.cut(k) if k else out, qids).with_name("fused")
    parts_q, parts_d, parts_s = [], [], []
    for g, pat in enumerate(patterns):
        members = np.flatnonzero(pat)
        if members.size == 0:
            continue
        gq = qids[group.reshape(-1) == g].tolist()
        sub = [runs[i].subset(gq) for i in members]
        out = sub[0] if len(sub) == 1 else fuse(sub, method=method, **params)
        if k:
            out = out.cut(k)
        parts_q.append(np.asarray(out.query_ids).astype(str)[out.qidx()])
        parts_d.append(np.asarray(out.doc_ids).astype(str)[out.doc_idx])
        parts_s.append(np.asarray(out.scores, dtype=np.float64))
    if not parts_q:
        return empty_run("fused", qids)
    fused = Run.from_arrays(np.concatenate(parts_q), np.concatenate(parts_d), np.concatenate(parts_s), name="fused")
    return ensure_queries(fused, qids)
