"""Query expansion with a language model at search time: Q2E sub-queries, HyDE hypothetical passages, LameR answers
grounded in a first lexical retrieval. Each method asks the model once per query, and each retriever of the pipeline
searches with the answers; the result is one more run per retriever (``asr@q2e``, ``visual@hyde`` ...) that the
pipeline fuses with the retrievers' own runs.

How a retriever searches with the answers:

- ``q2e``: every retriever searches each sub-query; per retriever, the sub-queries' lists of a query are fused (with
  ``fusion``: the library default unless named, ``entropy`` for Q2E's entropy weighting) into its ``@q2e`` run,
  whose scores are then divided by the query's number of sub-queries (the fused evidence per sub-query: a sum of
  similarities stays a similarity, and a query split five ways does not outweigh its own unexpanded lists).
- ``hyde`` and ``lamer``: an embedding retriever (CLIP text tower, CLAP, MiniLM, plug-in vectors) searches with the
  mean of the unit embeddings of the query and the passages (the query's own embedding included, as HyDE does); a
  lexical or other text retriever searches with the query followed by the passages, one text (the query augmentation
  of LameR and query2doc).
- ``lamer``: the prompt shows the query with the top ``candidates`` videos of a first lexical retrieval (the
  pipeline's own OCR/ASR/metadata/caption BM25 lists, fused), each as the text its best segment matched.

A query whose answer failed (server error, timeout, refusal, nothing parseable) gets no entries in the expanded runs,
so the fusion's coverage rule leaves it exactly as the unexpanded search ranks it; a warning names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmfuse.encoders.base import l2_normalize
from mmfuse.errors import ModelError, ParameterError, unknown
from mmfuse.fusion import fuse, get_method
from mmfuse.llm import GenerationStats, ListStats, TextGenerator, TextTemplate, parse_list
from mmfuse.retrievers import EmbeddingRetriever
from mmfuse.runs import Run

__all__ = ["DEFAULT_N", "ExpansionReport", "LEXICAL", "METHODS", "QueryExpander", "QueryExpansion", "expanded_name"]

METHODS = ("q2e", "hyde", "lamer")
DEFAULT_N = {"q2e": 5, "hyde": 4, "lamer": 4}  # sub-queries / passages asked of the model
FIELDS = {"q2e": ("query", "n"), "hyde": ("query", "n"), "lamer": ("query", "n", "candidates")}
LEXICAL = ("ocr", "asr", "asr_en", "meta", "caption")  # modalities whose BM25 lists ground LameR
MAX_N = 20


def expanded_name(run_name: str, method: str) -> str:
    """The name of a retriever's expanded run: ``asr`` + ``q2e`` -> ``asr@q2e``."""
    return f"{run_name}@{method}"


@dataclass
class QueryExpansion:
    """What the model made of one query: the texts searched with (empty when it fell back), its raw answer, the
    reason of a fallback, tokens, whether the answer came from the cache, and (lamer) the candidates it was shown."""

    texts: list[str]
    answer: str = ""
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
    candidates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"texts": list(self.texts), "fallback": self.error is not None, "cached": self.cached,
                             "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        if self.error is not None:
            d["error"] = self.error
            d["answer"] = self.answer
        if self.candidates:
            d["candidates"] = list(self.candidates)
        return d


@dataclass
class ExpansionReport:
    """One expansion pass: the method, the model and prompt template that produced it (source and sha256 of the
    text), the fusion of q2e's sub-query lists, every query's :class:`QueryExpansion`, the model's totals and the
    parse counts, and the warnings (one per query that fell back)."""

    method: str
    model: dict[str, Any]
    template: dict[str, str]
    n: int
    fusion: str
    queries: dict[str, QueryExpansion] = field(default_factory=dict)
    stats: GenerationStats = field(default_factory=GenerationStats)
    parse: ListStats = field(default_factory=ListStats)
    warnings: list[str] = field(default_factory=list)

    @property
    def fallbacks(self) -> list[str]:
        return [q for q, e in self.queries.items() if e.error is not None]

    def header(self) -> dict[str, Any]:
        return {"method": self.method, "model": dict(self.model), "template": dict(self.template), "n": self.n,
                "fusion": self.fusion}

    def as_dict(self, qid: str | None = None) -> dict[str, Any]:
        """The record results carry: the header, and one query's expansion (``qid``) or every query's with the
        totals."""
        d = self.header()
        if qid is not None:
            e = self.queries.get(qid)
            d.update(e.as_dict() if e is not None else {"texts": [], "fallback": True})
            return d
        d["stats"] = self.stats.as_dict()
        d["parse"] = self.parse.as_dict()
        d["fallbacks"] = self.fallbacks
        d["queries"] = {q: e.as_dict() for q, e in self.queries.items()}
        return d

    def merge(self, other: "ExpansionReport") -> "ExpansionReport":
        """This pass and ``other`` (another batch of queries of the same expander) as one report."""
        return ExpansionReport(self.method, self.model, self.template, self.n, self.fusion,
                               {**self.queries, **other.queries}, self.stats.merge(other.stats),
                               self.parse.merge(other.parse), self.warnings + other.warnings)

    def summary(self) -> str:
        n = len(self.queries)
        return (f"expanded with {self.method} ({self.template['source']}, sha256 {self.template['sha256'][:12]}; "
                f"model {self.model.get('model')}): {n - len(self.fallbacks)}/{n} queries expanded, "
                f"{len(self.fallbacks)} searched unexpanded; {self.stats.summary()}")


class QueryExpander:
    """Expands queries with ``llm`` (a :class:`mmfuse.llm.TextGenerator`, e.g. from :func:`mmfuse.llm.load_llm`).

    ``method``: ``q2e``, ``hyde`` or ``lamer``. ``n``: sub-queries or passages asked for (default ``DEFAULT_N``).
    ``template``: a prompt file (default: the method's built-in one; fields ``{query}``, ``{n}`` and, for lamer,
    ``{candidates}``). ``fusion``/``fusion_params``: how q2e's sub-query lists, and lamer's first lexical lists, are
    fused (a method of :mod:`mmfuse.fusion`; None = the library default). ``candidates``/``candidate_words``: how many
    first-retrieval videos lamer shows, and at most how many words of each. ``max_tokens``/``temperature``: the
    generation settings (they are part of the answer cache's key).
    """

    def __init__(self, method: str, llm: TextGenerator, *, n: int | None = None, template: str | None = None,
                 fusion: str | None = None, fusion_params: Mapping[str, Any] | None = None, candidates: int = 5,
                 candidate_words: int = 60, max_tokens: int | None = None, temperature: float = 0.0) -> None:
        if method not in METHODS:
            raise unknown("expansion method", method, METHODS)
        if not callable(getattr(llm, "generate", None)):
            raise ParameterError(f"expand: {type(llm).__name__} has no generate(prompts) method; use mmfuse.llm.load_llm")
        n = DEFAULT_N[method] if n is None else n
        for label, v, lo, hi in (("n", n, 1, MAX_N), ("candidates", candidates, 1, 100),
                                 ("candidate_words", candidate_words, 1, 10_000)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise ParameterError(f"expand {label} must be an integer from {lo} to {hi}, got {v!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool) or int(max_tokens) < 1):
            raise ParameterError(f"expand max_tokens must be >= 1, got {max_tokens}")
        if not 0.0 <= float(temperature) <= 2.0:
            raise ParameterError(f"expand temperature must be from 0 to 2, got {temperature}")
        self.method = method
        self.llm = llm
        self.n = int(n)
        self.template = TextTemplate.load(template or method, "mmfuse.expand", builtins=METHODS,
                                          allowed=FIELDS[method], required=("query",))
        self.fusion = get_method(fusion).name if fusion else None
        self.fusion_params = dict(fusion_params or {})
        self.candidates = int(candidates)
        self.candidate_words = int(candidate_words)
        # a passage or sub-query is a sentence or two: room for n of them and the list's punctuation
        self.max_tokens = int(max_tokens) if max_tokens is not None else 80 * self.n + 64
        self.temperature = float(temperature)

    def __repr__(self) -> str:
        return f"QueryExpander({self.method!r}, {self.llm!r}, n={self.n})"

    # ---------------------------------------------------------------------------------------------------- prompts
    def prompt(self, query: str, candidates: Sequence[str] = ()) -> str:
        """The prompt of one query (lamer: with the first retrieval's candidate texts)."""
        listed = "\n".join(f"[{i}] {c}" for i, c in enumerate(candidates, 1)) or "(the keyword search found nothing)"
        return self.template.render(query=query, n=self.n, candidates=listed)

    def _candidates(self, queries: Mapping[str, str], searched: Sequence[tuple[Any, Run]], texts: Any,
                    warn: Any) -> dict[str, list[tuple[str, str]]]:
        """LameR's first retrieval: per query the top videos of the fused lexical runs with the text each matched."""
        lexical = [run for r, run in searched if getattr(r, "modality", None) in LEXICAL
                   and not isinstance(r, EmbeddingRetriever)]
        if not lexical:
            warn("lamer: no lexical retriever (ocr, asr, meta, caption) to find candidates; the model sees none")
            return {q: [] for q in queries}
        qids = list(queries)
        first = fuse(lexical, method=self.fusion, queries=qids, **self.fusion_params).cut(self.candidates)
        segs = [(run.name, _segments(run)) for run in lexical]
        out: dict[str, list[tuple[str, str]]] = {}
        for qid in qids:
            got = []
            for doc, _ in first.query(qid):
                bits: list[str] = []
                for name, by_query in segs:
                    seg = by_query.get((qid, doc))
                    text = texts.get(name, seg) if (texts is not None and seg is not None) else None
                    if text and text not in bits:
                        bits.append(" ".join(text.split()))
                words = " / ".join(bits).split(" ")
                if words != [""]:
                    cut = words[:self.candidate_words]
                    got.append((doc, " ".join(cut) + (" ..." if len(words) > len(cut) else "")))
            out[qid] = got
        return out

    # ---------------------------------------------------------------------------------------------------- expand
    def expand(self, queries: Mapping[str, str], searched: Sequence[tuple[Any, Run]], depth: int, *,
               texts: Any = None) -> tuple[list[Run], ExpansionReport]:
        """Ask the model about ``queries`` (``{query_id: text}``, none blank) and search with its answers.

        ``searched``: ``(retriever, its run)`` for every retriever of the pipeline (the runs ground lamer; each
        retriever searches again with the answers, ``depth`` deep). ``texts``: looks up the text a retriever matched
        in a segment (``texts.get(run_name, segment_id)``, as :class:`mmfuse.pipeline.SegmentTexts`), for lamer's
        prompt. Returns one run per retriever, named ``NAME@METHOD`` (queries that fell back have no entries), and
        the :class:`ExpansionReport`.
        """
        report = ExpansionReport(self.method, dict(getattr(self.llm, "spec", {"model": repr(self.llm)})),
                                 self.template.record(), self.n, self.fusion or "default")
        warn = report.warnings.append
        qids = list(queries)
        shown = self._candidates(queries, searched, texts, warn) if self.method == "lamer" else {}
        prompts = [self.prompt(queries[q], [t for _, t in shown.get(q, [])]) for q in qids]
        answers = self.llm.generate(prompts, max_tokens=self.max_tokens, temperature=self.temperature)
        ok: dict[str, list[str]] = {}
        for qid, c in zip(qids, answers):
            items, info = parse_list(c.text, self.n) if c.ok else ([], None)
            if info is not None:
                report.parse.add(info)
            reason = (f"the model failed: {c.error}" if not c.ok else "the model refused" if info.refused else
                      f"no usable list in the answer {_start(c.text)}" if info.failed else None)
            report.stats.add(c)
            report.queries[qid] = QueryExpansion(items if reason is None else [], c.text, reason, c.prompt_tokens,
                                                 c.completion_tokens, c.cached, [d for d, _ in shown.get(qid, [])])
            if reason is None:
                ok[qid] = items
            else:
                warn(f"query {qid!r}: {self.method} expansion skipped ({reason}); searched without it")
        runs = []
        for r, base in searched:
            name = expanded_name(base.name, self.method)
            try:
                if not ok:
                    run = Run.empty(qids, name=name)
                elif self.method == "q2e":
                    run = self._search_each(r, ok, qids, depth)
                else:
                    run = self._search_augmented(r, queries, ok, depth)
            except ModelError as e:
                warn(f"{name} skipped: {e}")
                continue
            runs.append(run.with_name(name))
        return runs, report

    def _search_each(self, r: Any, ok: dict[str, list[str]], qids: list[str], depth: int) -> Run:
        """q2e: every sub-query searched, and each query's sub-query lists fused (the best list's evidence kept)."""
        owner = np.asarray([q for q, items in ok.items() for _ in items], dtype=object)
        slot = np.asarray([i for items in ok.values() for i in range(len(items))], dtype=np.int64)
        run = r.search({str(j): t for j, t in enumerate(t for items in ok.values() for t in items)}, depth)
        sub = run.entry_query_ids().astype(np.int64)
        q, s, docs, scores = owner[sub], slot[sub], run.entry_doc_ids(), run.scores
        ev = run.evidence or {}
        parts = []
        for i in range(int(slot.max()) + 1):
            m = s == i
            parts.append(Run.from_arrays(q[m], docs[m], scores[m], name=f"{i + 1}", queries=qids,
                                         evidence={c: np.asarray(v)[m] for c, v in ev.items()} or None))
        fused = fuse(parts, method=self.fusion, depth=depth, queries=qids, **self.fusion_params)
        # per sub-query: a query the model split in five weighs as much as one it split in two, and a sum of
        # similarities stays a similarity (the scale the pipeline's fusion reads); each query's order is unchanged
        m = np.asarray([len(ok.get(q, ())) or 1 for q in fused.query_ids.tolist()], dtype=np.float64)
        fused = Run(fused.query_ids, fused.doc_ids, fused.offsets, fused.doc_idx, fused.scores / m[fused.qidx()],
                    name=fused.name)
        return _with_evidence(fused, parts)

    def _search_augmented(self, r: Any, queries: Mapping[str, str], ok: dict[str, list[str]], depth: int) -> Run:
        """hyde, lamer: the mean embedding of the query and the passages, or the query followed by the passages."""
        if isinstance(r, EmbeddingRetriever):
            groups = [[queries[q], *items] for q, items in ok.items()]
            vecs = l2_normalize(np.asarray(r.embed_queries([t for g in groups for t in g]), dtype=np.float32))
            starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
            means = np.add.reduceat(vecs, starts, axis=0) / np.asarray([len(g) for g in groups])[:, None]
            return r.search_embedded(list(ok), means, depth)
        return r.search({q: " ".join([queries[q], *items]) for q, items in ok.items()}, depth)


def _start(text: str) -> str:
    text = " ".join((text or "").split())
    return repr(text[:60] + ("..." if len(text) > 60 else "")) if text else "(empty)"


def _segments(run: Run) -> dict[tuple[str, str], str]:
    """``(query id, doc id) -> segment id`` of a run's evidence (empty without it)."""
    ev = run.evidence or {}
    if "segment_id" not in ev:
        return {}
    return dict(zip(zip(run.entry_query_ids().tolist(), run.entry_doc_ids().tolist()),
                    np.asarray(ev["segment_id"]).astype(str).tolist()))


def _with_evidence(fused: Run, parts: list[Run]) -> Run:
    """``fused`` with, per entry, the evidence (segment, time span) of the part that ranked that doc best."""
    cols = set.intersection(*(set(p.evidence or {}) for p in parts)) if parts else set()
    if not cols or not len(fused):
        return fused
    best: dict[tuple[str, str], tuple[int, int, int]] = {}
    for pi, p in enumerate(parts):
        for j, (q, d, rank) in enumerate(zip(p.entry_query_ids().tolist(), p.entry_doc_ids().tolist(),
                                             p.ranks().tolist())):
            if (q, d) not in best or rank < best[(q, d)][0]:
                best[(q, d)] = (rank, pi, j)
    pick = [best[(q, d)] for q, d in zip(fused.entry_query_ids().tolist(), fused.entry_doc_ids().tolist())]
    ev = {c: np.asarray([np.asarray(parts[pi].evidence[c])[j] for _, pi, j in pick]) for c in sorted(cols)}
    return Run(fused.query_ids, fused.doc_ids, fused.offsets, fused.doc_idx, fused.scores, name=fused.name, evidence=ev)
