"""The LanceDB index store: videos, segments, per-modality vectors and texts, model specs, visibility rules.

Layout of an index directory (a LanceDB database plus derived caches)::

    videos        one row per fully indexed video: path, content hash, media info, modalities, status
    segments      video_id, segment_id, seg_index, start, end, ocr_text, asr_text
    transcripts   video_id, subtitles (JSON list of {start, end, text}: the ASR transcript for the reranker)
    meta          video_id, segment_id, title, description, tags, text (sidecar metadata)
    vec_<name>    video_id, segment_id, frame_time, vector, model, params  (one table per vector modality:
                  visual (one row per frame), audio (per segment), asr_dense, meta_dense, plug-ins)
    modalities    modality, kind, spec (JSON), ref: the model + parameters that produced each modality
    bm25/<m>/     bm25s indexes derived from the text columns (rebuilt when the set of videos changes)

Consistency: every LanceDB ``add``/``delete``/``merge_insert`` is an atomic commit of a new table
version, but a video spans several tables. A video therefore becomes visible only when its row in
``videos`` is written, which happens last, after all of its rows in the other tables. Readers filter
every table by the set of videos in ``videos``; rows left by an interrupted run (no ``videos`` row)
are invisible and are deleted by the next writer (:meth:`IndexStore.cleanup`). Re-indexing a changed
file first deletes its ``videos`` row (the video disappears atomically), then its other rows.

Full-text search: bm25s, not LanceDB FTS. OCR text needs character n-gram tokens (rapidocr drops the
spaces between words, so "openthedoor" must still match "open the door"), which bm25s takes as a
plain pre-tokenized corpus; bm25s scores a whole batch of queries with sparse matrix products (no
per-query round trip), its index is a few numpy files that load in milliseconds, and it ranks the
same way offline and in tests. The Lance tables stay the source of truth; the bm25s directories are
caches stamped with the table versions they were built from and rebuilt when stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfuse.errors import IndexError_, ModelError

os.environ.setdefault("LANCE_LOG", "error")  # lance warns on every table creation otherwise

BASE_TABLES = ("videos", "segments", "transcripts", "meta", "modalities")
TEXT_MODALITIES = ("ocr", "asr", "meta")


def spec_json(spec: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a model spec (sorted keys) so equal specs compare equal."""
    return json.dumps(dict(spec or {}), sort_keys=True, default=str)


def _sql_str(values: Sequence[str]) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "videos": pa.schema([
            ("video_id", pa.string()), ("path", pa.string()), ("content_hash", pa.string()),
            ("duration", pa.float64()), ("has_video", pa.bool_()), ("has_audio", pa.bool_()),
            ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()), ("rotation", pa.int32()),
            ("n_segments", pa.int32()), ("modalities", pa.string()), ("status", pa.string()),
            ("indexed_at", pa.string()),
        ]),
        "segments": pa.schema([
            ("video_id", pa.string()), ("segment_id", pa.string()), ("seg_index", pa.int32()),
            ("start", pa.float64()), ("end", pa.float64()), ("ocr_text", pa.string()), ("asr_text", pa.string()),
        ]),
        "transcripts": pa.schema([("video_id", pa.string()), ("subtitles", pa.string())]),
        "meta": pa.schema([
            ("video_id", pa.string()), ("segment_id", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
            ("title", pa.string()), ("description", pa.string()), ("tags", pa.string()), ("text", pa.string()),
        ]),
        "modalities": pa.schema([
            ("modality", pa.string()), ("kind", pa.string()), ("spec", pa.string()), ("ref", pa.string()),
        ]),
    }


def _vec_schema(dim: int) -> Any:
    import pyarrow as pa

    return pa.schema([
        ("video_id", pa.string()), ("segment_id", pa.string()), ("frame_time", pa.float64()),
        ("vector", pa.list_(pa.float32(), dim)), ("model", pa.string()), ("params", pa.string()),
    ])


@dataclass
class VideoRecord:
    """Everything one video contributes to the index, written by :meth:`IndexStore.write_video`."""

    video_id: str
    path: str
    content_hash: str
    info: dict[str, Any]
    segments: list[dict[str, Any]]  # video_id, segment_id, seg_index, start, end, ocr_text, asr_text
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> {segment_id, frame_time, vector}
    subtitles: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None  # title, description, tags, text
    modalities: list[str] = field(default_factory=list)


class IndexStore:
    """A LanceDB index directory. ``IndexStore.open(path)`` to read, ``IndexStore.create(path)`` to write.

    Writers hold an exclusive lock file (``.lock``) for their lifetime (use as a context manager or
    call :meth:`close`); a second writer gets :class:`IndexError_` naming the directory.
    """

    def __init__(self, path: str | os.PathLike, *, write: bool = False) -> None:
        import lancedb

        self.path = Path(path)
        self.write = write
        self._lock_fh = None
        if write:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise IndexError_(f"index {self.path}: cannot create directory: {e.strerror}") from None
            if not os.access(self.path, os.W_OK):
                raise IndexError_(f"index {self.path}: directory is not writable")
            self._acquire_lock()
        else:
            if not self.path.is_dir():
                raise IndexError_(f"index {self.path} does not exist; build it with `mmfuse index VIDEO_DIR --index {self.path}`")
            if not (self.path / "videos.lance").exists():
                raise IndexError_(f"index {self.path} is not an mmfuse index (no videos table); build it with `mmfuse index`")
        try:
            self.db = lancedb.connect(str(self.path))
        except Exception as e:  # lancedb raises plain exceptions for unusable directories
            self.close()
            raise IndexError_(f"index {self.path}: cannot open: {e}") from None
        self._tables: dict[str, Any] = {}
        self._cache: dict[tuple, Any] = {}
        self._registered: dict[str, str] = {}
        if write:
            for name, schema in _schemas().items():
                self._table(name, schema)

    # ----------------------------------------------------------------- life cycle
    @classmethod
    def open(cls, path: str | os.PathLike) -> "IndexStore":
        return cls(path, write=False)

    @classmethod
    def create(cls, path: str | os.PathLike) -> "IndexStore":
        return cls(path, write=True)

    def _acquire_lock(self) -> None:
        import fcntl

        lock = self.path / ".lock"
        try:
            fh = open(lock, "a+")
        except OSError as e:
            raise IndexError_(f"index {self.path}: cannot create lock file: {e.strerror}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise IndexError_(
                f"index {self.path} is locked by another writer (pid {holder}); wait for it or remove {lock} if that process is gone"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    def close(self) -> None:
        if self._lock_fh is not None:
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> "IndexStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # ----------------------------------------------------------------- tables
    def table_names(self) -> list[str]:
        resp = self.db.list_tables(limit=100000) if _accepts_limit(self.db.list_tables) else self.db.list_tables()
        return list(getattr(resp, "tables", resp))

    def _table(self, name: str, schema: Any = None) -> Any:
        tbl = self._tables.get(name)
        if tbl is not None:
            return tbl
        try:
            tbl = self.db.open_table(name)
        except Exception:
            if schema is None or not self.write:
                return None
            tbl = self.db.create_table(name, schema=schema, exist_ok=True)
        self._tables[name] = tbl
        return tbl

    def _read(self, name: str, columns: Sequence[str] | None = None) -> Any:
        """Whole table as Arrow (cached per table version)."""
        tbl = self._table(name)
        if tbl is None:
            return None
        if not self.write:
            with contextlib.suppress(Exception):
                tbl.checkout_latest()
        key = (name, tbl.version, tuple(columns) if columns else None)
        hit = self._cache.get(key)
        if hit is None:
            if columns:
                hit = tbl.to_arrow().select(list(columns))
            else:
                hit = tbl.to_arrow()
            self._cache = {k: v for k, v in self._cache.items() if k[0] != name}
            self._cache[key] = hit
        return hit

    def version_stamp(self, names: Sequence[str]) -> str:
        parts = []
        for n in names:
            tbl = self._table(n)
            parts.append(f"{n}={tbl.version if tbl is not None else 0}")
        return ";".join(parts)

    # ----------------------------------------------------------------- model specs
    def specs(self) -> dict[str, dict[str, Any]]:
        """``{modality: {"kind", "spec", "ref"}}`` for every modality written to this index."""
        t = self._read("modalities")
        if t is None:
            return {}
        out = {}
        for row in t.to_pylist():
            out[row["modality"]] = {"kind": row["kind"], "spec": json.loads(row["spec"] or "{}"), "ref": row["ref"] or ""}
        return out

    def check_spec(self, modality: str, spec: Mapping[str, Any] | None) -> None:
        """Raise :class:`ModelError` if ``modality`` already holds output of a different model/params."""
        have = self.specs().get(modality)
        if have is not None and spec_json(have["spec"]) != spec_json(spec):
            raise ModelError(
                f"index {self.path}: modality {modality!r} holds embeddings from {spec_json(have['spec'])}; "
                f"refusing to mix in {spec_json(spec)} (use the same model, or a new --index directory)"
            )

    def register_modality(self, modality: str, kind: str, spec: Mapping[str, Any] | None, ref: str = "") -> None:
        self.check_spec(modality, spec)
        import pyarrow as pa

        row = pa.table({"modality": [modality], "kind": [kind], "spec": [spec_json(spec)], "ref": [ref]},
                       schema=_schemas()["modalities"])
        tbl = self._table("modalities")
        tbl.merge_insert("modality").when_matched_update_all().when_not_matched_insert_all().execute(row)

    # ----------------------------------------------------------------- videos
    def videos(self) -> Any:
        """Arrow table of the visible (fully indexed) videos."""
        t = self._read("videos")
        import pyarrow.compute as pc

        return t.filter(pc.equal(t["status"], "done")) if t is not None and t.num_rows else t

    def video_states(self) -> dict[str, dict[str, Any]]:
        t = self.videos()
        if t is None:
            return {}
        return {r["video_id"]: r for r in t.select(["video_id", "path", "content_hash", "modalities"]).to_pylist()}

    def done_ids(self) -> np.ndarray:
        t = self.videos()
        if t is None or t.num_rows == 0:
            return np.empty(0, dtype=str)
        return np.asarray(t["video_id"].to_numpy(zero_copy_only=False)).astype(str)

    def _visible(self, t: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        if t is None:
            return None
        done = pa.array(self.done_ids().tolist(), type=pa.string())
        return t.filter(pc.is_in(t["video_id"], value_set=done))

    def forget(self, video_ids: Sequence[str]) -> None:
        """Remove videos: first their ``videos`` rows (they vanish atomically), then all their other rows."""
        if not video_ids:
            return
        where = f"video_id IN ({_sql_str(video_ids)})"
        self._table("videos").delete(where)
        for name in self.table_names():
            if name in ("videos", "modalities"):
                continue
            tbl = self._table(name)
            if tbl is not None and "video_id" in tbl.schema.names:
                tbl.delete(where)

    def cleanup(self) -> int:
        """Delete rows of videos that have no ``videos`` row (left by an interrupted run). Returns rows deleted."""
        done = set(self.done_ids().tolist())
        removed = 0
        for name in self.table_names():
            if name in ("videos", "modalities"):
                continue
            tbl = self._table(name)
            if tbl is None or "video_id" not in tbl.schema.names or tbl.count_rows() == 0:
                continue
            ids = tbl.to_arrow()["video_id"].to_pylist()
            orphans = sorted(set(ids) - done)
            if orphans:
                removed += sum(1 for i in ids if i not in done)
                tbl.delete(f"video_id IN ({_sql_str(orphans)})")
        return removed

    def write_video(self, rec: VideoRecord, specs: Mapping[str, tuple[str, Mapping[str, Any] | None, str]] | None = None) -> None:
        """Write one video (see :meth:`write_videos`)."""
        self.write_videos([rec], specs)

    def write_videos(self, recs: Sequence[VideoRecord],
                     specs: Mapping[str, tuple[str, Mapping[str, Any] | None, str]] | None = None) -> None:
        """Write all rows of a batch of videos, then their ``videos`` rows (which make them visible).

        One LanceDB commit per table per batch. ``specs`` maps modality -> (kind, spec, ref); each is
        checked against the index before anything is written, so a model mismatch leaves the index
        untouched.
        """
        import pyarrow as pa

        if not recs:
            return
        specs = dict(specs or {})
        for m, (kind, spec, ref) in specs.items():
            if self._registered.get(m) != spec_json(spec):
                self.register_modality(m, kind, spec, ref)
                self._registered[m] = spec_json(spec)
        schemas = _schemas()
        # Changed files: make the old versions invisible before touching anything else.
        known = self.video_states()
        changed = [r.video_id for r in recs if r.video_id in known]
        if changed:
            self.forget(changed)
        segs = [row for r in recs for row in r.segments]
        if segs:
            self._table("segments").add(pa.Table.from_pylist(segs, schema=schemas["segments"]))
        subs = [r for r in recs if r.subtitles is not None]
        if subs:
            self._table("transcripts").add(pa.table(
                {"video_id": [r.video_id for r in subs], "subtitles": [json.dumps(r.subtitles) for r in subs]},
                schema=schemas["transcripts"]))
        metas = [r.meta for r in recs if r.meta is not None]
        if metas:
            self._table("meta").add(pa.Table.from_pylist(metas, schema=schemas["meta"]))
        for m in sorted({m for r in recs for m in r.vectors}):
            kind, spec, ref = specs.get(m, ("vector", None, ""))
            ids, segids, times, vecs = [], [], [], []
            for r in recs:
                cols = r.vectors.get(m)
                if cols is None:
                    continue
                vec = np.asarray(cols["vector"], dtype=np.float32)
                if vec.ndim != 2 or vec.shape[0] == 0:
                    continue
                n = vec.shape[0]
                ids += [r.video_id] * n
                segids += [str(x) for x in cols["segment_id"]]
                ft = cols.get("frame_time")
                times.append(np.full(n, np.nan) if ft is None else np.asarray(ft, dtype=np.float64))
                vecs.append(vec)
            if not vecs:
                continue
            dims = {v.shape[1] for v in vecs}
            tbl = self._table(f"vec_{m}", _vec_schema(vecs[0].shape[1]))
            want = tbl.schema.field("vector").type.list_size
            if dims != {want}:
                raise ModelError(f"index {self.path}: modality {m!r} stores {want}-d vectors, got {sorted(dims)}-d from {spec_json(spec)}")
            vec = np.concatenate(vecs)
            n = vec.shape[0]
            tbl.add(pa.table({
                "video_id": ids, "segment_id": segids, "frame_time": pa.array(np.concatenate(times)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), want),
                "model": [str((spec or {}).get("model", m))] * n, "params": [spec_json(spec)] * n,
            }, schema=_vec_schema(want)))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = []
        for rec in recs:
            info = rec.info
            rows.append({
                "video_id": rec.video_id, "path": rec.path, "content_hash": rec.content_hash,
                "duration": float(info.get("duration") or 0.0), "has_video": bool(info.get("has_video", True)),
                "has_audio": bool(info.get("has_audio", False)), "width": int(info.get("width") or 0),
                "height": int(info.get("height") or 0), "fps": float(info.get("fps") or 0.0),
                "rotation": int(info.get("rotation") or 0), "n_segments": len(rec.segments),
                "modalities": ",".join(sorted(rec.modalities)), "status": "done", "indexed_at": now,
            })
        self._table("videos").add(pa.Table.from_pylist(rows, schema=schemas["videos"]))

    def optimize(self, ann_min_rows: int | None = None) -> None:
        """Compact the small per-video fragments into fewer files (readers see the same rows), and give every
        vector table past ``ann_min_rows`` rows (default ``vector_index.DEFAULT_MIN_ROWS``) an approximate index."""
        from .ann import DEFAULT_MIN_ROWS, ensure_vector_index

        for name in self.table_names():
            tbl = self._table(name)
            with contextlib.suppress(Exception):
                tbl.optimize()
            if "vector" in tbl.schema.names:
                ensure_vector_index(tbl, "vector", min_rows=DEFAULT_MIN_ROWS if ann_min_rows is None else ann_min_rows)

    # ----------------------------------------------------------------- readers
    def segments(self) -> dict[str, np.ndarray]:
        """Visible segments as numpy columns, sorted by (video_id, seg_index)."""
        t = self._visible(self._read("segments"))
        if t is None or t.num_rows == 0:
            return {c: np.empty(0, dtype=str if c.endswith(("id", "text")) else np.float64)
                    for c in ("video_id", "segment_id", "start", "end", "ocr_text", "asr_text")}
        t = t.sort_by([("video_id", "ascending"), ("seg_index", "ascending")])
        return _columns(t, ("video_id", "segment_id", "start", "end", "ocr_text", "asr_text"))

    def meta_rows(self) -> dict[str, np.ndarray]:
        t = self._visible(self._read("meta"))
        cols = ("video_id", "segment_id", "start", "end", "text")
        if t is None or t.num_rows == 0:
            return {c: np.empty(0, dtype=np.float64 if c in ("start", "end") else str) for c in cols}
        return _columns(t.sort_by("video_id"), cols)

    def vectors(self, modality: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(per-row columns video_id, segment_id, frame_time; [N, d] float32 matrix) of a vector modality."""
        t = self._visible(self._read(f"vec_{modality}"))
        if t is None or t.num_rows == 0:
            return {"video_id": np.empty(0, dtype=str), "segment_id": np.empty(0, dtype=str),
                    "frame_time": np.empty(0)}, np.empty((0, 0), dtype=np.float32)
        t = t.sort_by([("video_id", "ascending"), ("segment_id", "ascending"), ("frame_time", "ascending")])
        cols = _columns(t, ("video_id", "segment_id", "frame_time"))
        vec = t["vector"].combine_chunks()
        dim = vec.type.list_size
        mat = np.asarray(vec.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
        return cols, mat

    def has_vectors(self, modality: str) -> bool:
        return f"vec_{modality}" in self.table_names()

    def subtitles(self, video_id: str) -> list[dict[str, Any]]:
        """The ASR transcript of a video as ``[{start, end, text}, ...]`` (empty if none)."""
        t = self._visible(self._read("transcripts"))
        if t is None:
            return []
        for row in t.to_pylist():
            if row["video_id"] == video_id:
                return json.loads(row["subtitles"] or "[]")
        return []

    def video_path(self, video_id: str) -> str | None:
        for vid, row in self.video_states().items():
            if vid == video_id:
                return row["path"]
        return None

    def video(self, video_id: str) -> dict[str, Any] | None:
        """Everything the index holds about one visible video, or None when it holds no such video: its ``videos``
        row, ``meta`` (title, description, tags, text; None without metadata), ``segments`` (segment_id, start, end,
        ocr_text, asr_text, in order) and ``subtitles`` (the ASR transcript). Rows are picked by id from the cached
        tables, so the cost does not grow with the number of videos asked about."""
        import pyarrow.compute as pc

        v = self.videos()
        rows = [] if v is None else v.filter(pc.equal(v["video_id"], video_id)).to_pylist()
        if not rows:
            return None

        def of(name: str, columns: Sequence[str]) -> Any:
            t = self._read(name)
            return None if t is None else t.filter(pc.equal(t["video_id"], video_id)).select(list(columns))

        out = dict(rows[0])
        seg = of("segments", ("segment_id", "seg_index", "start", "end", "ocr_text", "asr_text"))
        out["segments"] = [] if seg is None else seg.sort_by("seg_index").drop_columns(["seg_index"]).to_pylist()
        meta = of("meta", ("title", "description", "tags", "text"))
        out["meta"] = meta.to_pylist()[0] if meta is not None and meta.num_rows else None
        subs = of("transcripts", ("subtitles",))
        out["subtitles"] = json.loads(subs["subtitles"][0].as_py() or "[]") if subs is not None and subs.num_rows else []
        return out

    # ----------------------------------------------------------------- bm25 cache
    def bm25(self, modality: str, texts: Sequence[str], builder: Any) -> Any:
        """A bm25s index over ``texts`` for ``modality``, cached under ``bm25/<modality>`` and stamped
        with the table versions; ``builder(texts)`` builds one, ``builder.load(dir)`` reloads."""
        stamp = self.version_stamp(["videos", "segments", "meta"])
        key = ("bm25", modality, stamp)
        if key in self._cache:
            return self._cache[key]
        d = self.path / "bm25" / modality
        idx = None
        if (d / "stamp.txt").exists() and (d / "stamp.txt").read_text() == stamp:
            with contextlib.suppress(Exception):
                idx = builder.load(d)
        if idx is None:
            idx = builder(list(texts))
            if os.access(self.path, os.W_OK):
                with contextlib.suppress(Exception):
                    _save_atomic(idx, d, stamp)
        self._cache[key] = idx
        return idx

    def stats(self) -> dict[str, Any]:
        v = self.videos()
        seg = self.segments()
        return {
            "videos": 0 if v is None else v.num_rows,
            "segments": int(len(seg["segment_id"])),
            "seconds": float(np.sum(v["duration"].to_numpy())) if v is not None and v.num_rows else 0.0,
            "modalities": sorted(self.specs()),
        }


def _accepts_limit(fn: Any) -> bool:
    import inspect

    with contextlib.suppress(Exception):
        return "limit" in inspect.signature(fn).parameters
    return False


def _columns(t: Any, cols: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        arr = t[c].to_numpy(zero_copy_only=False)
        if arr.dtype == object:
            arr = np.asarray([x if x is not None else "" for x in arr], dtype=object).astype(str)
        out[c] = arr
    return out


def _save_atomic(idx: Any, d: Path, stamp: str) -> None:
    """Save a bm25 index into ``d`` via a temp dir + rename so readers never see a half-written cache."""
    import shutil
    import tempfile

    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
    try:
        idx.save(tmp)
        (tmp / "stamp.txt").write_text(stamp)
        old = None
        if d.exists():
            old = d.with_name(f".{d.name}.old.{os.getpid()}")
            os.replace(d, old)
        os.replace(tmp, d)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def open_store(path: str | os.PathLike, write: bool = False) -> Iterator[IndexStore]:
    store = IndexStore(path, write=write)
    try:
        yield store
    finally:
        store.close()
