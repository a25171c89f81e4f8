"""The LanceDB index store: videos, segments, per-modality vectors and texts, model specs, visibility rules,
approximate search over the vector tables, and the damage check and repair of an index directory.

Layout of an index directory (a LanceDB database plus derived caches)::

    videos        one row per fully indexed video: path, content hash, media info, modalities, status
    segments      video_id, segment_id, seg_index, start, end, ocr_text, asr_text, caption_text (VLM captions),
                  asr_lang (the language Whisper detected), asr_en_text (Whisper's English translation); columns
                  added after an index was made are added to it, empty, by the next writer
    transcripts   video_id, subtitles (JSON list of {start, end, text}: the ASR transcript for the reranker)
    meta          video_id, segment_id, title, description, tags, text (sidecar metadata)
    vec_<name>    video_id, segment_id, frame_time, vector, model, params  (one table per vector modality:
                  visual (one row per frame), audio (per segment), asr_dense, meta_dense, plug-ins)
    modalities    modality, kind, spec (JSON), ref: the model + parameters that produced each modality
    tables.json   the tables this index holds (written by the store), so a deleted table folder is noticed
    bm25/<m>/     bm25s indexes derived from the text columns (rebuilt when the set of videos changes)

Consistency: every LanceDB ``add``/``delete``/``merge_insert`` is an atomic commit of a new table
version, but a video spans several tables. A video therefore becomes visible only when its row in
``videos`` is written, which happens last, after all of its rows in the other tables. Readers filter
every table by the set of videos in ``videos``; rows left by an interrupted run (no ``videos`` row)
are invisible and are deleted by the next writer (:meth:`IndexStore.cleanup`). Re-indexing a changed
file first deletes its ``videos`` row (the video disappears atomically), then its other rows.

Damage (a table folder deleted, a truncated data file, a lost version manifest): opening checks that every table
in ``tables.json`` is there and its manifest reads (cheap: no data files); reading a damaged data file or index
file raises :class:`IndexError_` naming the table and the repair command instead of LanceDB's error.
:meth:`IndexStore.repair` (``mmfuse index VIDEO_DIR --index DIR --repair``) reads everything, drops what cannot be
read, forgets the videos whose rows went with it (the indexing run that follows re-indexes them) and removes the
BM25 caches; a writer refuses to touch a damaged index without it, since adding to a half-lost table would hide
the loss.

Full-text search: bm25s, not LanceDB FTS. OCR text needs character n-gram tokens (rapidocr drops the
spaces between words, so "openthedoor" must still match "open the door"), which bm25s takes as a
plain pre-tokenized corpus; bm25s scores a whole batch of queries with sparse matrix products (no
per-query round trip), its index is a few numpy files that load in milliseconds, and it ranks the
same way offline and in tests. The Lance tables stay the source of truth; the bm25s directories are
caches stamped with the table versions they were built from, rebuilt when stale, missing or unreadable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmfuse.errors import IndexError_, MmfuseError, ModelError
from mmfuse.utils.files import atomic_write
from mmfuse.utils.lazy import require

from . import ann
from .bm25 import Analyzer, Bm25Index

os.environ.setdefault("LANCE_LOG", "error")  # lance warns on every table creation otherwise

# ``videos`` last: it is created after the others, so a writer interrupted while creating a new index leaves no
# ``videos`` table and the next one sees a new index, not a damaged one.
BASE_TABLES = ("segments", "transcripts", "meta", "modalities", "videos")
TEXT_MODALITIES = ("ocr", "asr", "meta")
SEGMENT_COLUMNS = ("video_id", "segment_id", "start", "end", "ocr_text", "asr_text", "caption_text", "asr_lang",
                   "asr_en_text")
CATALOG = "tables.json"
# What LanceDB raises for unreadable files: IO errors arrive as RuntimeError/OSError, a lost manifest as ValueError.
_LANCE_ERRORS = (RuntimeError, OSError, ValueError)
_VEC_COLUMNS = ["video_id", "segment_id", "frame_time", "vector"]


def spec_json(spec: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a model spec (sorted keys) so equal specs compare equal."""
    return json.dumps(dict(spec or {}), sort_keys=True, default=str)


def _sql_str(values: Sequence[str]) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _lance_message(e: BaseException) -> str:
    """The useful part of a LanceDB error: its first line without the Rust source locations."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    text = re.sub(r",\s*/(rustc|root|home)/\S+", "", text)
    return re.sub(r"^lance error: LanceError\(\w+\):\s*", "", text).strip()


def _schemas() -> dict[str, pa.Schema]:
    return {
        "segments": pa.schema([
            ("video_id", pa.string()), ("segment_id", pa.string()), ("seg_index", pa.int32()),
            ("start", pa.float64()), ("end", pa.float64()), ("ocr_text", pa.string()), ("asr_text", pa.string()),
            ("caption_text", pa.string()), ("asr_lang", pa.string()), ("asr_en_text", pa.string()),
        ]),
        "transcripts": pa.schema([("video_id", pa.string()), ("subtitles", pa.string())]),
        "meta": pa.schema([
            ("video_id", pa.string()), ("segment_id", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
            ("title", pa.string()), ("description", pa.string()), ("tags", pa.string()), ("text", pa.string()),
        ]),
        "modalities": pa.schema([
            ("modality", pa.string()), ("kind", pa.string()), ("spec", pa.string()), ("ref", pa.string()),
        ]),
        "videos": pa.schema([
            ("video_id", pa.string()), ("path", pa.string()), ("content_hash", pa.string()),
            ("duration", pa.float64()), ("has_video", pa.bool_()), ("has_audio", pa.bool_()),
            ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()), ("rotation", pa.int32()),
            ("n_segments", pa.int32()), ("modalities", pa.string()), ("status", pa.string()),
            ("indexed_at", pa.string()),
        ]),
    }


def _vec_schema(dim: int) -> pa.Schema:
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
    segments: list[dict[str, Any]]  # the columns of the segments table
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> {segment_id, frame_time, vector}
    subtitles: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None  # title, description, tags, text
    modalities: list[str] = field(default_factory=list)


class IndexStore:
    """A LanceDB index directory. ``IndexStore.open(path)`` to read, ``IndexStore.create(path)`` to write,
    ``IndexStore.repair(path)`` to make a damaged one consistent again.

    Writers hold an exclusive lock file (``.lock``) for their lifetime (use as a context manager or
    call :meth:`close`); a second writer gets :class:`IndexError_` naming the directory. Opening a damaged
    index raises :class:`IndexError_` naming what is damaged (``check=False`` skips that, for :meth:`repair`).
    A reader keeps the table versions it opened (one consistent state per store); open a new one to see later
    commits.
    """

    def __init__(self, path: str | os.PathLike, *, write: bool = False, check: bool = True) -> None:
        lancedb = require("lancedb")
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
        elif not self.path.is_dir():
            raise IndexError_(f"index {self.path} does not exist; build it with `mmfuse index VIDEO_DIR --index {self.path}`")
        try:
            self.db = lancedb.connect(str(self.path))
        except Exception as e:  # lancedb raises plain exceptions for unusable directories
            self.close()
            raise IndexError_(f"index {self.path}: cannot open: {e}") from None
        self._tables: dict[str, Any] = {}
        self._cache: dict[tuple, Any] = {}
        self._registered: dict[str, str] = {}
        if check:
            problems = self.damage()
            if problems:
                self.close()
                raise self._damaged("; ".join(problems))
            if not write and not self._exists("videos"):
                raise IndexError_(f"index {self.path} is not an mmfuse index (no videos table); build it with `mmfuse index`")
        if write and check:  # repair() creates them once the damaged ones are gone
            for name, schema in _schemas().items():
                tbl = self._table(name, schema)
                missing = [f for f in schema if f.name not in tbl.schema.names]
                if missing:  # an index made before these columns existed: they are added, empty (null)
                    tbl.add_columns(pa.schema(missing))
            self._write_catalog()

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

    # ----------------------------------------------------------------- damage
    def _damaged(self, what: str) -> IndexError_:
        return IndexError_(
            f"index {self.path} is damaged: {what}; repair it with `mmfuse index VIDEO_DIR --index {self.path} "
            f"--repair` (re-indexes what was lost), or re-index into a new --index directory"
        )

    @contextlib.contextmanager
    def _reading(self, name: str) -> Iterator[None]:
        """Turn LanceDB's errors about unreadable files of table ``name`` into one :class:`IndexError_`."""
        try:
            yield
        except MmfuseError:
            raise
        except _LANCE_ERRORS as e:
            raise self._damaged(f"table {name!r} cannot be read ({_lance_message(e)})") from None

    def _exists(self, name: str) -> bool:
        # LanceDB's directory layout: one ``<name>.lance`` folder per table.
        return (self.path / f"{name}.lance").is_dir()

    def _catalog(self) -> list[str]:
        """Tables listed in ``tables.json`` ([] when there is none yet); IndexError_ when it cannot be read."""
        p = self.path / CATALOG
        if not p.exists():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return [str(t) for t in doc["tables"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexError_(f"{CATALOG} is unreadable ({e})") from None

    def _write_catalog(self) -> None:
        names = sorted(self._present())
        with contextlib.suppress(IndexError_):
            if sorted(self._catalog()) == names:
                return
        with atomic_write(self.path / CATALOG) as fh:
            json.dump({"format": 1, "tables": names}, fh, indent=1)

    def _present(self) -> set[str]:
        return {p.name[: -len(".lance")] for p in self.path.glob("*.lance") if p.is_dir()}

    def damage(self) -> list[str]:
        """What is missing or unreadable, found cheaply (table folders and version manifests, no data files): one
        phrase per problem, [] for a sound index. Data files are checked as they are read, and all by :meth:`repair`."""
        problems = []
        try:
            expected = set(self._catalog())
        except IndexError_ as e:
            problems.append(str(e))
            expected = set()
        present = self._present()
        if expected or "videos" in present:
            expected |= set(BASE_TABLES)
        for name in sorted(expected | present):
            if name not in present:
                problems.append(f"table {name!r} is missing (folder {name}.lance)")
                continue
            try:
                self._tables[name] = self.db.open_table(name)
            except _LANCE_ERRORS as e:
                if name in expected:  # else a table a writer is creating right now (listed once it exists)
                    problems.append(f"table {name!r} is unreadable ({_lance_message(e)})")
        return problems

    @classmethod
    def repair(cls, path: str | os.PathLike) -> list[str]:
        """Make a damaged index consistent again; returns one line per thing found and done.

        Every table is read in full; one that is missing or cannot be read is dropped and re-created empty, and the
        videos that had rows in it are forgotten (their other rows too), so the indexing run that follows re-indexes
        them from their files. A lost ``videos`` or ``modalities`` table loses every video. Vector and scalar indexes
        that cannot be searched are rebuilt, and the BM25 caches are removed (rebuilt by the next search).
        """
        p = Path(path)
        if not p.is_dir() or (not any(p.glob("*.lance")) and not (p / CATALOG).exists()):
            return [f"nothing to repair: no index in {p}"]
        with cls(p, write=False, check=False) as probe:
            bad = probe._unreadable_tables()
        with cls(p, write=True, check=False) as store:
            return store._repair(bad)

    def _unreadable_tables(self) -> dict[str, str]:
        """``{table: why}`` for every expected table that is missing or whose files cannot all be read."""
        present = self._present()
        expected = set(BASE_TABLES) | present
        with contextlib.suppress(IndexError_):
            expected |= set(self._catalog())
        bad = {}
        for name in sorted(expected):
            if name not in present:
                bad[name] = "missing"
                continue
            try:
                for _ in self.db.open_table(name).search().limit(None).to_batches(65536):
                    pass
            except _LANCE_ERRORS as e:
                bad[name] = f"unreadable ({_lance_message(e)})"
        return bad

    def _repair(self, bad: dict[str, str]) -> list[str]:
        lines = []
        everything = sorted({"videos", "modalities"} & set(bad))
        for name, why in bad.items():
            self._drop(name)
            lines.append(f"table {name!r} was {why}: re-created empty")
        if everything:
            # Without the videos list or the model registry nothing else can be trusted: start over.
            for name in self.table_names():
                self._drop(name)
            lines.append(f"table {everything[0]!r} held the index together: every video will be re-indexed")
        for name, schema in _schemas().items():
            self._table(name, schema)
        if not everything:
            lost = self._owners({n for n in bad if n not in ("videos", "modalities")})
            if lost:
                self.forget(lost)
                lines.append(f"forgot {len(lost)} video(s) whose rows were lost; this run re-indexes those "
                             f"under VIDEO_DIR: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}")
        removed = self.cleanup()
        if removed:
            lines.append(f"deleted {removed} row(s) of videos that are no longer in the index")
        for name in self.table_names():
            tbl = self._table(name)
            for cfg in tbl.list_indices():
                if not self._index_works(tbl, cfg):
                    tbl.drop_index(cfg.name)
                    lines.append(f"index {cfg.name!r} of table {name!r} could not be read: rebuilt")
        self.optimize()
        bm25 = self.path / "bm25"
        if bm25.exists():
            shutil.rmtree(bm25)
            lines.append("BM25 caches removed (the next search rebuilds them)")
        self._write_catalog()
        return lines or ["no damage found"]

    def _drop(self, name: str) -> None:
        self._tables.pop(name, None)
        self._cache.clear()
        try:
            self.db.drop_table(name, ignore_missing=True)
        except _LANCE_ERRORS:  # a folder without a readable manifest is not a table to LanceDB
            shutil.rmtree(self.path / f"{name}.lance", ignore_errors=True)
        if self._exists(name):
            shutil.rmtree(self.path / f"{name}.lance")

    def _owners(self, lost_tables: set[str]) -> list[str]:
        """Visible videos that had (or may have had) rows in the lost tables, judged by their modalities."""
        if not lost_tables:
            return []
        rows = self.video_states()
        if "segments" in lost_tables:
            return sorted(rows)
        need = {"transcripts": {"asr"}, "meta": {"meta"}}
        mods = set()
        for name in lost_tables:
            m = name.removeprefix("vec_")
            mods |= need.get(name, {m, m.removesuffix("_dense")})
        return sorted(v for v, r in rows.items() if mods & set(filter(None, (r["modalities"] or "").split(","))))

    @staticmethod
    def _index_works(tbl: Any, cfg: Any) -> bool:
        col = next(iter(cfg.columns))
        try:
            if "Ivf" in str(cfg.index_type) or "Hnsw" in str(cfg.index_type):
                dim = tbl.schema.field(col).type.list_size
                tbl.search(np.ones(dim, np.float32), vector_column_name=col).limit(1).to_arrow()
            else:
                tbl.count_rows(f"{col} = ''")
        except _LANCE_ERRORS:
            return False
        return True

    # ----------------------------------------------------------------- tables
    def table_names(self) -> list[str]:
        resp = self.db.list_tables(limit=100000) if _accepts_limit(self.db.list_tables) else self.db.list_tables()
        return list(getattr(resp, "tables", resp))

    def _table(self, name: str, schema: pa.Schema | None = None) -> Any:
        """The open table, None when it does not exist (created from ``schema`` by a writer)."""
        tbl = self._tables.get(name)
        if tbl is not None:
            return tbl
        if self._exists(name):
            with self._reading(name):
                tbl = self.db.open_table(name)
        elif schema is not None and self.write:
            tbl = self.db.create_table(name, schema=schema, exist_ok=True)
        else:
            return None
        self._tables[name] = tbl
        return tbl

    def _read(self, name: str, columns: Sequence[str] | None = None) -> pa.Table | None:
        """Whole table (or ``columns`` of it) as Arrow, cached per table version."""
        tbl = self._table(name)
        if tbl is None:
            return None
        with self._reading(name):
            key = (name, tbl.version, tuple(columns) if columns else None)
            hit = self._cache.get(key)
            if hit is None:
                hit = tbl.search().select(list(columns)).limit(None).to_arrow() if columns else tbl.to_arrow()
                self._cache = {k: v for k, v in self._cache.items() if k[0] != name or k[2] != key[2]}
                self._cache[key] = hit
        return hit

    def _where(self, name: str, where: str, columns: Sequence[str]) -> pa.Table | None:
        """Rows of ``name`` matching a SQL filter (a scalar index makes id lookups fast), visible videos only."""
        tbl = self._table(name)
        if tbl is None:
            return None
        with self._reading(name):
            t = tbl.search().where(where).select(list(columns)).limit(None).to_arrow()
        return self._visible(t)

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
        row = pa.table({"modality": [modality], "kind": [kind], "spec": [spec_json(spec)], "ref": [ref]},
                       schema=_schemas()["modalities"])
        tbl = self._table("modalities")
        tbl.merge_insert("modality").when_matched_update_all().when_not_matched_insert_all().execute(row)

    # ----------------------------------------------------------------- videos
    def videos(self) -> pa.Table | None:
        """Arrow table of the visible (fully indexed) videos."""
        t = self._read("videos")
        if t is None or t.num_rows == 0:
            return t
        return self._derived("done", lambda: t.filter(pc.equal(t["status"], "done")))

    def _derived(self, what: str, make: Any) -> Any:
        """``make()``, cached until the ``videos`` table changes."""
        key = (what, self._table("videos").version)
        hit = self._cache.get(key)
        if hit is None:
            hit = make()
            self._cache = {k: v for k, v in self._cache.items() if k[0] != what} | {key: hit}
        return hit

    def video_states(self) -> dict[str, dict[str, Any]]:
        t = self.videos()
        if t is None:
            return {}
        return {r["video_id"]: r for r in t.select(["video_id", "path", "content_hash", "modalities"]).to_pylist()}

    def _done(self) -> pa.Array:
        """The ids of the visible videos (reads only the two columns that decide it)."""
        t = self._read("videos", ["video_id", "status"])
        if t is None or t.num_rows == 0:
            return pa.array([], pa.string())
        return self._derived("visible", lambda: t.filter(pc.equal(t["status"], "done"))["video_id"].combine_chunks())

    def done_ids(self) -> np.ndarray:
        return np.asarray(self._done().to_numpy(zero_copy_only=False)).astype(str)

    def video_count(self) -> int:
        """Visible (fully indexed) videos."""
        return len(self._done())

    def _visible(self, t: pa.Table | None) -> pa.Table | None:
        if t is None:
            return None
        done = self._done()
        if t.num_rows * 8 >= len(done):
            return t.filter(pc.is_in(t["video_id"], value_set=done))
        # A few rows (search hits, look-ups by id): is_in would hash every visible id on each call; a binary search
        # in the sorted ids (sorted once per videos version) costs a few comparisons per row.
        ids = self._derived("visible-sorted", lambda: np.sort(np.asarray(done.to_pylist(), dtype=str)))
        mine = np.asarray(t["video_id"].to_pylist(), dtype=str)
        at = np.minimum(np.searchsorted(ids, mine), len(ids) - 1)
        return t.filter(pa.array(ids[at] == mine))

    def forget(self, video_ids: Sequence[str]) -> None:
        """Remove videos: first their ``videos`` rows (they vanish atomically), then all their other rows."""
        if not video_ids:
            return
        where = f"video_id IN ({_sql_str(video_ids)})"
        for name in ["videos", *(n for n in self.table_names() if n not in ("videos", "modalities"))]:
            tbl = self._table(name)
            if tbl is not None and "video_id" in tbl.schema.names:
                with self._reading(name):
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
            ids = self._read(name, ["video_id"])["video_id"].to_pylist()
            orphans = sorted(set(ids) - done)
            if orphans:
                removed += sum(1 for i in ids if i not in done)
                with self._reading(name):
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
            new = not self._exists(f"vec_{m}")
            tbl = self._table(f"vec_{m}", _vec_schema(vecs[0].shape[1]))
            if new:
                self._write_catalog()
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
        """Compact the small per-video fragments into fewer files (readers see the same rows), and give every table
        past ``ann_min_rows`` rows (default ``ann.DEFAULT_MIN_ROWS``) its search indexes: an approximate index on the
        vectors, B-tree indexes on ``segment_id`` and ``video_id`` (the id look-ups of approximate search)."""
        min_rows = ann.DEFAULT_MIN_ROWS if ann_min_rows is None else ann_min_rows
        for name in self.table_names():
            tbl = self._table(name)
            with contextlib.suppress(Exception):
                tbl.optimize()
            if "vector" in tbl.schema.names:
                ann.ensure_vector_index(tbl, "vector", min_rows=min_rows)
            for col in ("segment_id", "video_id"):
                if col in tbl.schema.names:
                    ann.ensure_scalar_index(tbl, col, min_rows=min_rows)

    # ----------------------------------------------------------------- readers
    def segments(self) -> dict[str, np.ndarray]:
        """Visible segments as numpy columns (:data:`SEGMENT_COLUMNS`; a text column an older index lacks reads as
        empty strings), sorted by (video_id, seg_index)."""
        t = self._visible(self._read("segments"))
        if t is None or t.num_rows == 0:
            return {c: np.empty(0, dtype=np.float64 if c in ("start", "end") else str) for c in SEGMENT_COLUMNS}
        t = t.sort_by([("video_id", "ascending"), ("seg_index", "ascending")])
        have = [c for c in SEGMENT_COLUMNS if c in t.column_names]
        return {c: np.full(t.num_rows, "") for c in SEGMENT_COLUMNS} | _columns(t, have)

    def rows_of(self, name: str, video_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every row of table ``name`` that belongs to the given visible videos, as dicts ([] without the table)."""
        tbl = self._table(name)
        if tbl is None or not len(video_ids) or "video_id" not in tbl.schema.names:
            return []
        t = tbl.search().where(f"video_id IN ({_sql_str(sorted(set(video_ids)))})").limit(None).to_arrow()
        return self._visible(t).to_pylist()

    def segment_count(self) -> int:
        """Rows in the ``segments`` table (visible or not: a cheap count, no scan)."""
        tbl = self._table("segments")
        if tbl is None:
            return 0
        with self._reading("segments"):
            return int(tbl.count_rows())

    def spans_of(self, video_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """``segment_id`` (sorted), ``start``, ``end`` of every visible segment of the given videos (fetched by id)."""
        t = self._where("segments", f"video_id IN ({_sql_str(sorted(set(video_ids)))})",
                        ["video_id", "segment_id", "start", "end"]) if len(video_ids) else None
        if t is None or t.num_rows == 0:
            return {"segment_id": np.empty(0, dtype=str), "start": np.empty(0), "end": np.empty(0)}
        return _columns(t.sort_by("segment_id"), ("segment_id", "start", "end"))

    def meta_rows(self) -> dict[str, np.ndarray]:
        t = self._visible(self._read("meta"))
        cols = ("video_id", "segment_id", "start", "end", "text")
        if t is None or t.num_rows == 0:
            return {c: np.empty(0, dtype=np.float64 if c in ("start", "end") else str) for c in cols}
        return _columns(t.sort_by("video_id"), cols)

    def vectors(self, modality: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(per-row columns video_id, segment_id, frame_time; [N, d] float32 matrix) of a vector modality, every
        visible row, sorted by (video_id, segment_id, frame_time)."""
        return _vector_columns(self._visible(self._read(f"vec_{modality}", _VEC_COLUMNS)))

    def vectors_of(self, modality: str, *, segment_ids: Sequence[str] = (),
                   video_ids: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Like :meth:`vectors`, only the rows of the given segments or videos (fetched by id, not scanned)."""
        col, ids = ("segment_id", segment_ids) if len(segment_ids) else ("video_id", video_ids)
        if not len(ids):
            return _vector_columns(None)
        return _vector_columns(self._where(f"vec_{modality}", f"{col} IN ({_sql_str(sorted(set(ids)))})", _VEC_COLUMNS))

    def vector_count(self, modality: str) -> int:
        """Rows in ``vec_<modality>`` (0 when the index has none): what decides exact or approximate search."""
        tbl = self._table(f"vec_{modality}")
        if tbl is None:
            return 0
        key = ("count", f"vec_{modality}", tbl.version)
        if key not in self._cache:
            with self._reading(f"vec_{modality}"):
                self._cache[key] = int(tbl.count_rows())
        return self._cache[key]

    def search_vectors(self, modality: str, queries: np.ndarray, limit: int, **knobs: Any) -> pa.Table:
        """Top-``limit`` rows of ``vec_<modality>`` by cosine per query vector, through the table's approximate index
        (:func:`mmfuse.store.ann.search`; ``knobs`` are its ``nprobes``/``refine_factor``/``ef``), visible videos only.
        Columns ``query_index``, ``video_id``, ``segment_id``, ``score``."""
        name = f"vec_{modality}"
        tbl = self._table(name)
        if tbl is None:
            raise IndexError_(f"index {self.path} has no vectors for modality {modality!r}")
        with self._reading(name):
            hits = ann.search(tbl, "vector", queries, limit, columns=["video_id", "segment_id"], **knobs)
        return self._visible(hits.select(["query_index", "video_id", "segment_id", "score"]))

    def has_vectors(self, modality: str) -> bool:
        return self._exists(f"vec_{modality}")

    def transcripts(self) -> pa.Table | None:
        """The stored ASR transcripts of the visible videos: columns ``video_id``, ``subtitles`` (JSON list of
        ``{start, end, text}``); None when the index has none."""
        return self._visible(self._read("transcripts"))

    def subtitles(self, video_id: str) -> list[dict[str, Any]]:
        """The ASR transcript of a video as ``[{start, end, text}, ...]`` (empty if none)."""
        t = self.transcripts()
        if t is None:
            return []
        for row in t.to_pylist():
            if row["video_id"] == video_id:
                return json.loads(row["subtitles"] or "[]")
        return []

    def video_path(self, video_id: str) -> str | None:
        row = self.video_states().get(video_id)
        return row["path"] if row else None

    def video(self, video_id: str) -> dict[str, Any] | None:
        """Everything the index holds about one visible video, or None when it holds no such video: its ``videos``
        row, ``meta`` (title, description, tags, text; None without metadata), ``segments`` (segment_id, start, end,
        and the segment text columns of :data:`SEGMENT_COLUMNS` the index has, in order) and ``subtitles`` (the ASR
        transcript). Rows are picked by id from the cached tables, so the cost does not grow with the number of
        videos asked about."""
        v = self.videos()
        rows = [] if v is None else v.filter(pc.equal(v["video_id"], video_id)).to_pylist()
        if not rows:
            return None

        def of(name: str, columns: Sequence[str]) -> Any:
            t = self._read(name)
            if t is None:
                return None
            return t.filter(pc.equal(t["video_id"], video_id)).select([c for c in columns if c in t.column_names])

        out = dict(rows[0])
        seg = of("segments", ("segment_id", "seg_index", *SEGMENT_COLUMNS[2:]))
        segs = [] if seg is None else seg.sort_by("seg_index").drop_columns(["seg_index"]).to_pylist()
        # a text the segment lacks (or an older index's missing column) reads as "", as in segments()
        out["segments"] = [{c: r.get(c) if c in ("start", "end") else (r.get(c) or "") for c in SEGMENT_COLUMNS[1:]}
                           for r in segs]
        meta = of("meta", ("title", "description", "tags", "text"))
        out["meta"] = meta.to_pylist()[0] if meta is not None and meta.num_rows else None
        subs = of("transcripts", ("subtitles",))
        out["subtitles"] = json.loads(subs["subtitles"][0].as_py() or "[]") if subs is not None and subs.num_rows else []
        return out

    # ----------------------------------------------------------------- bm25 cache
    def bm25(self, name: str, texts: Sequence[str], analyzer: Analyzer) -> Bm25Index:
        """A BM25 index over ``texts`` (one per row of the retriever ``name``), cached under ``bm25/<name>`` and
        stamped with the table versions it was built from; rebuilt when stale, missing or unreadable (it is a
        cache: the tables are the source of truth)."""
        stamp = self.version_stamp(["videos", "segments", "meta"])
        key = ("bm25", name, stamp)
        if key in self._cache:
            return self._cache[key]
        d = self.path / "bm25" / name
        idx = None
        with contextlib.suppress(IndexError_):
            idx = Bm25Index.load(d, stamp=stamp)
        if idx is None or idx.analyzer != analyzer or len(idx) != len(texts):
            idx = Bm25Index.build(list(texts), analyzer)
            if os.access(self.path, os.W_OK):
                with contextlib.suppress(OSError, MmfuseError):
                    d.parent.mkdir(exist_ok=True)
                    idx.save(d, stamp=stamp)
        self._cache[key] = idx
        return idx

    def stats(self) -> dict[str, Any]:
        v = self.videos()
        seg = self.segments()
        return {
            "videos": 0 if v is None else v.num_rows,
            "segments": len(seg["segment_id"]),
            "seconds": float(np.sum(v["duration"].to_numpy())) if v is not None and v.num_rows else 0.0,
            "modalities": sorted(self.specs()),
        }


def _accepts_limit(fn: Any) -> bool:
    import inspect

    with contextlib.suppress(Exception):
        return "limit" in inspect.signature(fn).parameters
    return False


def _columns(t: pa.Table, cols: Sequence[str]) -> dict[str, np.ndarray]:
    out = {}
    for c in cols:
        arr = t[c].to_numpy(zero_copy_only=False)
        if arr.dtype == object:
            arr = np.asarray([x if x is not None else "" for x in arr], dtype=object).astype(str)
        out[c] = arr
    return out


def _vector_columns(t: pa.Table | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rows of a vector table as (video_id, segment_id, frame_time columns; [N, d] float32), sorted by
    (video_id, segment_id, frame_time) so frames pool in the same order however they were fetched."""
    if t is None or t.num_rows == 0:
        return {"video_id": np.empty(0, dtype=str), "segment_id": np.empty(0, dtype=str),
                "frame_time": np.empty(0)}, np.empty((0, 0), dtype=np.float32)
    t = t.sort_by([("video_id", "ascending"), ("segment_id", "ascending"), ("frame_time", "ascending")])
    cols = _columns(t, ("video_id", "segment_id", "frame_time"))
    vec = t["vector"].combine_chunks()
    dim = vec.type.list_size
    mat = np.asarray(vec.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    return cols, mat
