"""Benchmark dataset loaders: score-matrix directories (ViC format), TREC and Parquet runs with their qrels.

Score matrices come in two layouts, both read as they are:

- **the ViC release** (GitHub ``mohammad2012191/ViC``): ``Similarity_Matrices/<Model>_<dataset>.npy`` next to
  ``Groud_Truth/descs_ret_test_<dataset>.csv`` (the release's own spelling; ``Ground_Truth/`` is accepted too).
  Give the release root or its ``Similarity_Matrices/`` folder: every dataset suffix that has both matrices and a
  CSV is one dataset, named by the suffix (``msrvtt``, ``didemo``, ...), or only those named with ``names=``;
- **flat**: one folder holding the ``.npy`` matrices and the CSV of one dataset, named by the folder.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mmfuse.errors import InputError, ParameterError, unknown
from mmfuse.runs import Qrels, Run

__all__ = ["Dataset", "load_dataset", "load_datasets", "load_matrix_dataset", "load_run_dataset", "release_datasets",
           "dataset_files", "fill_mask", "CANDIDATES"]

# How zero-filled entries of truncated retrievers become Runs:
#   "all"  - every column is a candidate and the fill competes as a real score (the protocol of the ViC release,
#            which the published CombSUM/RRF figures use; ties in the fill are broken by doc id, like trec_eval);
#   "real" - only real candidates: the fill block of each row is "not retrieved" and left out of the Run.
CANDIDATES = ("all", "real")

_RUN_EXT = (".trec", ".run", ".txt", ".tsv", ".parquet", ".json")
# the ViC release's folder names ("Groud" is how the release spells it)
MATRIX_DIR = "Similarity_Matrices"
TRUTH_DIRS = ("Groud_Truth", "Ground_Truth")
_QREL_NAMES = re.compile(r"(^|[._-])qrels?([._-]|$)", re.I)


@dataclass
class Dataset:
    """One benchmark dataset: per-retriever Runs over the same queries, the qrels, and (matrix format) the dense
    score matrices with their ground-truth masks for the vectorized fast path."""

    name: str
    path: Path
    runs: dict[str, Run]
    qrels: Qrels
    mode: str = "t2v"
    candidates: str = "all"
    matrices: dict[str, np.ndarray] | None = None   # [Q x D] per retriever (matrix format only)
    fills: dict[str, np.ndarray] | None = None      # [Q x D] bool, True where the entry is zero fill
    gt: np.ndarray | None = None                    # [Q x D] bool ground truth (matrix format only)
    query_ids: np.ndarray | None = None
    doc_ids: np.ndarray | None = None               # column order of the matrices
    n_docs: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def retrievers(self) -> list[str]:
        return list(self.runs)

    @property
    def n_queries(self) -> int:
        return int(self.qrels.n_queries)

    def matched_queries(self) -> dict[str, int]:
        """Per run, how many of the qrels queries it answers with at least one entry. The others count as empty
        lists, so a run whose query ids do not match the qrels scores 0 on every metric."""
        judged = self.qrels.query_ids.astype(str)
        return {name: int(np.isin(r.query_ids[r.counts() > 0].astype(str), judged).sum())
                for name, r in self.runs.items()}

    def select(self, names: Sequence[str] | None) -> Dataset:
        """The same dataset restricted to the retrievers ``names`` (unknown names raise naming the directory)."""
        if not names:
            return self
        for n in names:
            if n not in self.runs:
                err = unknown(f"retriever in {self.path}", n, self.runs)
                raise InputError(str(err))
        keep = list(dict.fromkeys(names))
        return Dataset(self.name, self.path, {n: self.runs[n] for n in keep}, self.qrels, self.mode, self.candidates,
                       {n: self.matrices[n] for n in keep} if self.matrices else None,
                       {n: self.fills[n] for n in keep} if self.fills else None,
                       self.gt, self.query_ids, self.doc_ids, self.n_docs, dict(self.meta))


def fill_mask(mat: np.ndarray) -> np.ndarray:
    """Entries that are the zero fill of a truncated retriever, per row.

    A row's fill is its block of entries tied at the row minimum when at least two entries share it (real scores
    practically never tie at the very bottom; a truncated list padded with 0, or with the smallest float after a
    softmax, always does). A row whose every entry is tied keeps them all (no ranking information, but no fill).
    """
    mn = mat.min(axis=1, keepdims=True)
    at_min = mat == mn
    cnt = at_min.sum(axis=1, keepdims=True)
    return at_min & (cnt >= 2) & (cnt < mat.shape[1])


def _read_csv(path: Path) -> tuple[list[str], list[str]]:
    """``video_id`` (and optional ``key``) per query row of a ViC-style CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "video_id" not in fields:
                raise InputError(f"{path}: CSV needs a 'video_id' column (has {', '.join(fields) or 'no header'})")
            keys, vids = [], []
            for i, row in enumerate(reader, start=2):
                v = (row.get("video_id") or "").strip()
                if not v:
                    raise InputError(f"{path}:{i}: empty video_id")
                vids.append(v)
                keys.append((row.get("key") or "").strip())
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise InputError(f"{path}: malformed CSV ({e})") from None
    if not vids:
        raise InputError(f"{path}: CSV has no rows")
    if all(keys) and len(set(keys)) == len(keys):
        qids = keys
    else:
        qids = [f"q{i}" for i in range(len(vids))]
    return qids, vids


def _retriever_name(stem: str, dataset: str) -> str:
    for suf in (f"_{dataset}", f"-{dataset}"):
        if dataset and stem.lower().endswith(suf.lower()) and len(stem) > len(suf):
            return stem[: -len(suf)]
    return stem


def load_matrix_dataset(path: str | Path, mode: str = "t2v", candidates: str = "all",
                        retrievers: Sequence[str] | None = None, csv_path: str | Path | None = None) -> Dataset:
    """Load a flat directory of ``<Retriever>_<dataset>.npy`` (or ``<Retriever>.npy``) matrices plus a CSV of queries.

    Rows are text queries in CSV order; columns are either one per CSV row (column j is the video of row j) or one
    per unique ``video_id`` in first-seen order. The ground truth of a text query is every column with its
    ``video_id``. ``mode="v2t"`` transposes (videos query, texts are the documents). For the ViC release's layout
    (``Similarity_Matrices/`` + ``Groud_Truth/``) use :func:`load_datasets`.
    """
    path = Path(path)
    _check_options(mode, candidates)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory")
    npys = sorted(path.glob("*.npy"))
    if not npys:
        raise InputError(f"{path}: no .npy score matrices in the directory")
    if csv_path is None:
        csvs = sorted(path.glob("*.csv"))
        if not csvs:
            raise InputError(f"{path}: no CSV with video_id per query row")
        if len(csvs) > 1:
            pref = [c for c in csvs if "desc" in c.stem.lower() or "test" in c.stem.lower()]
            csvs = pref or csvs
        csv_path = csvs[0]
    # dataset suffix common to every matrix (e.g. "_msrvtt")
    stems = [p.stem for p in npys]
    suffix = ""
    if len(stems) > 1 and all("_" in s for s in stems):
        tails = {s.rsplit("_", 1)[1] for s in stems}
        if len(tails) == 1:
            suffix = tails.pop()
    names = [_retriever_name(s, suffix) for s in stems]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: two matrices map to the same retriever name ({names})")
    return _matrix_dataset(path.name, path, dict(zip(names, npys)), Path(csv_path), mode, candidates, retrievers)


def _check_options(mode: str, candidates: str) -> None:
    if mode not in ("t2v", "v2t"):
        raise unknown("mode", mode, ["t2v", "v2t"])
    if candidates not in CANDIDATES:
        raise unknown("candidates convention", candidates, CANDIDATES)


def _release_dirs(path: Path) -> tuple[Path, Path] | None:
    """(matrix folder, ground-truth folder) when ``path`` is a ViC release root, or its ``Similarity_Matrices/``
    folder (any folder of matrices without a CSV of its own) with the ground-truth folder beside it."""
    if (path / MATRIX_DIR).is_dir():
        mats = path / MATRIX_DIR
    elif any(path.glob("*.npy")) and not any(path.glob("*.csv")):
        mats = path
    else:
        return None
    for t in TRUTH_DIRS:
        if (mats.parent / t).is_dir():
            return mats, mats.parent / t
    if mats != path:
        raise InputError(f"{path}: has {MATRIX_DIR}/ but no {TRUTH_DIRS[0]}/ folder beside it with the query CSVs")
    return None


def release_datasets(path: str | Path) -> dict[str, tuple[dict[str, Path], Path]]:
    """The datasets of a ViC release: ``{dataset: ({model: .npy}, csv)}`` for every dataset suffix that has both
    ``<Model>_<dataset>.npy`` matrices and a ``..._<dataset>.csv`` ground truth; ``{}`` when ``path`` is not laid
    out as the release."""
    dirs = _release_dirs(Path(path))
    if dirs is None:
        return {}
    mats, truth = dirs
    npys: dict[str, dict[str, Path]] = {}
    for f in sorted(mats.glob("*.npy")):
        model, _, dataset = f.stem.rpartition("_")
        if model and dataset:
            npys.setdefault(dataset, {})[model] = f
    csvs = {f.stem.rpartition("_")[2]: f for f in sorted(truth.glob("*.csv")) if "_" in f.stem}
    found = {d: (npys[d], csvs[d]) for d in sorted(npys) if d in csvs}
    if not found:
        raise InputError(f"{path}: no dataset has both <Model>_<dataset>.npy matrices in {mats} and a "
                         f"..._<dataset>.csv in {truth}")
    return found


def _matrix_dataset(dataset_name: str, path: Path, files: dict[str, Path], csv_path: Path, mode: str,
                    candidates: str, retrievers: Sequence[str] | None) -> Dataset:
    """One dataset from ``{retriever: .npy}`` matrices whose rows follow the query rows of ``csv_path``."""
    _check_options(mode, candidates)
    qids_text, vids = _read_csv(csv_path)
    if retrievers:
        for r in retrievers:
            if r not in files:
                where = path if dataset_name == path.name else f"{path} (dataset {dataset_name})"
                raise InputError(str(unknown(f"retriever in {where}", r, files)))
        files = {r: files[r] for r in dict.fromkeys(retrievers)}
    uniq = list(dict.fromkeys(vids))
    n_rows = len(vids)
    mats: dict[str, np.ndarray] = {}
    shape = None
    for name, f in files.items():
        try:
            m = np.load(f, mmap_mode=None, allow_pickle=False)
        except Exception as e:
            raise InputError(f"{f}: not a readable .npy matrix ({str(e).splitlines()[0]})") from None
        if m.ndim != 2:
            raise InputError(f"{f}: expected a 2-D matrix, got shape {m.shape}")
        if not np.issubdtype(m.dtype, np.number):
            raise InputError(f"{f}: matrix is not numeric ({m.dtype})")
        if shape is None:
            shape, first = m.shape, f
        elif m.shape != shape:
            raise InputError(f"{f}: shape {m.shape} differs from {first.name} {shape}")
        m = np.asarray(m, dtype=np.float64)
        bad = ~np.isfinite(m)
        if bad.any():
            r, c = map(int, np.argwhere(bad)[0])
            raise InputError(f"{f}: non-finite value {m[r, c]} at row {r}, column {c}")
        mats[name] = m
    assert shape is not None
    if shape[0] != n_rows:
        raise InputError(f"{csv_path}: {n_rows} query rows but {first.name} has {shape[0]} rows")
    if shape[1] == n_rows:
        col_vids = vids
        doc_ids = vids if len(uniq) == n_rows else [f"{v}#{j}" for j, v in enumerate(vids)]
    elif shape[1] == len(uniq):
        col_vids = uniq
        doc_ids = uniq
    else:
        raise InputError(f"{first}: {shape[1]} columns match neither the {n_rows} CSV rows nor the "
                         f"{len(uniq)} unique video ids of {csv_path.name}")
    gt = np.asarray(vids, dtype=object)[:, None] == np.asarray(col_vids, dtype=object)[None, :]
    qids, dids = list(qids_text), list(doc_ids)
    if mode == "v2t":
        mats = {k: np.ascontiguousarray(v.T) for k, v in mats.items()}
        gt = np.ascontiguousarray(gt.T)
        qids, dids = dids, qids_text
    fills = {k: fill_mask(v) for k, v in mats.items()}
    runs = {k: dense_to_run(v, qids, dids, None if candidates == "all" else ~fills[k], name=k)
            for k, v in mats.items()}
    qr, qc = np.nonzero(gt)
    qrels = Qrels.from_arrays(np.asarray(qids, dtype=object)[qr], np.asarray(dids, dtype=object)[qc],
                              np.ones(qr.size, dtype=np.int64), name=f"{dataset_name}-{mode}")
    return Dataset(dataset_name, path, runs, qrels, mode, candidates, mats, fills, gt,
                   np.asarray(qids, dtype=object), np.asarray(dids, dtype=object), len(dids),
                   {"format": "matrix", "csv": str(csv_path)})


def dense_to_run(mat: np.ndarray, query_ids, doc_ids, keep: np.ndarray | None = None, name: str = "run") -> Run:
    """A Run from a dense [Q x D] matrix (optionally only the ``keep`` entries), built with one row-wise stable
    sort: columns are pre-ordered by doc id descending so equal scores come out in trec_eval order."""
    mat = np.asarray(mat, dtype=np.float64)
    Q, D = mat.shape
    dids = np.asarray([str(d) for d in doc_ids], dtype=object)
    table_order = np.argsort(dids.astype(str), kind="stable")
    code = np.empty(D, dtype=np.int64)
    code[table_order] = np.arange(D)
    perm = table_order[::-1]                       # columns by doc id descending
    key = -mat[:, perm]
    if keep is not None:
        key = np.where(keep[:, perm], key, np.inf)  # dropped entries sort last and are cut below
    order = np.argsort(key, axis=1, kind="stable")
    cols = perm[order]
    vals = np.take_along_axis(mat, cols, axis=1)
    if keep is None:
        counts = np.full(Q, D, dtype=np.int64)
        doc_idx, scores = code[cols].ravel(), vals.ravel()
    else:
        counts = keep.sum(axis=1).astype(np.int64)
        sel = np.arange(D)[None, :] < counts[:, None]
        doc_idx, scores = code[cols][sel], vals[sel]
    offsets = np.zeros(Q + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Run(np.asarray([str(q) for q in query_ids], dtype=object), dids[table_order], offsets, doc_idx, scores,
               name=name)


def _read_qrels(p: Path) -> Qrels:
    try:
        return Qrels.read(p)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{p}: unreadable qrels ({str(e).splitlines()[0]})") from None


def load_run_dataset(path: str | Path, qrels: str | Path | None = None, retrievers: Sequence[str] | None = None) -> Dataset:
    """Load qrels plus one run file per retriever (TREC, Parquet or JSON), from a directory.

    The qrels file is ``qrels*`` (or ``*.qrels``) in the directory unless given; every other run file is one
    retriever, named after its file stem.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _RUN_EXT + (".qrels",))
    if qrels is None:
        cands = [p for p in files if _QREL_NAMES.search(p.stem) or p.suffix.lower() == ".qrels"]
        if not cands:
            raise InputError(f"{path}: no qrels file (name it qrels.txt / *.qrels, or pass qrels=)")
        qrels = cands[0]
    qrels = Path(qrels)
    run_files = [p for p in files if p.resolve() != qrels.resolve() and not _QREL_NAMES.search(p.stem)
                 and p.suffix.lower() != ".qrels"]
    if not run_files:
        raise InputError(f"{path}: no run files next to {qrels.name}")
    by_name = {p.stem: p for p in run_files}
    if retrievers:
        for r in retrievers:
            if r not in by_name:
                raise InputError(str(unknown(f"retriever in {path}", r, by_name)))
        by_name = {r: by_name[r] for r in dict.fromkeys(retrievers)}
    q = _read_qrels(qrels)
    if q.n_queries == 0:
        raise InputError(f"{qrels}: no judgements")
    runs = {}
    for name, p in by_name.items():
        r = Run.read(p, name=name)
        if len(r) == 0:
            raise InputError(f"{p}: empty run")
        runs[name] = r
    alldocs = set(q.doc_ids.tolist())
    for r in runs.values():
        alldocs.update(r.doc_ids.tolist())
    return Dataset(path.name, path, runs, q, "t2v", "real", n_docs=len(alldocs),
                   meta={"format": "runs", "qrels": str(qrels)})


def _check_dir(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such dataset directory")
    if not path.is_dir():
        raise InputError(f"{path}: a dataset is a directory (matrices + CSV, or qrels + runs)")
    if not any(path.iterdir()):
        raise InputError(f"{path}: empty directory")


def load_dataset(path: str | Path, mode: str = "t2v", candidates: str = "all",
                 retrievers: Sequence[str] | None = None, qrels: str | Path | None = None,
                 name: str | None = None) -> Dataset:
    """Load one dataset directory: ``.npy`` matrices + CSV (flat, or the ViC release's layout), or qrels + run files.

    For a ViC release that holds several datasets, ``name`` picks one (``"msrvtt"``); :func:`load_datasets` loads
    them all.
    """
    path = Path(path)
    _check_dir(path)
    release = release_datasets(path)
    if release:
        if name is None and len(release) > 1:
            raise ParameterError(f"{path}: holds the datasets {', '.join(release)}; name one (--dataset NAME)")
        name = name if name is not None else next(iter(release))
        if name not in release:
            raise unknown(f"dataset in {path}", name, release)
        return _matrix_dataset(name, path, *release[name], mode, candidates, retrievers)
    if name is not None and name != path.name:
        raise ParameterError(f"{path}: holds one dataset ({path.name}); dataset names pick among the datasets of "
                             f"a ViC release ({MATRIX_DIR}/ + {TRUTH_DIRS[0]}/)")
    if any(path.glob("*.npy")):
        return load_matrix_dataset(path, mode=mode, candidates=candidates, retrievers=retrievers)
    if mode != "t2v":
        raise InputError(f"{path}: --mode v2t needs a score-matrix dataset (run files fix their query side)")
    return load_run_dataset(path, qrels=qrels, retrievers=retrievers)


def load_datasets(paths: str | Path | Sequence[str | Path], mode: str = "t2v", candidates: str = "all",
                  retrievers: Sequence[str] | None = None, names: Sequence[str] | None = None) -> list[Dataset]:
    """Every dataset the directories ``paths`` hold, in order: each dataset of a ViC release (one per dataset
    suffix with both matrices and a CSV, in name order), the one dataset of any other folder.

    ``names`` keeps only those datasets of the releases (other folders always load); a name no release holds is an
    error listing the names they do hold.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    wanted = list(dict.fromkeys(names or ()))
    out: list[Dataset] = []
    offered: list[str] = []
    for path in paths:
        _check_dir(path)
        release = release_datasets(path)
        if not release:
            out.append(load_dataset(path, mode=mode, candidates=candidates, retrievers=retrievers))
            continue
        offered += release
        for name, entry in release.items():
            if not wanted or name in wanted:
                out.append(_matrix_dataset(name, path, *entry, mode, candidates, retrievers))
    for n in wanted:
        if n not in offered:
            if not offered:
                raise ParameterError(f"dataset {n!r}: dataset names pick among the datasets of a ViC release "
                                     f"({MATRIX_DIR}/ + {TRUTH_DIRS[0]}/), and no folder given is one")
            raise unknown("dataset", n, offered)
    return out


def dataset_files(path: str | Path) -> list[Path]:
    """The input files of a dataset directory (a release's matrices and CSVs included): outputs must not replace
    them."""
    path = Path(path)
    if not path.is_dir():
        return []
    dirs = [path, *(d for d in (_release_dirs(path) or ()) if d != path)]
    return [f for d in dirs for f in d.iterdir() if f.is_file()]
