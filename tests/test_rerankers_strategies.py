"""Strategies: RankGPT's back-to-front sliding window (hand-computed spans) and the ViC fusion union."""

import pytest

from mmfuse import Run
from mmfuse.errors import ParameterError
from mmfuse.rerankers.strategies import fusion_union, single_window, sliding_window, windows


def test_windows_back_to_front():
    assert windows(10, 4, 2) == [(6, 10), (4, 8), (2, 6), (0, 4)]
    assert windows(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40),
                                    (10, 30), (0, 20)]
    assert windows(5, 20, 10) == [(0, 5)]
    assert windows(7, 4, 3) == [(3, 7), (0, 4)]
    assert windows(0, 4, 2) == []
    with pytest.raises(ParameterError):
        windows(10, 4, 5)


def test_sliding_window_bubbles_best_to_top():
    calls = []

    def by_value(pos):  # oracle "model": sorts by the hidden relevance = the position value itself, descending
        calls.append(list(pos))
        return sorted(pos, key=lambda p: -p)

    out = sliding_window(list(range(10)), by_value, window=4, step=2)
    assert calls[0] == [6, 7, 8, 9]  # the bottom window goes first
    assert out[:2] == [9, 8]  # the two best climb all the way up (window - step = 2 carried per move)
    assert sorted(out) == list(range(10))
    assert single_window([0, 1, 2], by_value) == [2, 1, 0]


def test_fusion_union_vic_order():
    fusion = pytest.importorskip("mmfuse.fusion")
    if not hasattr(fusion, "interleave"):
        pytest.skip("mmfuse.fusion.interleave not available yet")
    a = Run.from_dict({"q": {"x": 3, "y": 2, "z": 1}}, name="clip")
    b = Run.from_dict({"q": {"y": 3, "w": 2}}, name="ocr")
    docs, ranks, seq = fusion_union([a, b], "q")
    assert seq == ["x", "y", "y", "w", "z"]
    assert docs == ["x", "y", "w", "z"]
    assert ranks == {"x": {"clip": 1, "ocr": None}, "y": {"clip": 2, "ocr": 1}, "w": {"clip": None, "ocr": 2},
                     "z": {"clip": 3, "ocr": None}}
