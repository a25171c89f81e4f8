"""Benchmark reports: the stable JSON schema and a Markdown report (tables sorted by R@1, default vs CombSUM,
sensitivity of the default method's parameter).

Names that come from the user's files (datasets are folder names, retrievers are file names) go into the Markdown
through :func:`escape_md`, so a name such as ``a|b`` or ``*x*`` stays literal text instead of breaking a table or
becoming markup.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from mmfuse.eval.significance import compare
from mmfuse.fusion import default_method, fuse, get_method
from mmfuse.utils.files import atomic_write

from .sweep import SENSITIVITY, Result

__all__ = ["to_json", "write_json", "markdown", "write_markdown", "label", "DEFAULT_LABEL", "combsum_variants",
           "default_vs_combsum", "sensitivity", "is_default", "escape_md", "dataset_note", "write_report"]

DEFAULT_LABEL = "auto"  # what `fuse(runs)` uses (mmfuse.fusion.default_method()); the report names whatever it is
# what Markdown (and GFM tables) would read as syntax inside a line; a backslash makes any of them literal
_MD_SYNTAX = re.compile(r"([\\`*_{}\[\]<>()#+!|~&$])")


def escape_md(text: object) -> str:
    """``text`` as literal Markdown inline text: syntax characters backslash-escaped, line breaks made spaces."""
    return _MD_SYNTAX.sub(r"\\\1", " ".join(str(text).split()))


def _md_link(target: str) -> str:
    """A link destination that keeps spaces and brackets of a file path: ``<...>`` with ``<``, ``>`` escaped."""
    return "<" + re.sub(r"([\\<>])", r"\\\1", target) + ">"


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text`` (so the text cannot close it)."""
    return "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))


def dataset_note(dataset) -> str:
    """One Markdown line describing a loaded dataset: format, mode, candidates and its retrievers."""
    return (f"Format: {escape_md(dataset.meta.get('format'))}, mode {dataset.mode}, candidates={dataset.candidates}, "
            f"retrievers: {escape_md(', '.join(dataset.retrievers))}.")


def to_json(results: Mapping[str, Sequence[Result]], n_queries: Mapping[str, int]) -> dict:
    """``{"datasets": {NAME: {"n_queries": int, "results": [...]}}}`` exactly as documented (R@k, MRR, nDCG as fractions of 1)."""
    return {"datasets": {name: {"n_queries": int(n_queries[name]), "results": [r.to_json() for r in res]}
                         for name, res in results.items()}}


def write_json(path: str | Path, results: Mapping[str, Sequence[Result]], n_queries: Mapping[str, int]) -> None:
    with atomic_write(Path(path), "w") as f:
        json.dump(to_json(results, n_queries), f, indent=1)
        f.write("\n")


def _fmt_params(params: Mapping) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def label(r: Result) -> str:
    c = r.config
    if c.method == "single":
        return c.retrievers[0]
    s = c.method + (f"/{c.norm}" if c.norm and c.norm != "none" else "")
    p = _fmt_params(c.param_dict)
    return s + (f" ({p})" if p else "")


def _default_params() -> dict:
    m = get_method(default_method())
    return {p.name: p.default for p in m.params}


def is_default(r: Result) -> bool:
    """The library's default fusion method with its default parameters."""
    c = r.config
    if c.method != default_method():
        return False
    d = _default_params()
    return all(d.get(k) == v for k, v in c.params)


def _at_defaults(r: Result) -> bool:
    """The configuration uses its method's default parameters (any normalization)."""
    if r.config.method == "single":
        return False
    d = {p.name: p.default for p in get_method(r.config.method).params}
    return all(d.get(k) == v for k, v in r.config.params)


def method_table(results: Sequence[Result]) -> list[tuple[Result, Result]]:
    """Every fusion method (and normalization) on the full retriever set at its default parameters, with the best
    configuration of its parameter grid next to it, sorted by R@1 at the defaults: the zero-shot comparison (a
    parameter picked on the data it is scored on is an upper bound, not a result)."""
    full = max((r.config.retrievers for r in results), key=len, default=())
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if r.config.method != "single" and r.config.retrievers == full:
            groups.setdefault((r.config.method, r.config.norm), []).append(r)
    rows = []
    for rs in groups.values():
        dflt = [r for r in rs if _at_defaults(r)]
        if dflt:
            rows.append((dflt[0], max(rs, key=lambda r: r.metrics["R@1"])))
    return sorted(rows, key=lambda x: (-x[0].metrics["R@1"], not is_default(x[0]), label(x[0])))


def default_rank(rows: Sequence[tuple[Result, Result]]) -> int | None:
    """1-based rank of the default among ``method_table`` rows by R@1 at defaults (ties share the better rank)."""
    d = next((r for r, _ in rows if is_default(r)), None)
    if d is None:
        return None
    return 1 + sum(1 for r, _ in rows if r.metrics["R@1"] > d.metrics["R@1"])


def _variant(r: Result) -> str:
    c = r.config
    return c.method + (f"/{c.norm}" if c.norm and c.norm != "none" and c.method not in ("auto", "sef") else "")


def regime_summary(results: Mapping[str, Sequence[Result]]) -> list[str]:
    """One table over every dataset: each method at its default parameters (R@1 on all retrievers), the best point
    of its grid in brackets when better, and the default's rank."""
    tables = {name: method_table(res) for name, res in results.items()}
    if not any(tables.values()):
        return []
    names = list(tables)
    variants: dict[str, None] = {}
    for rows in tables.values():
        for r, _ in rows:
            variants.setdefault(_variant(r), None)
    out = ["## Every method on every dataset", "",
           "R@1 (a fraction of the queries) on all retrievers, each method at its default parameters; in brackets "
           "the best point of its "
           "parameter grid when that is higher (chosen on the very data it is scored on: an upper bound, not a "
           "zero-shot result).", "",
           "| method | " + " | ".join(escape_md(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for v in variants:
        cells = []
        for n in names:
            row = next(((r, b) for r, b in tables[n] if _variant(r) == v), None)
            if row is None:
                cells.append("")
                continue
            r, b = row
            cell = f"{r.metrics['R@1']:.3f}"
            if b.metrics["R@1"] > r.metrics["R@1"]:
                cell += f" ({b.metrics['R@1']:.3f}: {escape_md(_fmt_params(b.config.param_dict))})"
            cells.append(cell)
        name = f"**{v} (default)**" if v == default_method() else escape_md(v)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("| rank of the default | " + " | ".join(
        f"{default_rank(tables[n])} of {len(tables[n])}" if default_rank(tables[n]) else "" for n in names) + " |")
    return out + [""]


def combsum_variants(results: Sequence[Result], sub: tuple[str, ...]) -> list[Result]:
    return [r for r in results if r.config.method == "combsum" and r.config.retrievers == sub]


def default_vs_combsum(results: Sequence[Result], min_size: int = 3) -> list[dict]:
    """Per retriever subset (size >= ``min_size``): the default fusion, the best CombSUM variant, the best single."""
    singles = {r.config.retrievers[0]: r for r in results if r.config.method == "single"}
    subs = sorted({r.config.retrievers for r in results if len(r.config.retrievers) >= min_size},
                  key=lambda s: (-len(s), s))
    rows = []
    for sub in subs:
        dflt = [r for r in results if r.config.retrievers == sub and is_default(r)]
        cs = combsum_variants(results, sub)
        if not dflt or not cs:
            continue
        best_cs = max(cs, key=lambda r: r.metrics["R@1"])
        best_single = max((singles[s] for s in sub if s in singles), key=lambda r: r.metrics["R@1"], default=None)
        rows.append({"retrievers": sub, "default": dflt[0], "best_combsum": best_cs, "best_single": best_single,
                     "delta": dflt[0].metrics["R@1"] - best_cs.metrics["R@1"]})
    return rows


def sensitivity(results: Sequence[Result], method: str = "sef") -> tuple[str, list[tuple[float, float]]]:
    """(parameter, [(value, R@1)]) of ``method`` on the largest retriever subset, other parameters at default."""
    param = SENSITIVITY.get(method)
    rs = [r for r in results if r.config.method == method]
    if not rs or param is None:
        return param or "", []
    full = max((r.config.retrievers for r in rs), key=len)
    pts = sorted({(float(r.config.param_dict[param]), r.metrics["R@1"]) for r in rs
                  if r.config.retrievers == full and param in r.config.param_dict})
    return param, pts


def significance_lines(dataset, results: Sequence[Result], n_permutations: int = 10000) -> list[str]:
    """Paired tests (Student t and Fisher randomization, per query) of the default fusion against RRF (k=60) and
    CombSUM with z-scores on the dataset's full retriever set, on R@1 (hit@1) and MRR@10."""
    full = max((r.config.retrievers for r in results), key=len, default=())
    if len(full) < 2:
        return []
    runs = [dataset.runs[n] for n in full]
    name = default_method()
    ours = fuse(runs).with_name(name)
    metrics = ["hit_rate@1", "mrr@10"]
    out = [f"### Significance: the default `{name}` vs RRF and CombSUM/zmuv ({escape_md('+'.join(full))})", "",
           f"| baseline | metric (per query) | baseline | {name} | paired t p-value | Fisher randomization p-value |",
           "|---|---|---|---|---|---|"]
    for label_, base in (("RRF (k=60)", fuse(runs, method="rrf", k=60)),
                         ("CombSUM/zmuv", fuse(runs, method="combsum", norm="zmuv"))):
        base = base.with_name("baseline")
        t = compare(dataset.qrels, [base, ours], metrics, test="student")
        f = compare(dataset.qrels, [base, ours], metrics, test="fisher", n_permutations=n_permutations)
        for m in metrics:
            pf = f[name][m]["p_value"]
            pf_s = f"< {1 / n_permutations:.0e}" if pf == 0 else f"{pf:.2g}"
            out.append(f"| {label_} | {m} | {t['baseline'][m]['mean']:.3f} | {t[name][m]['mean']:.3f} | "
                       f"{t[name][m]['p_value']:.2g} | {pf_s} |")
    return out + [""]


def _table(rows: Sequence[Result], metrics: Sequence[str]) -> list[str]:
    head = "| # | configuration | retrievers | " + " | ".join(metrics) + " | ms/query |"
    out = [head, "|" + "---|" * (len(metrics) + 4)]
    for i, r in enumerate(rows, 1):
        vals = []
        for m in metrics:
            v = r.metrics.get(m)
            vals.append("" if v is None else (f"{v:.1f}" if m in ("MdR", "MnR") else f"{v:.3f}"))
        tag = " **(default)**" if is_default(r) else ""
        tag += " *(transductive)*" if r.extra.get("transductive") else ""
        tuned = f" \\[tuned on {escape_md(r.tuned_on)}\\]" if r.tuned_on else ""
        out.append(f"| {i} | {escape_md(label(r))}{tag}{tuned} | {escape_md('+'.join(r.config.retrievers))} | "
                   + " | ".join(vals)
                   + f" | {r.ms_per_query:.3f} |")
    return out


def markdown(results: Mapping[str, Sequence[Result]], n_queries: Mapping[str, int], command: str | None = None,
             plots: Mapping[str, Mapping[str, str]] | None = None, top: int | None = None,
             notes: Mapping[str, str] | None = None, extra: Mapping[str, Sequence[str]] | None = None) -> str:
    """The Markdown report: every method on every dataset with the default's rank, then per dataset: default vs
    CombSUM per subset, significance, the sensitivity curve, and every measured configuration sorted by R@1 (``top``
    limits the full table)."""
    lines = ["# mmfuse fusion benchmark", ""]
    if command:
        lines += ["Reproduce with:", "", _fence(command), command, _fence(command), ""]
    lines += ["Every value but the ranks is a fraction of 1 (as trec_eval and ranx print them). R@k: the fraction of "
              "queries with a relevant item in the top k (a tie with the relevant item counts in its favour, as in the "
              "usual video-retrieval evaluation); MdR/MnR: median/mean rank of the best relevant item; MRR@10, "
              "nDCG@10: ranx definitions. ms/query: measured fusion time per query over pre-aligned runs.", ""]
    lines += regime_summary(results)
    for name, res in results.items():
        res = list(res)
        metrics = list(res[0].metrics) if res else []  # the columns of this dataset's tables
        lines += [f"## {escape_md(name)} ({n_queries[name]} queries)", ""]
        if notes and name in notes:
            lines += [notes[name], ""]
        singles = sorted((r for r in res if r.config.method == "single"), key=lambda r: -r.metrics["R@1"])
        if singles:
            lines += ["Single retrievers: "
                      + ", ".join(f"{escape_md(label(r))} {r.metrics['R@1']:.3f}" for r in singles)
                      + " (R@1).", ""]
        at_defaults = [d for d, _ in method_table(res)]
        if at_defaults:
            lines += ["### Each retriever alone, and every method on all of them at its default parameters", ""]
            lines += _table([*singles, *at_defaults], metrics) + [""]
        cmp_rows = default_vs_combsum(res)
        if cmp_rows:
            lines += ["### Default fusion vs the best CombSUM variant (subsets of >= 3 retrievers)", "",
                      f"| retrievers | best single R@1 | best CombSUM (R@1) | default `{default_method()}` R@1 | "
                      "difference |",
                      "|---|---|---|---|---|"]
            for row in cmp_rows:
                bs = row["best_single"]
                lines.append(f"| {escape_md('+'.join(row['retrievers']))} | {bs.metrics['R@1']:.3f} "
                             f"({escape_md(label(bs))}) | "
                             f"{row['best_combsum'].metrics['R@1']:.3f} ({row['best_combsum'].config.norm}) | "
                             f"{row['default'].metrics['R@1']:.3f} | {row['delta']:+.3f} |")
            lost = [r for r in cmp_rows if r["delta"] < 0]
            lines.append("")
            if lost:
                lines.append("The default does **not** beat the best CombSUM variant on: "
                             + "; ".join(f"{escape_md('+'.join(r['retrievers']))} ({r['delta']:+.3f} R@1 vs CombSUM/"
                                         f"{r['best_combsum'].config.norm})" for r in lost) + ".")
            else:
                lines.append("The default beats the best CombSUM variant on every subset of >= 3 retrievers.")
            lines.append("")
        if extra and name in extra:
            lines += list(extra[name])
        param, pts = sensitivity(res)
        if pts:
            lines += [f"### Sensitivity of `sef` (the default's standardizing path) to `{param}` (all retrievers)", "",
                      f"| {param} | " + " | ".join(f"{v:g}" for v, _ in pts) + " |",
                      "|---|" + "---|" * len(pts),
                      "| R@1 | " + " | ".join(f"{s:.3f}" for _, s in pts) + " |", ""]
        if plots and name in plots:
            lines += ["### Plots", ""] + [f"![{escape_md(k)}]({_md_link(v)})" for k, v in plots[name].items()] + [""]
        rows = sorted(res, key=lambda r: (-r.metrics.get("R@1", 0.0), r.ms_per_query))
        shown = rows if top is None else rows[:top]
        lines += [f"### All measured configurations, sorted by R@1 ({len(rows)} configurations"
                  + (f", top {top} shown" if top is not None and top < len(rows) else "") + ")", ""]
        lines += _table(shown, metrics) + [""]
    return "\n".join(lines)


def write_markdown(path: str | Path, text: str) -> None:
    with atomic_write(Path(path), "w") as f:
        f.write(text)


def write_report(path: str | Path, results: Mapping[str, Sequence[Result]], datasets: Sequence,
                 command: str | None = None, plots: Mapping[str, Mapping[str, str]] | None = None,
                 plots_dir: str | Path | None = None) -> None:
    """The whole Markdown report of a sweep over ``datasets`` (loaded :class:`~mmfuse.benchmarks.datasets.Dataset`):
    a note per dataset, the significance tests, and the plots ``{dataset: {title: file}}`` written into
    ``plots_dir``, linked relative to the report's folder (absolute when the two share no folder)."""
    figs = None
    if plots:
        where = Path(plots_dir or ".").resolve()
        try:
            where = where.relative_to(Path(path).resolve().parent)
        except ValueError:
            pass
        figs = {name: {title: str(where / f) for title, f in files.items()} for name, files in plots.items()}
    write_markdown(path, markdown(results, {d.name: d.n_queries for d in datasets}, command=command, plots=figs,
                                  notes={d.name: dataset_note(d) for d in datasets},
                                  extra={d.name: significance_lines(d, results[d.name]) for d in datasets}))
