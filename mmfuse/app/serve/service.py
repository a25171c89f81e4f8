"""The search service behind ``mmfuse serve``, free of any web framework: one index, searched through the pipeline
``mmfuse search`` runs (one :class:`~mmfuse.pipeline.Pipeline` per fusion method and modality subset, built on first
use and kept, so models load once), each video's details, file and S-Grid. The request limits are checked here;
:mod:`.api` maps answers and errors onto HTTP routes and status codes.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmfuse.encoders.base import first_line
from mmfuse.errors import MmfuseError, ParameterError
from mmfuse.fusion import get_method, methods
from mmfuse.pipeline import Pipeline
from mmfuse.rerankers.grid import GridCache, GridSpec, default_cache_dir
from mmfuse.store.lance import IndexStore
from mmfuse.utils.lazy import require

# The S-Grid of a result card: the demo report's thumbnail (2x2 frames of 160x120), so the two share cache entries.
THUMBNAIL = GridSpec(rows=2, cols=2, cell=(160, 120))

OpenPipeline = Callable[[IndexStore, "str | None", "list[str] | None"], Pipeline]


class NotFound(ParameterError):
    """An id the index does not hold (HTTP 404)."""


class Unavailable(MmfuseError):
    """The index or a model cannot answer right now (HTTP 503): a damaged table, a model that does not load."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for: longer queries, deeper lists or bigger batches are refused (HTTP 400), so one
    client cannot hold the server for long."""

    query_chars: int = 1000  # characters of one query text
    k: int = 1000  # results per query
    batch: int = 100  # queries in one POST /api/search
    qid_chars: int = 200  # characters of one query id in a batch


class SearchService:
    """Searches one index and describes its videos.

    ``open_pipeline(store, fusion, modalities)`` builds the pipeline of one (fusion, modalities) choice over the
    shared ``store`` (``mmfuse serve`` passes the one ``mmfuse search`` builds); ``k``, ``fusion`` and
    ``modalities`` are the defaults of a request that names none; the last ``kept`` pipelines stay loaded.

    Searches run one at a time: the retrievers share models and in-memory indexes that were not written for
    concurrent use, and on a few cores parallel queries would only compete for the same CPUs.
    """

    def __init__(self, store: IndexStore, open_pipeline: OpenPipeline, *, k: int = 10, fusion: str | None = None,
                 modalities: Sequence[str] | None = None, limits: Limits = Limits(), kept: int = 4,
                 grids: GridCache | None = None, grids_kept: int = 128) -> None:
        self.store = store
        self.open_pipeline = open_pipeline
        self.limits = limits
        self.k = self._check_k(k)
        self.fusion = fusion
        self.modalities = list(modalities) if modalities else None
        self.kept = int(kept)
        self.problem: str | None = None  # why the last search failed (cleared by the next one that works)
        self._pipelines: OrderedDict[tuple, Pipeline] = OrderedDict()
        self._lock = threading.RLock()  # the store and the pipelines
        self._grids = grids
        self._pngs: OrderedDict[str, bytes] = OrderedDict()
        self._grids_kept = int(grids_kept)
        self._grid_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------- search
    def search(self, queries: Mapping[str, str], k: int | None = None, fusion: str | None = None,
               modalities: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """``{query_id: the JSON object of mmfuse search --json}`` for each query, in the given order."""
        lim = self.limits
        if not isinstance(queries, Mapping) or not queries:
            raise ParameterError("queries: give at least one {query_id: text}")
        queries = {str(q): t for q, t in queries.items()}
        if len(queries) > lim.batch:
            raise ParameterError(f"queries: at most {lim.batch} per request, got {len(queries)}")
        for qid, text in queries.items():
            if len(str(qid)) > lim.qid_chars:
                raise ParameterError(f"query id {str(qid)[:40]!r}...: at most {lim.qid_chars} characters")
            self._check_query(text, f"query {qid!r}")
        k = self.k if k is None else self._check_k(k)
        default = fusion is None and modalities is None  # what /api/health reports on
        with self._lock:
            pipe = self._pipeline(self.fusion if fusion is None else fusion,
                                  self.modalities if modalities is None else list(modalities))
            try:
                res = pipe.run(queries, k)
            except Exception as e:  # the index or a model failed: one line, never a traceback
                why = str(e) if isinstance(e, MmfuseError) else f"{first_line(e)} (index {self.store.path})"
                if default:
                    self.problem = f"search failed: {why}"
                raise Unavailable(f"search failed: {why}") from e
            if default:
                self.problem = None
            return {qid: res.as_dict(qid) for qid in queries}  # reads matched texts from the store: under the lock

    def search_one(self, q: str, k: int | None = None, fusion: str | None = None,
                   modalities: Sequence[str] | None = None) -> dict[str, Any]:
        """One query's JSON object, exactly what ``mmfuse search --json`` prints for it."""
        self._check_query(q, "q")
        return self.search({"q": q}, k, fusion, modalities)["q"]

    def warm_up(self) -> None:
        """Load the default pipeline's models and indexes now, with one throw-away query."""
        self.search_one("warm up", 1)

    def _check_query(self, text: Any, name: str) -> None:
        if not isinstance(text, str):
            raise ParameterError(f"{name}: must be text, got {type(text).__name__}")
        if not text.strip():
            raise ParameterError(f"{name}: is empty; give some text to search for")
        if len(text) > self.limits.query_chars:
            raise ParameterError(f"{name}: {len(text)} characters; at most {self.limits.query_chars}")

    def _check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.limits.k:
            raise ParameterError(f"k: must be an integer from 1 to {self.limits.k}, got {k!r}")
        return k

    def _pipeline(self, fusion: str | None, modalities: list[str] | None) -> Pipeline:
        key = (fusion, tuple(modalities) if modalities else None)
        pipe = self._pipelines.get(key)
        if pipe is None:
            try:
                pipe = self.open_pipeline(self.store, fusion, modalities)
            except ParameterError as e:  # the CLI's "--modalities: ..." is the request's "modalities: ..."
                raise ParameterError(str(e).removeprefix("--")) from None
            self._pipelines[key] = pipe
            while len(self._pipelines) > self.kept:
                self._pipelines.popitem(last=False)
        self._pipelines.move_to_end(key)
        return pipe

    # ----------------------------------------------------------------------------------------------- videos
    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Store reads under the lock; what the store's library raises becomes one :class:`Unavailable` line."""
        with self._lock:
            try:
                yield
            except MmfuseError:
                raise
            except Exception as e:
                raise Unavailable(f"index {self.store.path} cannot be read ({first_line(e)}); it may be damaged: "
                                  f"re-index it with `mmfuse index VIDEO_DIR --index {self.store.path}`") from e

    def health(self) -> dict[str, Any]:
        """What a client needs to know before searching; :class:`Unavailable` when searches fail."""
        with self._reading():
            videos = self.store.videos()
            specs = self.store.specs()
        if self.problem:
            raise Unavailable(self.problem)
        return {"status": "ok", "index": str(self.store.path), "videos": 0 if videos is None else videos.num_rows,
                "modalities": list(specs), "fusion": get_method(self.fusion).name, "fusions": list(methods()),
                "k": self.k, "limits": asdict(self.limits)}

    def video(self, video_id: str) -> dict[str, Any]:
        """A video's details: media facts, metadata, segments (times, OCR and ASR text) and transcript."""
        with self._reading():
            v = self.store.video(video_id)
        if v is None:
            raise NotFound(f"unknown video id {video_id!r}")
        meta = v["meta"] or {}
        return {"video_id": v["video_id"], "title": meta.get("title") or "",
                "description": meta.get("description") or "", "tags": meta.get("tags") or "",
                "file": Path(v["path"]).name, "duration": v["duration"],
                "width": v["width"], "height": v["height"], "fps": v["fps"], "has_video": v["has_video"],
                "has_audio": v["has_audio"], "modalities": [m for m in (v["modalities"] or "").split(",") if m],
                "indexed_at": v["indexed_at"], "segments": v["segments"], "transcript": v["subtitles"]}

    def media(self, video_id: str) -> Path:
        """The file of a video the index holds (only paths the index recorded are ever served)."""
        with self._reading():
            path = self.store.video_path(video_id)
        if path is None:
            raise NotFound(f"unknown video id {video_id!r}")
        p = Path(path)
        if not p.is_file():
            raise NotFound(f"video {video_id!r}: its file {p.name} is no longer where it was indexed")
        return p

    def grid_png(self, video_id: str) -> tuple[bytes, str]:
        """The video's S-Grid as PNG bytes and an ETag (changes with the file), built once and kept."""
        path = self.media(video_id)
        st = path.stat()
        etag = '"' + hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{THUMBNAIL.key()}".encode()
                                    ).hexdigest()[:32] + '"'
        with self._grid_lock:  # one build at a time: decoding is CPU-bound, and GridCache is not thread-safe
            png = self._pngs.get(etag)
            if png is None:
                if self._grids is None:
                    self._grids = _grid_cache()
                try:
                    img = self._grids.get(path, THUMBNAIL)
                except (MmfuseError, OSError) as e:
                    raise Unavailable(f"video {video_id!r}: cannot build its S-Grid ({e})") from None
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                png = self._pngs[etag] = buf.getvalue()
                while len(self._pngs) > self._grids_kept:
                    self._pngs.popitem(last=False)
            self._pngs.move_to_end(etag)
        return png, etag


def one_thread_per_call() -> None:
    """Run each model and matrix call of this process on one thread, as ``mmfuse serve`` does before it loads models:
    a search encodes one short query, and searches run one at a time, so a pool of one thread per core only spins
    waiting for CPUs (measured on 2 busy cores: 216 ms of CPU a query with the default pools, 22 ms with one
    thread). ``OMP_NUM_THREADS``, when set, wins."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    os.environ["OMP_NUM_THREADS"] = "1"  # torch (loaded later) reads it when it starts
    require("threadpoolctl", "serve").threadpool_limits(1)  # numpy's BLAS, loaded already


def _grid_cache() -> GridCache:
    """Grids on disk in the user's cache (shared with ``mmfuse rerank``), in memory when that is not writable."""
    try:
        return GridCache(default_cache_dir(), memory_items=8)
    except OSError:
        return GridCache(None)
