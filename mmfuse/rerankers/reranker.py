"""VLMReranker: reorders the top of each query's list (or the ViC union of several lists) with a VLM backend."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import InputError, MmfuseError, ParameterError
from mmfuse.ingest.probe import VIDEO_EXTENSIONS
from mmfuse.runs import RankedList, Run, read_queries

from .grid import GridCache, GridSpec, draw_label, placeholder
from .parsing import ParseStats, repair_order
from .prompts import Candidate, truncate_words
from .strategies import fusion_lists, sliding_window

load_queries = read_queries  # the query-file reader lives in mmfuse.runs; this name is kept for compatibility
log = logging.getLogger("mmfuse.rerankers")
log.addHandler(logging.NullHandler())  # the CLI reports failures from RerankStats; apps may add handlers
Progress = Callable[[int, int, str], None]


@dataclass
class RerankStats:
    """What happened in one ``rerank`` call; ``summary()`` is one line for logs and the CLI."""

    queries: int = 0
    reranked: int = 0
    resumed: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (query id, reason)
    missing_videos: dict[str, str] = field(default_factory=dict)  # doc id -> note
    model_calls: int = 0
    grid_seconds: float = 0.0
    model_seconds: float = 0.0
    seconds: float = 0.0
    grid_hits: int = 0
    grid_misses: int = 0
    parse: ParseStats = field(default_factory=ParseStats)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "parse"}
        d["parse"] = self.parse.as_dict()
        d["failures"] = [list(f) for f in self.failures]
        return d

    def summary(self) -> str:
        s = (f"{self.queries} queries: {self.reranked} reranked, {self.resumed} resumed, {self.failed} kept in "
             f"incoming order after errors; {self.model_calls} model calls in {self.model_seconds:.1f}s, grids "
             f"{self.grid_seconds:.1f}s ({self.grid_hits} cached, {self.grid_misses} built)")
        if self.missing_videos:
            s += f"; {len(self.missing_videos)} videos missing or unreadable (placeholder grids)"
        return s


def load_subtitles(src: str | os.PathLike | Mapping[str, str]) -> dict[str, str]:
    """Subtitles per video id from a mapping, JSON ``{id: text}`` or a list of ``{video_id, subtitle}``.

    Only the ``subtitle`` field is read: datasets such as MSR-VTT also carry ``desc`` (the caption the
    queries come from), which must never reach the model.
    """
    if isinstance(src, Mapping):
        return {str(k): str(v or "") for k, v in src.items()}
    p = Path(src)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: subtitles file does not exist") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from None
    if isinstance(data, dict):
        return {str(k): str(v or "") for k, v in data.items()}
    if isinstance(data, list):
        out = {}
        for i, item in enumerate(data):
            if not isinstance(item, dict) or "video_id" not in item:
                raise InputError(f"{p}: item {i} has no 'video_id'")
            out[str(item["video_id"])] = str(item.get("subtitle") or "")
        return out
    raise InputError(f"{p}: expected a list of {{video_id, subtitle}} or an object {{video_id: text}}")


def load_mapping(path: str | os.PathLike) -> dict[str, Path]:
    """doc id -> video path from TSV ``doc<TAB>path`` or JSON ``{doc: path}`` (relative to the file's folder)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: mapping file does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            raw = {str(k): str(v) for k, v in json.loads(text).items()}
        except (json.JSONDecodeError, AttributeError):
            raise InputError(f"{p}: expected a JSON object {{doc_id: path}}") from None
    else:
        raw = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            doc, sep, path_ = line.partition("\t")
            if not sep:
                raise InputError(f"{p}:{n}: expected 'doc_id<TAB>video path'")
            raw[doc.strip()] = path_.strip()
    return {k: (v if Path(v).is_absolute() else p.parent / v) for k, v in
            ((k, Path(v)) for k, v in raw.items())}


def index_videos(videos: str | os.PathLike | Mapping[str, Any]) -> dict[str, Path]:
    """doc id -> path: a mapping as given, or every video file under a directory keyed by its stem."""
    if isinstance(videos, Mapping):
        return {str(k): Path(v) for k, v in videos.items()}
    root = Path(videos)
    if not root.is_dir():
        raise InputError(f"{root}: video directory does not exist")
    out: dict[str, Path] = {}
    exts = {e.lower() for e in VIDEO_EXTENSIONS}
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() in exts and f.is_file():
            out.setdefault(f.stem, f)
    return out


def _read_checkpoint(path: Path) -> dict[str, tuple[list[str], str]]:
    done: dict[str, tuple[list[str], str]] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                done[str(rec["qid"])] = ([str(d) for d in rec["docs"]], str(rec.get("status", "ok")))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a crash is simply redone
    return done


class VLMReranker:
    """Rerank the top ``top`` candidates of each query with a VLM over S-Grids; the tail keeps its order.

    ``window``/``step`` control the sliding window when ``top > window`` (back to front, like RankGPT).
    ``subtitles`` (path or mapping) adds each video's speech, cut to ``subtitle_tokens`` tokens.
    ``cache_dir`` keeps built grids on disk (default: in memory for this object only).
    """

    def __init__(self, backend, top: int = 20, window: int = 20, step: int = 10, grid: tuple[int, int] = (2, 2),
                 cell: int | tuple[int, int] = 224, subtitles=None, subtitle_tokens: int = 64,
                 cache_dir: str | os.PathLike | None = None, sampling: str = "uniform", show_ranks: bool = True):
        if top < 1:
            raise ParameterError(f"top must be >= 1, got {top}")
        if window < 2:
            raise ParameterError(f"window must be >= 2, got {window}")
        if step < 1:
            raise ParameterError(f"step must be >= 1, got {step}")
        self.backend = backend
        # a step wider than the window would skip candidates; the default step with a small window means "no overlap"
        self.top, self.window, self.step = int(top), int(window), min(int(step), int(window))
        self.spec = GridSpec(rows=grid[0], cols=grid[1], cell=cell, sampling=sampling)
        self.subtitles = load_subtitles(subtitles) if subtitles is not None else {}
        self.subtitle_tokens = int(subtitle_tokens)
        self.cache = GridCache(cache_dir)
        self.show_ranks = show_ranks
        self.stats = RerankStats()
        self._grid_memo: OrderedDict[str, tuple[Any, str]] = OrderedDict()
        self._grid_lock = threading.Lock()
        tok = getattr(backend, "tokenizer", None)
        self._count = (lambda s: len(tok.encode(s, add_special_tokens=False))) if tok is not None else None

    # -- candidate material -------------------------------------------------------------------------------------
    def grid_for(self, doc: str, paths: Mapping[str, Path]):
        """The unlabelled grid of ``doc`` (a placeholder, noted in the stats, when its video is unusable)."""
        with self._grid_lock:
            # docs shared by many queries skip hashing and lookup; bounded like the cache's own memory
            memo = self._grid_memo.get(doc)
            if memo is None:
                memo = self._grid_memo[doc] = self._grid_uncached(doc, paths)
                while len(self._grid_memo) > self.cache.memory_items:
                    self._grid_memo.popitem(last=False)
            else:
                self._grid_memo.move_to_end(doc)
            return memo

    def _grid_uncached(self, doc: str, paths: Mapping[str, Path]):
        path = paths.get(doc)
        t0 = time.perf_counter()
        try:
            if path is None or not Path(path).is_file():
                self.stats.missing_videos[doc] = "video missing"
                return placeholder(self.spec, "video missing"), "video missing"
            h0, m0 = self.cache.hits, self.cache.misses
            try:
                img = self.cache.get(path, self.spec)
            except (MmfuseError, OSError) as e:
                log.warning("%s: %s", doc, e)
                self.stats.missing_videos[doc] = "video unreadable"
                return placeholder(self.spec, "video unreadable"), "video unreadable"
            self.stats.grid_hits += self.cache.hits - h0
            self.stats.grid_misses += self.cache.misses - m0
            return img, ""
        finally:
            self.stats.grid_seconds += time.perf_counter() - t0

    def subtitle_for(self, doc: str) -> str:
        text = self.subtitles.get(doc, "")
        return truncate_words(text, self.subtitle_tokens, self._count) if text else ""

    # -- one query ----------------------------------------------------------------------------------------------
    def _candidates(self, head: list[str], positions: list[int], grids: Mapping[str, tuple[Any, str]],
                    ranks: Mapping[str, dict[str, int | None]] | None, interleaved: list[str] | None):
        """Candidates labelled [1].. in the order of ``positions``, and the metadata the model is shown."""
        cands = []
        label_of = {}
        for j, pos in enumerate(positions):
            d = head[pos]
            img, note = grids[d]
            label_of[d] = j + 1
            cands.append(Candidate(doc_id=d, label=j + 1, image=draw_label(img, f"[{j + 1}]"),
                                   subtitle=self.subtitle_for(d), note=note,
                                   ranks=dict(ranks.get(d, {})) if (ranks and self.show_ranks) else {}))
        meta: dict[str, Any] = {}
        if interleaved and self.show_ranks:
            meta["interleaved"] = [label_of[d] for d in interleaved if d in label_of]
        return cands, meta

    def _timed(self, fn, *args, calls: int = 1):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.stats.model_seconds += time.perf_counter() - t0
            self.stats.model_calls += calls

    def _order_query(self, query: str, docs: list[str], paths: Mapping[str, Path],
                     ranks: Mapping[str, dict[str, int | None]] | None, interleaved: list[str] | None) -> list[str]:
        head = docs[: self.top]
        grids = {d: self.grid_for(d, paths) for d in dict.fromkeys(head)}

        def rank_fn(positions: list[int]) -> list[int]:
            if len(positions) < 2:  # nothing to order: spare the model call
                return list(positions)
            cands, meta = self._candidates(head, positions, grids, ranks, interleaved)
            order = self._timed(self.backend.rank, query, cands, meta)
            order, _ = repair_order([int(i) for i in order], len(cands))
            return [positions[i] for i in order]

        new_head = sliding_window(list(range(len(head))), rank_fn, self.window, self.step)
        return [head[i] for i in new_head] + docs[self.top:]

    def _order_batch(self, qids: list[str], query_texts, lists, paths, ranks, inter, work):
        """Several single-window queries in one ``backend.rank_batch`` call; on error, one by one."""
        reqs, heads, out = [], [], {}
        for q in qids:
            head = lists[q][: self.top]
            if q not in query_texts or len(head) < 2:
                out[q] = work(q)
                continue
            grids = {d: self.grid_for(d, paths) for d in dict.fromkeys(head)}
            cands, meta = self._candidates(head, list(range(len(head))), grids, (ranks or {}).get(q),
                                           (inter or {}).get(q))
            reqs.append((q, (query_texts[q], cands, meta)))
            heads.append(head)
        if reqs:
            try:
                orders = self._timed(self.backend.rank_batch, [r for _, r in reqs], calls=len(reqs))
            except Exception as e:
                log.warning("batched call failed (%s); retrying its queries one by one", type(e).__name__)
                orders = None
            for i, ((q, _), head) in enumerate(zip(reqs, heads)):
                if orders is None:
                    out[q] = work(q)
                else:
                    order, _ = repair_order([int(j) for j in orders[i]], len(head))
                    out[q] = (q, [head[j] for j in order] + lists[q][self.top:], None)
        return [out[q] for q in qids]

    # -- driver -------------------------------------------------------------------------------------------------
    def _run_all(self, query_texts: Mapping[str, str], lists: dict[str, list[str]], paths: Mapping[str, Path],
                 ranks: dict[str, dict] | None, inter: dict[str, list[str]] | None, progress: Progress | None,
                 checkpoint: str | os.PathLike | None, resume: bool) -> dict[str, list[str]]:
        t_start = time.perf_counter()
        self.stats = RerankStats()
        self._grid_memo = OrderedDict()
        if hasattr(self.backend, "parse_stats"):
            self.backend.parse_stats = ParseStats()
        results: dict[str, list[str]] = {}
        ck = Path(checkpoint) if checkpoint is not None else None
        if ck is not None and resume:
            for qid, (docs, status) in _read_checkpoint(ck).items():
                if qid in lists and sorted(docs) == sorted(lists[qid]) and status == "ok":
                    results[qid] = docs
            self.stats.resumed = len(results)
        elif ck is not None and ck.exists():
            ck.unlink()
        todo = [q for q in lists if q not in results]
        total = len(lists)
        self.stats.queries = total
        ck_fh = open(ck, "a", encoding="utf-8") if ck is not None else None

        def work(qid: str) -> tuple[str, list[str], str | None]:
            docs = lists[qid]
            if qid not in query_texts:
                return qid, docs, "no query text for this query id"
            try:
                return qid, self._order_query(query_texts[qid], docs, paths, (ranks or {}).get(qid),
                                              (inter or {}).get(qid)), None
            except Exception as e:  # the model or server failing must not lose the other queries
                return qid, docs, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

        def done(qid: str, order: list[str], err: str | None) -> None:
            results[qid] = order
            if err is None:
                self.stats.reranked += 1
            else:
                self.stats.failed += 1
                self.stats.failures.append((qid, err))
                log.warning("query %s kept its incoming order: %s", qid, err)
            if ck_fh is not None:
                ck_fh.write(json.dumps({"qid": qid, "docs": order, "status": "ok" if err is None else "failed"}) + "\n")
                ck_fh.flush()
            if progress is not None:
                progress(len(results), total, qid)

        try:
            if progress is not None and results:
                progress(len(results), total, "resumed")
            workers = max(1, int(getattr(self.backend, "concurrency", 1)))
            batch = max(1, int(getattr(self.backend, "query_batch", 1)))
            if batch > 1 and hasattr(self.backend, "rank_batch") and self.top <= self.window:
                for i in range(0, len(todo), batch):
                    for res in self._order_batch(todo[i:i + batch], query_texts, lists, paths, ranks, inter, work):
                        done(*res)
            elif workers == 1 or len(todo) <= 1:
                for qid in todo:
                    done(*work(qid))
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for res in pool.map(work, todo):
                        done(*res)
        finally:
            if ck_fh is not None:
                ck_fh.close()
            if hasattr(self.backend, "parse_stats"):
                self.stats.parse = self.backend.parse_stats
            self.stats.seconds = time.perf_counter() - t_start
        return results

    def rerank(self, query_texts: Mapping[str, str], run, videos, *, retriever_runs: Sequence | None = None,
               progress: Progress | None = None, checkpoint: str | os.PathLike | None = None,
               resume: bool = False):
        """Return ``run`` with each query's top ``top`` entries reordered by the model.

        ``videos``: {doc id: path} or a directory whose video file stems are the doc ids.
        ``retriever_runs``: optional first-stage runs whose ranks are shown to the model as evidence.
        ``checkpoint``: a JSONL file that records each finished query; with ``resume=True`` finished
        queries are taken from it instead of being reranked again.
        """
        paths = index_videos(videos)
        views = list(run.lists())
        lists = {v.query_id: [str(d) for d in v.doc_ids.tolist()] for v in views}
        ranks = self._ranks_from(retriever_runs, lists) if retriever_runs else None
        results = self._run_all(query_texts, lists, paths, ranks, None, progress, checkpoint, resume)

        # each query's entries in the model's order (evidence follows its documents), scored n, n-1, ... 1
        def reordered(v: RankedList) -> RankedList:
            pos = {d: j for j, d in enumerate(lists[v.query_id])}
            perm = np.asarray([pos[d] for d in results[v.query_id]], dtype=np.int64)
            return RankedList(v.query_id, v.doc_ids[perm], np.arange(perm.size, 0, -1, dtype=np.float64),
                              {k: np.asarray(e)[perm] for k, e in v.evidence.items()})

        return Run.from_lists((reordered(v) for v in views), name=f"{run.name}+vlm" if run.name else "vlm")

    def rerank_fusion(self, query_texts: Mapping[str, str], runs: Sequence, videos, *, depth: int | None = None,
                      names: Sequence[str] | None = None, progress: Progress | None = None,
                      checkpoint: str | os.PathLike | None = None, resume: bool = False):
        """Vote-in-Context: interleave ``runs`` per query (duplicates kept), rerank the union of their top docs.

        The model sees each candidate's rank in every run and the interleaved order (repeats = consensus).
        The output holds the union; beyond ``top`` the first-appearance interleaved order is kept.
        """
        if len(runs) < 1:
            raise ParameterError("fusion reranking needs at least one run")
        paths = index_videos(videos)
        lists, ranks, inter = fusion_lists(runs, depth=depth, names=names)
        qids = list(lists)
        results = self._run_all(query_texts, lists, paths, ranks, inter, progress, checkpoint, resume)
        qcol, dcol, scol = [], [], []
        for q in qids:
            order = results[q]
            qcol += [q] * len(order)
            dcol += order
            scol += list(range(len(order), 0, -1))
        return Run.from_arrays(np.asarray(qcol, dtype=object), np.asarray(dcol, dtype=object),
                               np.asarray(scol, dtype=np.float64), name="vic+vlm")

    def _ranks_from(self, runs: Sequence, lists: dict[str, list[str]]) -> dict[str, dict[str, dict[str, int | None]]]:
        """Per query, per head candidate: {retriever name: its 1-based rank there, or None}."""
        names = [getattr(r, "name", None) or f"run{i}" for i, r in enumerate(runs)]
        if len(set(names)) != len(names):
            names = [f"{n}#{i + 1}" for i, n in enumerate(names)]
        per_run = []
        for r in runs:
            per_run.append({v.query_id: {str(d): k for k, d in enumerate(v.doc_ids.tolist(), 1)}
                            for v in r.lists() if v.query_id in lists})
        return {q: {d: {n: t.get(q, {}).get(d) for n, t in zip(names, per_run)} for d in docs[: self.top]}
                for q, docs in lists.items()}
