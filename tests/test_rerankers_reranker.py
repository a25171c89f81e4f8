"""VLMReranker with scripted backends: tail order, missing videos, failures, checkpoint/resume, loaders."""

import json
from pathlib import Path

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.errors import InputError, ParameterError
from mmfuse.rerankers import RerankBackend, VLMReranker, load_mapping, load_queries, load_subtitles

pytestmark = pytest.mark.slow  # builds grids from real clips

COLOURS = ["red", "green", "blue", "yellow", "white", "purple"]


class Reverse:
    """Puts the incoming order upside down; records what it was shown."""

    name = "reverse"

    def __init__(self, fail_on=(), interrupt_after=None):
        self.calls = []
        self.fail_on = set(fail_on)
        self.interrupt_after = interrupt_after

    def rank(self, query, candidates, metadata):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append((query, [c.doc_id for c in candidates], [c.label for c in candidates], metadata,
                           [c.note for c in candidates], [c.ranks for c in candidates]))
        if query in self.fail_on:
            raise RuntimeError("CUDA out of memory")
        return list(range(len(candidates)))[::-1]


def _run():
    return Run.from_dict({"q1": {c: 10.0 - i for i, c in enumerate(COLOURS)},
                          "q2": {"blue": 3.0, "ghost": 2.0, "red": 1.0}}, name="clip")


def test_protocol_and_single_window(rerank_clips):
    be = Reverse()
    assert isinstance(be, RerankBackend)
    rr = VLMReranker(be, top=4, cell=32)
    out = rr.rerank({"q1": "one", "q2": "two"}, _run(), rerank_clips)
    assert [d for d, _ in out.query("q1")] == ["yellow", "blue", "green", "red", "white", "purple"]  # tail kept
    assert [d for d, _ in out.query("q2")] == ["red", "ghost", "blue"]
    assert be.calls[0][2] == [1, 2, 3, 4]  # labels in incoming order
    assert be.calls[1][4] == ["", "video missing", ""]
    assert rr.stats.missing_videos == {"ghost": "video missing"}
    assert (rr.stats.reranked, rr.stats.failed, rr.stats.model_calls) == (2, 0, 2)
    assert out.name == "clip+vlm"
    scores = out.scores
    assert np.all(np.diff(scores[out.offsets[0]:out.offsets[1]]) < 0)


def test_directory_of_videos_and_sliding_window(rerank_clips):
    be = Reverse()
    rr = VLMReranker(be, top=6, window=4, step=2, cell=32)
    out = rr.rerank({"q1": "x", "q2": "y"}, _run().subset(["q1"]), next(iter(rerank_clips.values())).parent)
    assert [c[1] for c in be.calls] == [["blue", "yellow", "white", "purple"],
                                        ["red", "green", "purple", "white"]]
    assert [d for d, _ in out.query("q1")] == ["white", "purple", "green", "red", "yellow", "blue"]


def test_failure_keeps_incoming_order_and_counts(rerank_clips):
    rr = VLMReranker(Reverse(fail_on={"two"}), top=4, cell=32)
    out = rr.rerank({"q1": "one", "q2": "two"}, _run(), rerank_clips)
    assert [d for d, _ in out.query("q2")] == ["blue", "ghost", "red"]
    assert rr.stats.failed == 1 and rr.stats.failures[0][0] == "q2" and "out of memory" in rr.stats.failures[0][1]
    # a query without text is reported, not guessed
    rr.rerank({"q1": "one"}, _run(), rerank_clips)
    assert rr.stats.failures == [("q2", "no query text for this query id")]


def test_retriever_ranks_shown(rerank_clips):
    ocr = Run.from_dict({"q1": {"blue": 5.0, "red": 1.0}}, name="ocr")
    be = Reverse()
    VLMReranker(be, top=3, cell=32).rerank({"q1": "x"}, _run().subset(["q1"]), rerank_clips,
                                           retriever_runs=[_run(), ocr])
    assert be.calls[0][5] == [{"clip": 1, "ocr": 2}, {"clip": 2, "ocr": None}, {"clip": 3, "ocr": 1}]


def test_evidence_follows_documents(rerank_clips):
    base = _run()
    ev = {"segment_id": np.arange(len(base))}
    run = Run(base.query_ids, base.doc_ids, base.offsets, base.doc_idx, base.scores, name="r", evidence=ev)
    out = VLMReranker(Reverse(), top=3, cell=32).rerank({"q1": "a", "q2": "b"}, run, rerank_clips)
    before = dict(zip(zip(base.entry_query_ids(), base.entry_doc_ids()), ev["segment_id"]))
    after = dict(zip(zip(out.entry_query_ids(), out.entry_doc_ids()), out.evidence["segment_id"]))
    assert before == after


def test_checkpoint_and_resume(rerank_clips, tmp_path):
    ck = tmp_path / "out.partial.jsonl"
    run = Run.from_dict({f"q{i}": {c: 10.0 - j for j, c in enumerate(COLOURS[:3])} for i in range(4)})
    texts = {f"q{i}": f"t{i}" for i in range(4)}
    with pytest.raises(KeyboardInterrupt):
        VLMReranker(Reverse(interrupt_after=2), top=3, cell=32).rerank(texts, run, rerank_clips, checkpoint=ck)
    with open(ck, "a") as fh:
        fh.write('{"qid": "q9", "docs": [')  # a line cut by the crash
    assert len(ck.read_text().splitlines()) == 3
    be = Reverse()
    rr = VLMReranker(be, top=3, cell=32)
    out = rr.rerank(texts, run, rerank_clips, checkpoint=ck, resume=True)
    assert [c[0] for c in be.calls] == ["t2", "t3"] and rr.stats.resumed == 2
    assert all([d for d, _ in out.query(q)] == ["blue", "green", "red"] for q in texts)
    # without resume the checkpoint restarts
    be2 = Reverse()
    VLMReranker(be2, top=3, cell=32).rerank(texts, run, rerank_clips, checkpoint=ck)
    assert len(be2.calls) == 4


def test_parameters():
    with pytest.raises(ParameterError):
        VLMReranker(Reverse(), top=0)
    with pytest.raises(ParameterError):
        VLMReranker(Reverse(), step=0)
    assert VLMReranker(Reverse(), window=4, step=10).step == 4


def test_loaders(tmp_path):
    tsv = tmp_path / "q.tsv"
    tsv.write_text("1\ta dog on a beach\n\n2\tcooking\n")
    assert load_queries(tsv) == {"1": "a dog on a beach", "2": "cooking"}
    js = tmp_path / "q.json"
    js.write_text(json.dumps({"a": "x"}))
    assert load_queries(js) == {"a": "x"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tok\n2 missing tab\n")
    with pytest.raises(InputError, match="bad.tsv:2"):
        load_queries(bad)
    subs = tmp_path / "subs.json"
    subs.write_text(json.dumps([{"video_id": "v1", "desc": "THE ANSWER", "subtitle": "hi"}]))
    assert load_subtitles(subs) == {"v1": "hi"}  # desc (the caption) never leaks into prompts
    m = tmp_path / "map.tsv"
    m.write_text("d1\tvids/a.mp4\nd2\t/abs/b.mp4\n")
    assert load_mapping(m) == {"d1": tmp_path / "vids/a.mp4", "d2": Path("/abs/b.mp4")}


def test_fusion_mode_reranks_the_union(rerank_clips):
    clip = Run.from_dict({"q1": {"red": 3.0, "green": 2.0, "blue": 1.0}}, name="clip")
    ocr = Run.from_dict({"q1": {"green": 5.0, "purple": 4.0}}, name="ocr")
    be = Reverse()
    out = VLMReranker(be, top=3, cell=32).rerank_fusion({"q1": "x"}, [clip, ocr], rerank_clips)
    query, docs, labels, meta, notes, ranks = be.calls[0]
    assert docs == ["red", "green", "purple"]  # interleaved union, first appearance, cut at top
    assert meta == {"interleaved": [1, 2, 2, 3]}  # red, green(clip), green(ocr), purple; blue is beyond top
    assert ranks[1] == {"clip": 2, "ocr": 1}
    assert [d for d, _ in out.query("q1")] == ["purple", "green", "red", "blue"]
    assert out.name == "vic+vlm"


def test_batched_backend_falls_back_one_by_one(rerank_clips):
    class Batchy(Reverse):
        query_batch = 2

        def rank_batch(self, requests):
            raise RuntimeError("out of memory for the batch")

    be = Batchy()
    rr = VLMReranker(be, top=3, window=3, cell=32)
    out = rr.rerank({"q1": "one", "q2": "two"}, _run(), rerank_clips)
    assert [c[0] for c in be.calls] == ["one", "two"] and rr.stats.failed == 0
    assert [d for d, _ in out.query("q1")][:3] == ["blue", "green", "red"]
