"""Tests for mmfuse.fusion.streaming: block-wise fusion of Parquet runs equals in-memory fuse, bounded by the block size."""

from __future__ import annotations

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.errors import InputError, ParameterError
from mmfuse.fusion import fuse
from mmfuse.fusion.streaming import fuse_stream

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _run_table(seed: int, n_queries: int = 60, skip_every: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    q, d, s = [], [], []
    for i in range(n_queries):
        if skip_every and i % skip_every == 0:
            continue  # this run lacks some queries
        n = int(rng.integers(1, 15))
        docs = rng.choice(40, n, replace=False)
        sc = rng.integers(0, 4, n).astype(float) if ties else rng.normal(size=n)
        q += [f"q{i:03d}"] * n
        d += [f"d{x:02d}" for x in docs]
        s += sc.tolist()
    return pa.table({"query_id": q, "doc_id": d, "score": s})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    tables = [_run_table(1), _run_table(2, skip_every=3), _run_table(3, skip_every=5, ties=True)]
    sorted_paths, shuffled_paths = [], []
    for i, t in enumerate(tables):
        p = root / f"sorted{i}.parquet"
        pq.write_table(t, p, row_group_size=37)  # many small row groups: blocks cut across them
        sorted_paths.append(p)
        perm = np.random.default_rng(i).permutation(t.num_rows)
        p = root / f"shuffled{i}.parquet"
        pq.write_table(t.take(pa.array(perm)), p, row_group_size=50)
        shuffled_paths.append(p)
    return root, sorted_paths, shuffled_paths


def _in_memory(paths, **kw) -> Run:
    return fuse([Run.read(p) for p in paths], **kw).in_natural_order()


CASES = [
    dict(method="combsum"),
    dict(method="combmnz", norm="zmuv"),
    dict(method="rrf", k=10),
    dict(method="wsum", weights=[0.5, 0.3, 0.2], depth=5),
    dict(method="bordafuse"),
    dict(method=None),  # the library default (adaptive)
]


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: str(kw.get("method")))
@pytest.mark.parametrize("layout", ["sorted", "shuffled"])
def test_stream_equals_in_memory_fuse(runs, tmp_path, kw, layout):
    root, sorted_paths, shuffled_paths = runs
    paths = sorted_paths if layout == "sorted" else shuffled_paths
    out = tmp_path / "fused.parquet"
    stats = fuse_stream(paths, out, block_queries=7, **kw)
    assert stats["sorted_inputs"] == [layout == "sorted"] * 3
    assert stats["blocks"] == 9 and stats["queries"] == 60
    got = Run.read(out)
    want = _in_memory(sorted_paths, **kw)
    assert got.query_ids.tolist() == want.query_ids.tolist()  # natural query order
    assert got.equals(want, rtol=1e-12)
    table = pq.read_table(out)
    assert table.column_names == ["query_id", "doc_id", "score", "rank"]
    assert stats["rows_out"] == table.num_rows == len(want)
    assert not any(p.name.startswith(".fused") for p in tmp_path.iterdir())  # temp parts and files are gone


def test_row_blocks_and_trec_output_and_progress(runs, tmp_path):
    _, sorted_paths, shuffled_paths = runs
    calls = []
    out = tmp_path / "fused.trec"
    stats = fuse_stream([sorted_paths[0], shuffled_paths[1]], out, method="combsum", block_rows=40,
                        progress=lambda done, total, label: calls.append((done, total)))
    assert stats["blocks"] > 10
    assert calls[-1][0] == calls[-1][1] == stats["rows_in"]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    want = _in_memory([sorted_paths[0], sorted_paths[1]], method="combsum")
    assert Run.read(out).equals(want, rtol=1e-12)
    first = out.read_text().splitlines()[0].split()
    assert first[1] == "Q0" and first[3] == "1" and first[5] == "fused"


def test_bad_input_is_refused_before_writing(runs, tmp_path):
    root, sorted_paths, _ = runs
    out = tmp_path / "out.parquet"
    with pytest.raises(ParameterError, match="whole query batch"):
        fuse_stream(sorted_paths, out, method="q2e_entropy")
    with pytest.raises(ParameterError, match="weights: got 2 value"):
        fuse_stream(sorted_paths, out, method="wsum", weights=[1, 2])
    with pytest.raises(ParameterError, match="unknown fusion method 'combsun'.*combsum"):
        fuse_stream(sorted_paths, out, method="combsun")
    with pytest.raises(InputError, match="missing.parquet: file not found"):
        fuse_stream([root / "missing.parquet"], out)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"query_id": ["a"], "doc": ["x"], "score": [1.0]}), bad)
    with pytest.raises(InputError, match="need columns query_id, doc_id, score"):
        fuse_stream([bad], out)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"query_id": ["zz"], "doc_id": ["x"], "score": [1.0]}), other)
    disjoint = tmp_path / "disjoint.parquet"  # the coverage rule of fuse(): the same as in memory
    stats = fuse_stream([sorted_paths[0], other], disjoint, method="rrf")
    assert stats["shared_queries"] == 0
    want = fuse([Run.read(sorted_paths[0]), Run.read(other)], method="rrf")
    got = Run.read(disjoint)
    assert sorted(got.query_ids) == sorted(want.query_ids)
    for q in want.query_ids:
        assert dict(got.query(q)) == pytest.approx(dict(want.query(q)))
    disjoint.unlink()
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"query_id": ["a", "a"], "doc_id": ["x", "y"], "score": [1.0, float("nan")]}), nan)
    with pytest.raises(InputError, match="NaN"):
        fuse_stream([nan], out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_fuse_stream_equals_in_memory_cli(runs, tmp_path):
    from mmfuse.app.cli import main

    _, sorted_paths, _ = runs
    args = [str(p) for p in sorted_paths] + ["--method", "rrf", "--rrf-k", "20", "--depth", "10"]
    main(["fuse", *args, "--stream", "--block-rows", "100", "-o", str(tmp_path / "s.parquet")])
    main(["fuse", *args, "-o", str(tmp_path / "m.parquet")])
    streamed, memory = Run.read(tmp_path / "s.parquet"), Run.read(tmp_path / "m.parquet")
    assert streamed.to_dict() == memory.to_dict() and streamed.query_ids.tolist() == memory.query_ids.tolist()
    assert len(streamed) > 0


def test_cli_index_unknown_engine(tmp_path, capsys):
    from mmfuse.app.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["index", str(tmp_path), "--index", str(tmp_path / "idx"), "--modalities", "meta", "--engine", "spark"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--engine" in err and "'spark' is not one of local, ray" in err


def _natural_ids_run(tmp_path, name, seed, order):
    rng = np.random.default_rng(seed)
    ids = [f"q{i}" for i in range(1, 25)]  # q1 q2 ... q10 ...: byte order and natural order differ
    data = {q: {f"d{j}": float(rng.normal()) for j in rng.choice(30, int(rng.integers(1, 9)), replace=False)}
            for q in ids}
    run = Run.from_dict(data, name=name)
    t = run.to_arrow()
    if order == "bytes":
        t = t.sort_by("query_id")
    elif order == "shuffled":
        t = t.take(pa.array(rng.permutation(t.num_rows)))
    p = tmp_path / f"{name}.parquet"
    pq.write_table(t, p, row_group_size=7)
    return p


@pytest.mark.parametrize("block_rows", [1, 2, 5, 1000])
def test_natural_order_blocks_smaller_than_a_list_and_every_layout(tmp_path, block_rows):
    paths = [_natural_ids_run(tmp_path, "natural", 1, "natural"), _natural_ids_run(tmp_path, "bytes", 2, "bytes"),
             _natural_ids_run(tmp_path, "shuffled", 3, "shuffled")]
    out = tmp_path / "out.trec"
    stats = fuse_stream(paths, out, method="rrf", block_rows=block_rows)
    assert stats["sorted_inputs"] == [True, False, False]  # Run.to_parquet's natural order streams directly
    want = _in_memory(paths, method="rrf")
    got = Run.read(out)
    assert got.query_ids.tolist() == want.query_ids.tolist() == [f"q{i}" for i in range(1, 25)]
    assert got.equals(want, rtol=1e-12)
    if block_rows == 1:
        assert stats["blocks"] == 24  # every query is a block of its own, none is split


def test_stream_refuses_to_overwrite_an_input_unless_forced(runs, tmp_path):
    _, sorted_paths, _ = runs
    a = tmp_path / "a.parquet"
    a.write_bytes(sorted_paths[0].read_bytes())
    before = a.read_bytes()
    link = tmp_path / "link.parquet"
    link.symlink_to(a)
    for out in (a, link):
        with pytest.raises(InputError, match="is also an input"):
            fuse_stream([a, sorted_paths[1]], out, method="combsum")
    assert a.read_bytes() == before
    want = _in_memory([a, sorted_paths[1]], method="combsum")
    fuse_stream([a, sorted_paths[1]], a, method="combsum", force=True)  # read fully before the output lands
    assert Run.read(a).equals(want, rtol=1e-12)
