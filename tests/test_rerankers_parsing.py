"""Tolerant ranking parser: hand-computed answers for the malformed outputs models really produce."""

import pytest

from mmfuse.rerankers.parsing import ParseStats, parse_ranking, repair_order


@pytest.mark.parametrize("text,k,order", [
    ("[3] > [1] > [2]", 3, [2, 0, 1]),
    ("Sure! The ranking is [2] > [3] > [1]. Hope it helps.", 3, [1, 2, 0]),
    ("[2], [3], [1]", 3, [1, 2, 0]),
    ("[ 2 ]>[1]>[3]", 3, [1, 0, 2]),
    ("3 > 1 > 2", 3, [2, 0, 1]),
    ("Among the 4 videos: 4, 2, 1, 3", 4, [3, 1, 0, 2]),
    ("2 >> 4 | 1 | 3", 4, [1, 3, 0, 2]),
    ("[2] > [2] > [1] > [3]", 3, [1, 0, 2]),  # duplicate keeps first
    ("[7] > [2] > [0] > [1]", 3, [1, 0, 2]),  # out of range dropped, missing appended
    ("[3] > [1] > [", 4, [2, 0, 1, 3]),  # truncated: missing appended in incoming order
])
def test_parse_variants(text, k, order):
    got, _ = parse_ranking(text, k)
    assert got == order


def test_parse_info_counts():
    order, info = parse_ranking("[2] > [2] > [9] > [1]", 4)
    assert order == [1, 0, 2, 3]
    assert (info.duplicates, info.out_of_range, info.missing, info.failed, info.clean) == (1, 1, 2, False, False)
    _, clean = parse_ranking("[1] > [2]", 2)
    assert clean.clean


@pytest.mark.parametrize("text", ["", None, "I cannot rank videos.", "[0] > [12]"])
def test_nothing_parses_keeps_incoming_order(text):
    order, info = parse_ranking(text, 3)
    assert order == [0, 1, 2]
    assert info.failed


def test_stats_accumulate_and_merge():
    s = ParseStats()
    for text in ["[1] > [2]", "[2] > [2]", "nothing"]:
        s.add(parse_ranking(text, 2)[1])
    assert s.as_dict() == {"calls": 3, "clean": 1, "repaired": 1, "failed": 1, "duplicates": 1,
                           "out_of_range": 0, "missing": 1}
    assert s.merge(s).calls == 6
    assert "1 unparseable" in s.summary()


def test_repair_order_from_backend():
    assert repair_order([2, 2, 5, 0], 3)[0] == [2, 0, 1]
    assert repair_order([], 2) == ([0, 1], repair_order([], 2)[1])
