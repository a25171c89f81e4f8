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
from mmfuse.fusion import fuse, get_method
from mmfuse.utils.files import atomic_write

from .sweep import SENSITIVITY, Result

__all__ = ["to_json", "write_json", "markdown", "write_markdown", "label", "DEFAULT_LABEL", "combsum_variants",
           "default_vs_combsum", "sensitivity", "is_default", "escape_md", "dataset_note", "write_report"]

DEFAULT_LABEL = "sef"
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
    """``{"datasets": {NAME: {"n_queries": int, "results": [...]}}}`` exactly as documented (recall in percent)."""
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
    m = get_method(DEFAULT_LABEL)
    return {p.name: p.default for p in m.params}


def is_default(r: Result) -> bool:
    """The library's default fusion method with its default parameters."""
    c = r.config
    if c.method != DEFAULT_LABEL:
        return False
    d = _default_params()
    return all(d.get(k) == v for k, v in c.params)


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


def sensitivity(results: Sequence[Result], method: str = DEFAULT_LABEL) -> tuple[str, list[tuple[float, float]]]:
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
    """Paired tests (Student t and Fisher randomization, per query) of the default fusion against the best CombSUM
    variant on the dataset's full retriever set, on R@1 (hit@1) and MRR@10."""
    full = max((r.config.retrievers for r in results), key=len, default=())
    if len(full) < 2:
        return []
    cs = combsum_variants(results, full)
    dflt = [r for r in results if r.config.retrievers == full and is_default(r)]
    if not cs or not dflt:
        return []
    best = max(cs, key=lambda r: r.metrics["R@1"])
    runs = [dataset.runs[n] for n in full]
    base = fuse(runs, method="combsum", norm=best.config.norm).with_name("combsum")
    ours = fuse(runs).with_name("sef")
    metrics = ["hit_rate@1", "mrr@10"]
    t = compare(dataset.qrels, [base, ours], metrics, test="student")
    f = compare(dataset.qrels, [base, ours], metrics, test="fisher", n_permutations=n_permutations)
    out = [f"### Significance: default `sef` vs CombSUM/{best.config.norm} ({escape_md('+'.join(full))})", "",
           "| metric (per query) | CombSUM | sef | paired t p-value | Fisher randomization p-value |",
           "|---|---|---|---|---|"]
    for m in metrics:
        pf = f["sef"][m]["p_value"]
        pf_s = f"< {1 / n_permutations:.0e}" if pf == 0 else f"{pf:.2g}"
        out.append(f"| {m} | {t['combsum'][m]['mean']:.3f} | {t['sef'][m]['mean']:.3f} | "
                   f"{t['sef'][m]['p_value']:.2g} | {pf_s} |")
    return out + [""]


def _table(rows: Sequence[Result], metrics: Sequence[str]) -> list[str]:
    head = "| # | configuration | retrievers | " + " | ".join(metrics) + " | ms/query |"
    out = [head, "|" + "---|" * (len(metrics) + 4)]
    for i, r in enumerate(rows, 1):
        vals = []
        for m in metrics:
            v = r.metrics.get(m)
            vals.append("" if v is None else (f"{v:.1f}" if m.startswith("R@") or m in ("MdR", "MnR") else f"{v:.3f}"))
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
    """The Markdown report: per dataset, default vs CombSUM per subset, the sensitivity curve, and every measured
    configuration sorted by R@1 (``top`` limits the full table)."""
    lines = ["# mmfuse fusion benchmark", ""]
    if command:
        lines += ["Reproduce with:", "", _fence(command), command, _fence(command), ""]
    lines += ["R@k: percent of queries with a relevant item in the top k (a tie with the relevant item counts in its "
              "favour, as in the usual video-retrieval evaluation); MdR/MnR: median/mean rank of the best relevant "
              "item; MRR@10, nDCG@10: ranx definitions. ms/query: measured fusion time per query over pre-aligned "
              "runs.", ""]
    for name, res in results.items():
        res = list(res)
        lines += [f"## {escape_md(name)} ({n_queries[name]} queries)", ""]
        if notes and name in notes:
            lines += [notes[name], ""]
        singles = sorted((r for r in res if r.config.method == "single"), key=lambda r: -r.metrics["R@1"])
        if singles:
            lines += ["Single retrievers: "
                      + ", ".join(f"{escape_md(label(r))} {r.metrics['R@1']:.1f}" for r in singles)
                      + " (R@1).", ""]
        cmp_rows = default_vs_combsum(res)
        if cmp_rows:
            lines += ["### Default fusion vs the best CombSUM variant (subsets of >= 3 retrievers)", "",
                      "| retrievers | best single R@1 | best CombSUM (R@1) | default `sef` R@1 | difference |",
                      "|---|---|---|---|---|"]
            for row in cmp_rows:
                bs = row["best_single"]
                lines.append(f"| {escape_md('+'.join(row['retrievers']))} | {bs.metrics['R@1']:.1f} "
                             f"({escape_md(label(bs))}) | "
                             f"{row['best_combsum'].metrics['R@1']:.1f} ({row['best_combsum'].config.norm}) | "
                             f"{row['default'].metrics['R@1']:.1f} | {row['delta']:+.1f} |")
            lost = [r for r in cmp_rows if r["delta"] < 0]
            lines.append("")
            if lost:
                lines.append("The default does **not** beat the best CombSUM variant on: "
                             + "; ".join(f"{escape_md('+'.join(r['retrievers']))} ({r['delta']:+.1f} R@1 vs CombSUM/"
                                         f"{r['best_combsum'].config.norm})" for r in lost) + ".")
            else:
                lines.append("The default beats the best CombSUM variant on every subset of >= 3 retrievers.")
            lines.append("")
        if extra and name in extra:
            lines += list(extra[name])
        param, pts = sensitivity(res)
        if pts:
            lines += [f"### Sensitivity of the default (`sef`) to `{param}` (all retrievers)", "",
                      f"| {param} | " + " | ".join(f"{v:g}" for v, _ in pts) + " |",
                      "|---|" + "---|" * len(pts),
                      "| R@1 | " + " | ".join(f"{s:.1f}" for _, s in pts) + " |", ""]
        if plots and name in plots:
            lines += ["### Plots", ""] + [f"![{escape_md(k)}]({_md_link(v)})" for k, v in plots[name].items()] + [""]
        metrics = list(next(iter(res)).metrics) if res else []
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
