"""The run readers and writers as users meet them: the installed ``mmfuse`` console script in a subprocess. Bad input
exits 2 with one line on stderr (no traceback, no signal death); special output paths are written through, never
replaced; nothing that existed before is lost."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mmfuse
from mmfuse import Run
from mmfuse.fusion import fuse


def _mmfuse() -> list[str]:
    script = Path(sys.executable).with_name("mmfuse")
    return [str(script)] if script.exists() else [shutil.which("mmfuse") or "mmfuse"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    root = str(Path(mmfuse.__file__).resolve().parents[1])  # the mmfuse under test, also for the child
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*_mmfuse(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_clean_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-runs")
    a = {f"q{i}": {f"d{j}": float((i * 7 + j * 3) % 11) for j in range(6)} for i in range(1, 13)}
    b = {f"q{i}": {f"d{j}": float((i + j * 5) % 7) for j in range(2, 9)} for i in range(1, 13)}
    for name, data in (("a", a), ("b", b)):
        run = Run.from_dict(data, name=name)
        run.write(d / f"{name}.trec")
        run.write(d / f"{name}.parquet")
    return d


def _fused(d: Path) -> Run:
    return fuse([Run.read(d / "a.trec"), Run.read(d / "b.trec")], method="rrf", depth=1000)


def test_special_outputs_are_written_through_never_replaced(runs, tmp_path):
    base = ["fuse", str(runs / "a.trec"), str(runs / "b.trec"), "--method", "rrf"]
    null = os.stat("/dev/null")
    res = cli(*base, "-o", "/dev/null", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_rdev == null.st_rdev

    res = cli(*base, "-o", "-", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    (tmp_path / "stdout.trec").write_text(res.stdout)
    assert Run.read(tmp_path / "stdout.trec").to_dict() == _fused(runs).to_dict()
    order = list(dict.fromkeys(line.split()[0] for line in res.stdout.splitlines()))
    assert order == [f"q{i}" for i in range(1, 13)]  # natural order: q2 before q10

    fifo = tmp_path / "pipe.trec"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    res = cli(*base, "-o", str(fifo), cwd=tmp_path)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and got and got[0].startswith(b"q1 Q0 ")

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "fused.trec").write_text("old\n")
    link = tmp_path / "fused.trec"
    link.symlink_to(Path("store") / "fused.trec")
    res = cli(*base, "-o", str(link), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == os.path.join("store", "fused.trec")
    assert Run.read(tmp_path / "store" / "fused.trec").to_dict() == _fused(runs).to_dict()


def test_stream_blocks_smaller_than_a_query_list(runs, tmp_path):
    want = _fused(runs).to_dict()
    for rows in ("1", "5"):
        out = tmp_path / f"s{rows}.parquet"
        res = cli("fuse", str(runs / "a.parquet"), str(runs / "b.parquet"), "--stream", "--block-rows", rows,
                  "--method", "rrf", "-o", str(out), cwd=tmp_path)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert Run.read(out).to_dict() == want


def test_stream_output_equal_to_an_input_is_refused(runs, tmp_path):
    target = tmp_path / "a.parquet"
    shutil.copy(runs / "a.parquet", target)
    before = target.read_bytes()
    res = cli("fuse", str(target), str(runs / "b.parquet"), "--stream", "-o", str(target), cwd=tmp_path)
    one_clean_error(res, f"{target}: is also an input", "--force")
    assert target.read_bytes() == before


def _parquet(path: Path, **cols) -> str:
    pq.write_table(pa.table(cols), path)
    return str(path)


@pytest.mark.parametrize("case", ["null doc", "null query", "null score", "score 1_000", "arabic digits",
                                  "fullwidth digits", "doc id with a space", "stream null doc"])
def test_bad_input_is_one_line_and_the_old_output_stays(runs, tmp_path, case):
    out = tmp_path / "out.trec"
    out.write_text("precious\n")
    ok = str(runs / "a.parquet")
    if case.startswith("null") or case.startswith("stream"):
        cols = dict(query_id=["q1", "q1"], doc_id=["d1", "d2"], score=[1.0, 2.0])
        key = {"null doc": "doc_id", "null query": "query_id", "null score": "score", "stream null doc": "doc_id"}
        cols[key[case]] = [cols[key[case]][0], None]
        bad = _parquet(tmp_path / "bad.parquet", **cols)
        args = [bad, ok] + (["--stream"] if case.startswith("stream") else [])
        needles = ["bad.parquet", "row 2", f"{key[case]} is null"]
    elif case == "doc id with a space":
        bad = _parquet(tmp_path / "bad.parquet", query_id=["q1"], doc_id=["d 1"], score=[5.0])
        args = [bad, ok]
        needles = ["out.trec", "'d 1'", "'q1'"]
    else:
        token = {"score 1_000": "1_000", "arabic digits": "\u0661\u0662", "fullwidth digits": "\uff11\uff12"}[case]
        (tmp_path / "bad.trec").write_text(f"q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 {token} t\n", encoding="utf-8")
        args = [str(tmp_path / "bad.trec"), str(runs / "a.trec")]
        needles = ["bad.trec:2", f"score {token!r} is not a number"]
    res = cli("fuse", *args, "--method", "combsum", "-o", str(out), cwd=tmp_path)
    one_clean_error(res, *needles)
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.trec", Path(args[0]).name])


def test_eval_reads_a_bom_and_refuses_null_judgements(runs, tmp_path):
    for folder, text in (("bom", "\ufeffq1 0 d1 1\nq2 0 d3 1\n"), ("plain", "q1 0 d1 1\nq2 0 d3 1\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "qrels.txt").write_text(text, encoding="utf-8")
    res = cli("eval", "bom/qrels.txt", str(runs / "a.trec"), "--metrics", "ndcg@10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    plain = cli("eval", "plain/qrels.txt", str(runs / "a.trec"), "--metrics", "ndcg@10", cwd=tmp_path)
    assert plain.stdout == res.stdout
    bad = _parquet(tmp_path / "q.parquet", query_id=["q1", None], doc_id=["d1", "d2"], relevance=[1, 1])
    one_clean_error(cli("eval", bad, str(runs / "a.trec"), cwd=tmp_path), "q.parquet", "row 2: query_id is null")
