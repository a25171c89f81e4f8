"""Writers: the output-path rules of mmfuse.utils.files (stdout, devices, FIFOs, symlinks, refusals, modes, inputs
never overwritten), TREC id validation, natural query order, and write-then-read round trips (hypothesis)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmfuse import Qrels, Run
from mmfuse.errors import InputError
from mmfuse.utils.files import atomic_path, atomic_write, check_writable, refuse_input_overwrite


def _run() -> Run:
    return Run.from_dict({"q10": {"a": 1.0, "b": 3.0}, "q2": {"c": 2.0}, "q1": {"a": 0.5}}, name="t")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- output paths -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["trec", "json", "parquet"])
def test_new_files_get_the_umask_mode_and_old_files_keep_theirs(tmp_path, ext):
    p = tmp_path / f"out.{ext}"
    with umask(0o027):
        _run().write(p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o640  # 0666 & ~027, not mkstemp's 0600
        os.chmod(p, 0o604)
        _run().write(p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o604
    with umask(0o002):
        with atomic_write(tmp_path / "plain.txt") as fh:
            fh.write("x")
        with atomic_path(tmp_path / "by-name.bin") as tmp:
            tmp.write_bytes(b"x")
        assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o664
        assert stat.S_IMODE((tmp_path / "by-name.bin").stat().st_mode) == 0o664


@pytest.mark.parametrize("ext", ["trec", "json", "parquet"])
def test_character_device_is_written_through(ext):
    before = os.stat("/dev/null")
    _run().write("/dev/null", format=ext)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


@pytest.mark.parametrize("ext", ["trec", "json", "parquet"])
def test_fifo_is_written_through(tmp_path, ext):
    fifo = tmp_path / f"pipe.{ext}"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    _run().write(fifo)
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    (tmp_path / f"copy.{ext}").write_bytes(got[0])
    assert Run.read(tmp_path / f"copy.{ext}").equals(_run().in_natural_order())


def test_stdout(capfdbinary):
    _run().write("-")
    _run().write("-", format="parquet")
    out = capfdbinary.readouterr().out
    assert out.startswith(b"q1 Q0 a 1 0.5 t\nq2 Q0 c 1 2 t\nq10 Q0 b 1 3 t\nq10 Q0 a 2 1 t\n")
    assert out.endswith(b"PAR1")


def test_symlink_target_is_written_and_the_link_stays(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "run.trec"
    target.write_text("old\n")
    link = tmp_path / "link.trec"
    link.symlink_to(Path("real") / "run.trec")
    _run().write(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "run.trec")
    assert Run.read(target).equals(_run().in_natural_order())
    dangling = tmp_path / "dangling.trec"
    dangling.symlink_to(Path("real") / "new.trec")
    _run().write(dangling)
    assert dangling.is_symlink() and Run.read(tmp_path / "real" / "new.trec").n_queries == 3
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["new.trec", "run.trec"]  # no temp left


def test_directory_socket_and_missing_folder_are_refused(tmp_path):
    (tmp_path / "dir.trec").mkdir()
    with pytest.raises(InputError, match=r"dir.trec: cannot write: it is a directory, not a file"):
        _run().write(tmp_path / "dir.trec")
    sock = socket.socket(socket.AF_UNIX)
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # AF_UNIX paths are limited to ~100 bytes
        sock.bind(os.path.join(short, "s.trec"))
        for fmt in ("trec", "json", "parquet"):
            with pytest.raises(InputError, match=r"s.trec: cannot write: it is a socket, not a file"):
                _run().write(os.path.join(short, "s.trec"), format=fmt)
        assert stat.S_ISSOCK(os.lstat(os.path.join(short, "s.trec")).st_mode)
    sock.close()
    with pytest.raises(InputError, match="cannot write: directory .*nope does not exist"):
        _run().write(tmp_path / "nope" / "x.parquet")
    assert (tmp_path / "dir.trec").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["dir.trec"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "out.parquet"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as fh:
            fh.write("half")
            raise RuntimeError("interrupted")
    assert p.read_bytes() == b"old" and [x.name for x in tmp_path.iterdir()] == ["out.parquet"]


def test_output_that_is_an_input_is_refused_unless_forced(tmp_path):
    inp = tmp_path / "in.trec"
    _run().write(inp)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "alias.trec").symlink_to(inp)
    os.link(inp, tmp_path / "hard.trec")
    same = [inp, tmp_path / "sub" / ".." / "in.trec", tmp_path / "sub" / "alias.trec", tmp_path / "hard.trec",
            os.path.relpath(inp)]
    for out in same:
        with pytest.raises(InputError) as e:
            refuse_input_overwrite(out, [tmp_path / "other.trec", inp])
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{out}: is also an input ({inp})") and "--force" in msg
        refuse_input_overwrite(out, [inp], force=True)
    for out in (tmp_path / "new.trec", "-", "/dev/null", tmp_path / "sub" / "new.trec"):
        refuse_input_overwrite(out, [inp, "-"])
        check_writable(out)
    with pytest.raises(InputError, match="it is a directory"):
        check_writable(tmp_path / "sub")


# -- TREC ids ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("qid, doc, named", [
    ("q1", "a b", "doc id 'a b' of query 'q1'"),
    ("q1", "", "doc id '' of query 'q1'"),
    ("q1", "a\tb", "doc id 'a\\tb' of query 'q1'"),
    ("q1", "a\nb", "doc id 'a\\nb' of query 'q1'"),
    ("q1", "a\rb", "doc id 'a\\rb' of query 'q1'"),
    ("q1", "a\x0bb", "doc id 'a\\x0bb' of query 'q1'"),
    ("q1", "a\x0cb", "doc id 'a\\x0cb' of query 'q1'"),
    ("q1", " a", "doc id ' a' of query 'q1'"),
    ("q 1", "a", "query id 'q 1'"),
    ("", "a", "query id ''"),
    ("q\n", "a", "query id 'q\\n'"),
])
def test_unwritable_trec_ids_are_refused_before_writing(tmp_path, qid, doc, named):
    run = Run.from_arrays([qid, "q0"], [doc, "ok"], [1.0, 2.0])
    p = tmp_path / "out.trec"
    p.write_text("keep\n")
    with pytest.raises(InputError) as e:
        run.write(p)
    assert str(e.value).startswith(f"{p}: cannot write {named}: TREC ids must be non-empty")
    assert p.read_text() == "keep\n"
    qrels = Qrels.from_arrays([qid], [doc], [1])
    with pytest.raises(InputError, match="cannot write"):
        qrels.write(p)
    run.write(tmp_path / "ok.parquet")  # Parquet and JSON hold any id
    run.write(tmp_path / "ok.json")
    assert Run.read(tmp_path / "ok.parquet").to_dict() == Run.read(tmp_path / "ok.json").to_dict() == run.to_dict()


def test_unused_doc_ids_do_not_block_writing(tmp_path):
    # a doc table may hold more ids than the entries use (after a cut): only written ids are checked
    run = Run(["q1"], np.array(["a", "b c"], dtype=object), [0, 1], [0], [1.0])
    run.write(tmp_path / "x.trec")
    assert Run.read(tmp_path / "x.trec").to_dict() == {"q1": {"a": 1.0}}


def test_quotes_backslashes_and_unicode_round_trip(tmp_path):
    ids = ['"quoted"', "it's", "back\\slash", "é\u00a0nbsp", "\u2028", "#", "a,b", "\x00nul", "\U0001f600"]
    run = Run.from_arrays(ids, ids[::-1], np.arange(len(ids), dtype=float), name="t")
    run.write(tmp_path / "x.trec")
    assert Run.read(tmp_path / "x.trec").equals(run.in_natural_order())


# -- natural order ----------------------------------------------------------------------------------------------
def test_every_writer_puts_queries_in_natural_order(tmp_path):
    ids = ["q10", "q2", "q1", "q100", "a"]
    run = Run.from_arrays(ids, ["d"] * 5, [1.0] * 5, name="t")
    want = ["a", "q1", "q2", "q10", "q100"]
    run.write(tmp_path / "r.trec")
    assert [line.split()[0] for line in (tmp_path / "r.trec").read_text().splitlines()] == want
    run.write(tmp_path / "r.json")
    assert list(json.loads((tmp_path / "r.json").read_text())) == want
    run.write(tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").column("query_id").to_pylist() == want
    qrels = Qrels.from_arrays(ids, ["d"] * 5, [1] * 5)
    for ext in ("txt", "json", "parquet"):
        qrels.write(tmp_path / f"q.{ext}")
        assert Qrels.read(tmp_path / f"q.{ext}").query_ids.tolist() == want


# -- round trips (hypothesis) -----------------------------------------------------------------------------------
_TREC_ID = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \t\n\r\x0b\x0c\ufeff"),
                   min_size=1, max_size=8)
_ANY_ID = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_SCORE = st.floats(allow_nan=False, width=64) | st.sampled_from([0.0, -0.0, 1.0, 5e-324, 1.7976931348623157e308])
_REL = st.integers(-(2 ** 63), 2 ** 63 - 1) | st.integers(-3, 3)
FUZZ = settings(max_examples=int(os.environ.get("MMFUSE_FUZZ_EXAMPLES", 40)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _nested(ids, values, min_docs=1):
    return st.dictionaries(ids, st.dictionaries(ids, values, min_size=min_docs, max_size=6), min_size=1, max_size=6)


def _roundtrip(obj, cls, ext):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"x.{ext}"
        obj.write(p)
        return cls.read(p)


@FUZZ
@given(_nested(_TREC_ID, _SCORE), st.sampled_from(["trec", "parquet", "json"]))
def test_run_round_trip(data, ext):
    run = Run.from_dict(data, name="t")
    back = _roundtrip(run, Run, ext)
    want = run.in_natural_order()
    assert back.equals(want) and np.array_equal(back.scores, want.scores)  # exact, -0.0 == 0.0
    assert back.to_dict() == want.to_dict()


@FUZZ
@given(_nested(_ANY_ID, _SCORE, min_docs=0), st.sampled_from(["parquet", "json"]))
def test_run_round_trip_any_ids(data, ext):
    run = Run.from_dict(data, name="t")
    if ext == "parquet":  # a Parquet run has rows only: a query without entries is not kept
        run = run.subset([q for q, n in zip(run.query_ids.tolist(), run.counts().tolist()) if n])
    if len(run) == 0:
        return
    assert _roundtrip(run, Run, ext).equals(run.in_natural_order())


@FUZZ
@given(_nested(_TREC_ID, _REL), st.sampled_from(["txt", "parquet", "json"]))
def test_qrels_round_trip(data, ext):
    qrels = Qrels.from_dict(data)
    assert _roundtrip(qrels, Qrels, ext).to_dict() == qrels.to_dict()
