"""Readers at the root: a byte-order mark is dropped, scores are ASCII TREC numbers only, and null ids are an error
naming the column and row, on every path a file can take (compiled tokenizer, Arrow CSV without numba, the line
reader) and for every container ids can come in (lists, numpy, pandas, Arrow, Parquet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mmfuse
from mmfuse import Qrels, Run
from mmfuse.errors import InputError
from mmfuse.runs import fastio, read_queries

BOM = "\ufeff"


def child_env() -> dict[str, str]:
    """The environment of a child Python that imports the same mmfuse as this process."""
    root = str(Path(mmfuse.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


@pytest.fixture(params=["compiled", "arrow-csv", "lines"])
def reader(request, monkeypatch):
    """Each way a TREC file can be read: the compiled tokenizer, Arrow's CSV reader (no numba), the line reader."""
    if request.param == "arrow-csv":
        monkeypatch.setattr(fastio, "kernels", lambda: None)
    elif request.param == "lines":
        monkeypatch.setattr(fastio, "tokenize_columns", lambda *a, **k: None)
    return request.param


def test_bom_is_dropped_from_runs_and_qrels(tmp_path, reader):
    text = "q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 1.5 tag\nq2 Q0 d1 1 0.5 tag\n"
    plain, bom = tmp_path / "plain.trec", tmp_path / "bom.trec"
    plain.write_text(text)
    bom.write_bytes((BOM + text).encode())
    got = Run.read(bom)
    assert got.query_ids.tolist() == ["q1", "q2"] and got.equals(Run.read(plain)) and got.name == "tag"
    qrels = "q1 0 d1 1\nq2 0 d3 2\n"
    (tmp_path / "q.txt").write_bytes((BOM + qrels).encode())
    assert Qrels.read(tmp_path / "q.txt").to_dict() == {"q1": {"d1": 1}, "q2": {"d3": 2}}
    # a file large enough to be tokenized in parts on threads
    big = "".join(f"q{q} Q0 d{d} {d + 1} {100 - d} tag\n" for q in range(2000) for d in range(100))
    assert len(big) > 1 << 22
    plain.write_text(big)
    bom.write_bytes((BOM + big).encode())
    assert Run.read(bom).equals(Run.read(plain))
    # a BOM anywhere else is data: this mark is part of the second line's id
    (tmp_path / "mid.trec").write_bytes(("q1 Q0 d1 1 1 t\n" + BOM + "q2 Q0 d1 1 1 t\n").encode())
    assert Run.read(tmp_path / "mid.trec").query_ids.tolist() == ["q1", BOM + "q2"]


def test_bom_is_dropped_from_json_and_query_files(tmp_path):
    (tmp_path / "r.json").write_bytes((BOM + '{"q1": {"d": 1.5}}').encode())
    assert Run.read(tmp_path / "r.json").to_dict() == {"q1": {"d": 1.5}}
    (tmp_path / "q.json").write_bytes((BOM + '{"q1": {"d": 1}}').encode())
    assert Qrels.read(tmp_path / "q.json").to_dict() == {"q1": {"d": 1}}
    (tmp_path / "topics.tsv").write_bytes((BOM + "q1\ta dog\r\nq2\tcooking\n").encode())
    assert read_queries(tmp_path / "topics.tsv") == {"q1": "a dog", "q2": "cooking"}
    (tmp_path / "topics.json").write_bytes((BOM + '{"q1": "a dog"}').encode())
    assert read_queries(tmp_path / "topics.json") == {"q1": "a dog"}


@pytest.mark.parametrize("token", ["1_000", "1_0", "\u0661\u0662\u0663", "\uff11\uff12", "\u0663.\u0665", "\u00bd",
                                   "0x10", "1e", "e5", "--1", "1.2.3", "1e5_0", "1,5", "inf_", "+-1", "\u2212" "1"])
def test_scores_are_ascii_trec_numbers_only(tmp_path, reader, token):
    p = tmp_path / "bad.trec"
    p.write_bytes(f"q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 {token} t\n".encode())
    with pytest.raises(InputError) as e:
        Run.read(p)
    assert str(e.value) == f"{p}:2: score {token!r} is not a number"


@pytest.mark.parametrize("token, value", [("1e5", 1e5), ("+3.5", 3.5), (".5", 0.5), ("5.", 5.0), ("-inf", -np.inf),
                                          ("Infinity", np.inf), ("1E-3", 1e-3), ("1e-400", 0.0), ("1e400", np.inf),
                                          ("-0", 0.0), ("00012.50", 12.5), ("4.9e-324", 5e-324)])
def test_odd_but_valid_scores_read_alike_on_every_path(tmp_path, reader, token, value):
    p = tmp_path / "ok.trec"
    p.write_text(f"q1 Q0 d1 1 {token} t\n")
    assert Run.read(p).scores.tolist() == [value]


@pytest.mark.parametrize("line, message", [
    ("q1 Q0 d1 \u0661 1.0 t", "rank '\u0661' is not a number"),
    ("q1 Q0 d1 1_0 1.0 t", "rank '1_0' is not a number"),
    ("q1 Q0 d1 1 nan t", "score is NaN"),
])
def test_rank_syntax_and_nan(tmp_path, reader, line, message):
    p = tmp_path / "r.trec"
    p.write_text(line + "\n")
    with pytest.raises(InputError, match=f"r.trec:1: {message}"):
        Run.read(p)


@pytest.mark.parametrize("rel", ["\uff11", "1_0", "1.0", "one"])
def test_qrels_relevance_is_an_ascii_integer(tmp_path, reader, rel):
    p = tmp_path / "q.txt"
    p.write_text(f"q1 0 d1 1\nq1 0 d2 {rel}\n")
    with pytest.raises(InputError, match=f"q.txt:2: rel {rel!r} is not a number"):
        Qrels.read(p)


def test_duplicate_judgement_names_the_line_on_every_path(tmp_path, reader):
    p = tmp_path / "q.txt"
    p.write_text("q1 0 d1 1\nq1 0 d2 0\nq1 0 d1 2\n")
    with pytest.raises(InputError, match=r"q.txt:3: duplicate judgement for \('q1', 'd1'\)"):
        Qrels.read(p)


# -- null ids: these crashed the process (a segfault in a compiled kernel), so they run in a child process ---------
NULL_CASES = textwrap.dedent('''
    import json, sys
    import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
    from mmfuse import Qrels, Run
    from mmfuse.errors import MmfuseError
    from mmfuse.fusion import fuse
    from mmfuse.fusion.streaming import fuse_stream

    def parquet(name, **cols):
        pq.write_table(pa.table(cols), name)
        return name

    cases = {
        "arrow query": lambda: Run.from_arrays(pa.array(["q1", None]), ["a", "b"], [1.0, 2.0]),
        "arrow doc": lambda: Run.from_arrays(["q1", "q1", "q1"], pa.array(["a", "b", None]), [1.0, 2.0, 3.0]),
        "chunked doc": lambda: Run.from_arrays(["q"] * 3, pa.chunked_array([["a", "b"], [None]]), [1.0, 2, 3]),
        "dictionary doc": lambda: Run.from_arrays(["q"] * 2, pa.array(["a", None]).dictionary_encode(), [1.0, 2]),
        "large_string query": lambda: Run.from_arrays(pa.array([None, "q"], pa.large_string()), ["a", "b"], [1.0, 2]),
        "all-null arrow": lambda: Run.from_arrays(pa.array([None, None]), ["a", "b"], [1.0, 2]),
        "list query": lambda: Run.from_arrays(["q1", None], ["a", "b"], [1.0, 2.0]),
        "numpy nan doc": lambda: Run.from_arrays(["q", "q"], np.array(["a", np.nan], dtype=object), [1.0, 2]),
        "pandas doc": lambda: Run.from_pandas(pd.DataFrame({"query_id": ["q", "q"], "doc_id": ["a", None],
                                                            "score": [1.0, 2.0]})),
        "qrels arrow query": lambda: Qrels.from_arrays(pa.array(["q1", None]), ["a", "b"], [1, 2]),
        "qrels arrow doc": lambda: Qrels.from_arrays(["q1", "q1"], pa.array([None, "b"]), [1, 2]),
        "parquet query": lambda: Run.read(parquet("a.parquet", query_id=["q", None], doc_id=["a", "b"],
                                                  score=[1.0, 2.0])),
        "parquet doc": lambda: Run.read(parquet("b.parquet", query_id=["q", "q"], doc_id=["a", None],
                                                score=[1.0, 2.0])),
        "parquet score": lambda: Run.read(parquet("c.parquet", query_id=["q", "q"], doc_id=["a", "b"],
                                                  score=[1.0, None])),
        "parquet qrels doc": lambda: Qrels.read(parquet("d.parquet", query_id=["q", "q"], doc_id=[None, "b"],
                                                        relevance=[1, 2])),
        "stream doc": lambda: fuse_stream([parquet("e.parquet", query_id=["q", "q"], doc_id=["a", None],
                                                   score=[1.0, 2.0])], "out.parquet"),
        "stream query": lambda: fuse_stream([parquet("f.parquet", query_id=["q", None], doc_id=["a", "b"],
                                                     score=[1.0, 2.0])], "out.trec"),
    }
    out = {}
    for name, make in cases.items():
        try:
            run = make()
            out[name] = "no error: " + repr(run)
        except MmfuseError as e:
            out[name] = type(e).__name__ + ": " + str(e)
    print(json.dumps(out))
''')

NULL_EXPECTED = {
    "arrow query": "run: row 2: query_id is null", "arrow doc": "run: row 3: doc_id is null",
    "chunked doc": "run: row 3: doc_id is null", "dictionary doc": "run: row 2: doc_id is null",
    "large_string query": "run: row 1: query_id is null", "all-null arrow": "run: row 1: query_id is null",
    "list query": "run: row 2: query_id is null", "numpy nan doc": "run: row 2: doc_id is null",
    "pandas doc": "run: row 2: doc_id is null", "qrels arrow query": "qrels: row 2: query_id is null",
    "qrels arrow doc": "qrels: row 1: doc_id is null", "parquet query": "a.parquet: row 2: query_id is null",
    "parquet doc": "b.parquet: row 2: doc_id is null", "parquet score": "c.parquet: row 2: score is null",
    "parquet qrels doc": "d.parquet: row 1: doc_id is null", "stream doc": "e.parquet: row 2: doc_id is null",
    "stream query": "f.parquet: row 2: query_id is null",
}


def test_null_ids_are_an_error_naming_column_and_row(tmp_path):
    res = subprocess.run([sys.executable, "-c", NULL_CASES], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=child_env())
    assert res.returncode == 0, f"child died (rc {res.returncode}): {res.stderr[-2000:]}"
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(got) == set(NULL_EXPECTED)
    for name, want in NULL_EXPECTED.items():
        assert got[name].startswith("InputError: " + want), (name, got[name])
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out.trec").exists()


# -- query files ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, pattern", [
    (b"q1\ta\nq1\tb\n", r"topics:2: query id 'q1' given again \(first at line 1\)"),
    (b"q1 no tab\n", "topics:1: expected 'qid<TAB>query text'"),
    (b"q1\t \n", "topics:1: expected 'qid<TAB>query text'"),
    (b"\n\n", "topics: no queries"),
    (b"q1\tok\nq2\t\xff\xfe\n", "topics:2: not valid UTF-8 text"),
    (b'{"q1": null}', "topics: query 'q1' must have a text, got None"),
    (b'{"q1": {"t": 1}}', "topics: query 'q1' must have a text"),
    (b'{"q1": ["a"]}', "topics: query 'q1' must have a text"),
    (b'{"q1": true}', "topics: query 'q1' must have a text"),
    (b'["q1"]', r"topics: expected a JSON object \{qid: text\}"),
    (b'{"q1": "x"', "topics:1: invalid JSON"),
])
def test_query_file_errors(tmp_path, content, pattern):
    p = tmp_path / "topics"
    p.write_bytes(content)
    with pytest.raises(InputError, match=pattern):
        read_queries(p)


def test_query_texts_keep_unicode_line_separators(tmp_path):
    from mmfuse.rerankers import load_queries  # the old name stays importable

    p = tmp_path / "topics.tsv"
    p.write_text("q1\tsong\u2028lyrics\nq2\tx\x1cy\n", encoding="utf-8")
    assert load_queries(p) == read_queries(p) == {"q1": "song\u2028lyrics", "q2": "x\x1cy"}
