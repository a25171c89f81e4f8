"""Transformers backend through the real AutoProcessor / AutoModelForImageTextToText path on a tiny random Qwen2-VL."""

import numpy as np
import pytest

from mmfuse import Run
from mmfuse.rerankers import VLMReranker, get_backend
from mmfuse.rerankers.prompts import Candidate

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def listwise(tiny_vlm_dir):
    return get_backend("transformers", str(tiny_vlm_dir), device="cpu", max_new_tokens=12)


def test_loads_through_auto_classes(listwise):
    assert type(listwise.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(listwise.processor).__name__ == "Qwen2VLProcessor"
    assert listwise.device == "cpu" and str(listwise.dtype) == "torch.float32" and listwise.yes_ids


def test_prompt_carries_one_image_per_candidate(listwise, rerank_clips):
    from PIL import Image

    cands = [Candidate(doc_id=c, label=i + 1, image=Image.new("RGB", (56 * (i + 1), 56), (i * 60, 0, 0)))
             for i, c in enumerate(COLOURS[:3])]
    inputs = listwise.encode([listwise.prompt("red", cands)])
    thw = inputs["image_grid_thw"].numpy()
    assert thw.shape[0] == 3 and list(thw[:, 2]) == [4, 8, 12]  # in label order: widths 56, 112, 168 px
    n_pad = int((inputs["input_ids"] == listwise.model.config.image_token_id).sum())
    assert n_pad == int(thw.prod(axis=1).sum()) // 4  # 2x2 merge


def test_listwise_rerank_end_to_end(listwise, rerank_clips):
    run = Run.from_dict({"q1": {c: 4.0 - i for i, c in enumerate(COLOURS)}, "q2": {"red": 1.0, "blue": 2.0}})
    rr = VLMReranker(listwise, top=4, cell=28)
    out = rr.rerank({"q1": "red", "q2": "blue"}, run, rerank_clips)
    assert sorted(d for d, _ in out.query("q1")) == sorted(COLOURS)
    assert rr.stats.reranked == 2 and rr.stats.failed == 0 and rr.stats.model_calls == 2
    p = rr.stats.parse
    assert p.calls == 2 and p.clean + p.repaired + p.failed == 2
    assert isinstance(listwise.last_answer, str)


def test_pointwise_batched_equals_one_by_one(tiny_vlm_dir, rerank_clips):
    from PIL import Image

    be = get_backend("transformers", str(tiny_vlm_dir), device="cpu", mode="pointwise", batch_size=4)
    imgs = [Image.new("RGB", (56 + 28 * (i % 2), 56), tuple(int(x) for x in np.random.default_rng(i).integers(0, 255, 3)))
            for i in range(3)]
    prompts = [be.prompt("a red car", [Candidate(doc_id=str(i), label=1, image=im)]) for i, im in enumerate(imgs)]
    batched = be.yes_scores(prompts)
    single = [be.yes_scores([p])[0] for p in prompts]
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)
    assert all(s < 0 for s in single)  # log-probabilities
    cands = [Candidate(doc_id=str(i), label=i + 1, image=im) for i, im in enumerate(imgs)]
    assert be.rank("a red car", cands, {}) == sorted(range(3), key=lambda i: -single[i])


def test_listwise_query_batching(tiny_vlm_dir, rerank_clips):
    be = get_backend("transformers", str(tiny_vlm_dir), device="cpu", max_new_tokens=6, query_batch=2)
    sizes = []
    real = be.model.generate

    def spy(**kw):
        sizes.append(int(kw["input_ids"].shape[0]))
        return real(**kw)

    be.model.generate = spy
    run = Run.from_dict({q: {c: 4.0 - i for i, c in enumerate(COLOURS)} for q in ("a", "b", "c")})
    rr = VLMReranker(be, top=3, window=3, cell=28)
    out = rr.rerank({"a": "red", "b": "blue", "c": "green"}, run, rerank_clips)
    assert sizes == [2, 1]  # three queries, two generate calls
    assert rr.stats.parse.calls == 3 and rr.stats.reranked == 3 and rr.stats.model_calls == 3
    assert all([d for d, _ in out.query(q)][3:] == ["yellow"] for q in "abc")


def test_qwen2_5_vl_architecture(tmp_path):
    from PIL import Image

    from mmfuse.rerankers.testing import build_tiny_vlm

    path = build_tiny_vlm(tmp_path / "q25", arch="qwen2_5_vl")
    be = get_backend("transformers", str(path), device="cpu", max_new_tokens=6)
    assert type(be.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    cands = [Candidate(doc_id=str(i), label=i + 1, image=Image.new("RGB", (56 * (i + 1), 56))) for i in range(3)]
    assert sorted(be.rank("a red car", cands, {})) == [0, 1, 2] and be.parse_stats.calls == 1
    be.mode = "pointwise"
    scores = be.yes_scores([be.prompt("a red car", [c]) for c in cands])
    assert len(scores) == 3 and all(np.isfinite(scores))
