"""Prompt rendering: labels [1]..[K] in incoming order, one image per candidate in that order, metadata text."""

import pytest

from mmfuse.errors import ParameterError
from mmfuse.rerankers.prompts import Candidate, PromptTemplate, truncate_words


def _cands(k, ranks=True):
    return [Candidate(doc_id=f"v{i}", label=i + 1, image=f"IMG{i + 1}", subtitle="hello there" if i == 0 else "",
                      ranks={"clip": i + 1, "ocr": None} if ranks else {}, note="video missing" if i == 2 else "")
            for i in range(k)]


def test_listwise_interleaves_labels_and_images():
    parts = PromptTemplate.load("listwise").render('a "red" car', _cands(3), {"interleaved": [1, 2, 1, 3]})
    images = [v for kind, v in parts if kind == "image"]
    assert images == ["IMG1", "IMG2", "IMG3"]
    # each image is preceded by the text that names its label
    for i, (kind, v) in enumerate(parts):
        if kind == "image":
            assert parts[i - 1][1].rstrip().endswith(f"Candidate [{v[3:]}]:")
    text = "".join(v for kind, v in parts if kind == "text")
    assert 'a "red" car' in text and "[1] to [3]" in text
    assert "Retriever ranks: clip #1, ocr -" in text
    assert "[1] [2] [1] [3]" in text and 'Speech/subtitles: "hello there"' in text and "(video missing)" in text
    assert text.rstrip().endswith("Do not explain.")


def test_no_metadata_no_empty_lines():
    parts = PromptTemplate.load("listwise").render("q", _cands(2, ranks=False))
    text = "".join(v for kind, v in parts if kind == "text")
    assert "Retriever ranks" not in text and "interleaved" not in text and "\n\n\n" not in text


def test_user_template(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text("Q={query} K={k}\n--- candidate ---\n<{label}> <image> {doc_id}\n--- footer ---\nGo.")
    parts = PromptTemplate.load(p).render("dogs", _cands(2, ranks=False))
    assert parts == [("text", "Q=dogs K=2\n<1> "), ("image", "IMG1"), ("text", " v0\n<2> "), ("image", "IMG2"),
                     ("text", " v1\nGo.")]
    bad = tmp_path / "bad.txt"
    bad.write_text("{qeury}\n--- candidate ---\n<image>\n--- footer ---\n")
    with pytest.raises(ParameterError, match="bad.txt: unknown placeholder {qeury}"):
        PromptTemplate.load(bad)
    with pytest.raises(ParameterError, match="did you mean"):
        PromptTemplate.load("listwsie")


def test_truncate_words():
    assert truncate_words("a  b\nc d e", 3) == "a b c ..."
    assert truncate_words("a b", 3) == "a b"
    assert truncate_words("abc def ghi", 6, count=len) == "abc ..."
    assert truncate_words("x", 0) == ""
