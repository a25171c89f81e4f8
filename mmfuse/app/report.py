"""The demo's HTML report: metrics table, bar chart, and per query the S-Grids of its top results with evidence."""

from __future__ import annotations

import hashlib
import html
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmfuse.errors import InputError, MmfuseError
from mmfuse.rerankers.grid import GridCache, GridSpec, parse_grid, placeholder
from mmfuse.utils.files import atomic_path, atomic_write
from mmfuse.utils.lazy import require

if TYPE_CHECKING:  # pragma: no cover
    from .demo import DemoResult

Progress = Callable[[int, int, str], None]
_E = html.escape

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:32px 0 10px;border-bottom:2px solid #dde2ea;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 18px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:22px} .card span{color:#5b6475;font-size:13px}
.gain b{color:#11803a} .loss b{color:#b42318}
table{border-collapse:collapse;background:#fff;font-size:14px}
th,td{border:1px solid #dde2ea;padding:5px 10px;text-align:left} th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fused td{background:#eef7ee;font-weight:600} tr.reranked td{background:#eef3fb;font-weight:600}
.best{text-decoration:underline}
.chart{max-width:760px;width:100%;background:#fff;border:1px solid #dde2ea;border-radius:8px;margin-top:14px}
ul.missing li{margin:4px 0} code{background:#eef1f5;padding:1px 5px;border-radius:4px;font-size:13px}
section.q{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:12px 16px;margin:14px 0}
section.q h3{margin:0 0 6px;font-size:17px} .qid{color:#5b6475;font-weight:400}
.qrow{display:flex;gap:22px;align-items:flex-start;flex-wrap:wrap}
.hits{display:flex;gap:14px;flex-wrap:wrap;margin:8px 0}
figure{margin:0;width:230px} figure img{width:230px;height:auto;border:3px solid #c9ced8;border-radius:6px;display:block}
figure.rel img{border-color:#1f9d4c} figcaption{font-size:13px;margin-top:4px}
figcaption .ev{color:#5b6475;display:block;font-size:12px;line-height:1.35}
.ok{color:#11803a;font-weight:700} .lists td{font-size:12.5px} .lists td.rel{background:#dff3e4;font-weight:600}
"""

# Lets a headless browser (and a person's devtools) check that every image decoded: the count lands in the DOM.
CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', ok + '/' + imgs.length);
});
"""


def _frac(x: float) -> str:
    """A metric value as every mmfuse output prints it: a fraction of 1."""
    return f"{x:.3f}"


def _grid_images(result: "DemoResult", paths: Mapping[str, str], cache: Path, out: Path, grid: str,
                 progress: Progress | None) -> dict[str, str]:
    """One labelled-free S-Grid PNG per video that the report shows; returns video id -> relative src."""
    rows, cols = parse_grid(grid)
    spec = GridSpec(rows=rows, cols=cols, cell=(160, 120))
    need = list(dict.fromkeys(d for v in result.queries for d, _ in v.lists.get(result.final_name, [])[:_thumbs(result)]))
    gdir = out / "grids"
    gdir.mkdir(parents=True, exist_ok=True)
    cache_obj = GridCache(cache)
    srcs = {}
    for i, vid in enumerate(need):
        if progress:
            progress(i, len(need), f"S-Grid {vid}")
        p = paths.get(vid)
        try:
            if p is None or not Path(p).is_file():
                raise InputError("video missing")
            img = cache_obj.get(p, spec)
        except (MmfuseError, OSError) as e:
            note = "audio only" if p and Path(p).suffix.lower() in (".m4a", ".mp3", ".wav", ".flac", ".ogg") else "no frames"
            img = placeholder(spec, note if "missing" not in str(e) else "video missing")
        dest = gdir / f"{_file_name(vid)}.png"
        with atomic_path(dest) as tmp:
            img.save(tmp, format="PNG", optimize=True)
        srcs[vid] = f"grids/{dest.name}"
    return srcs


def _thumbs(result: "DemoResult") -> int:
    return int(getattr(result, "thumbs", 3) or 3)


def _file_name(video_id: str) -> str:
    """A file name for a video id: its safe characters (readable) plus a short hash of the whole id, so ids that
    differ only in unsafe characters (``a b`` and ``a_b``) never share a file."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)[:80]
    return f"{safe}-{hashlib.sha256(video_id.encode()).hexdigest()[:8]}"


def write_chart(result: "DemoResult", dest: Path) -> None:
    """Grouped bars: R@1, nDCG@10, MRR@10 for every single retriever, the fused run and the reranked one."""
    require("matplotlib").use("Agg", force=True)
    plt = require("matplotlib.pyplot")
    names = list(result.metrics)
    labels = [lab for lab in next(iter(result.metrics.values()))]
    x = np.arange(len(names))
    width = 0.8 / len(labels)
    colours = ["#4c78a8", "#f58518", "#54a24b"]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.05 * len(names) + 2), 3.6), dpi=110)
    for i, lab in enumerate(labels):
        vals = [result.metrics[n][lab] for n in names]
        bars = ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, label=lab, color=colours[i % 3])
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(x, [n + (" *" if n == result.best_single else "") for n in names], fontsize=9)
    for t, n in zip(ax.get_xticklabels(), names):
        if n in ("fused", "reranked"):
            t.set_fontweight("bold")
    ax.set_ylim(0, 1.09)
    ax.set_ylabel("fraction (0-1)")
    ax.set_title(f"{len(result.queries)} sample queries: each retriever vs fused (* = best single)", fontsize=10)
    ax.legend(ncol=len(labels), fontsize=8, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def render_html(result: "DemoResult", grid_src: Mapping[str, str], chart_src: str) -> str:
    """The report page as one HTML string (styles inline; images referenced relative to the page)."""
    final = result.final_name
    m = result.metrics
    labels = list(next(iter(m.values())))
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    w("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    w(f"<title>mmfuse demo report</title><style>{CSS}</style></head><body><main>")
    w("<h1>mmfuse demo: multimodal retrieval with fusion</h1>")
    mods = ", ".join(result.modalities)
    w(f"<p class='sub'>{result.n_videos} videos from <code>{_E(str(result.corpus))}</code> · {len(result.queries)} "
      f"queries · retrievers: {_E(', '.join(result.singles))} (modalities in the index: {_E(mods)}) · fusion: "
      f"{_E(result.fusion)}{' · VLM reranking' if result.reranked else ''} · generated "
      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · index {result.timings.get('index', 0):.0f} s, search "
      f"{result.timings.get('search', 0):.1f} s</p>")
    # headline cards
    w("<div class='cards'>")
    w(f"<div class='card'><b>{_frac(m['fused']['R@1'])}</b><span>fused R@1</span></div>")
    w(f"<div class='card'><b>{_frac(m[result.best_single]['R@1'])}</b><span>best single R@1 "
      f"({_E(result.best_single)})</span></div>")
    for lab in labels:
        g = result.gain[lab]
        w(f"<div class='card {'gain' if g >= 0 else 'loss'}'><b>{g:+.3f}</b>"
          f"<span>fusion gain in {lab}</span></div>")
    if result.reranked:
        w(f"<div class='card'><b>{_frac(m['reranked']['R@1'])}</b><span>reranked R@1</span></div>")
    w("</div>")
    # metrics table
    w("<h2>Results</h2><table id='results'><thead><tr><th>run</th>")
    w("".join(f"<th>{_E(lab)}</th>" for lab in labels) + "</tr></thead><tbody>")
    best_of = {lab: max(m[n][lab] for n in m) for lab in labels}
    for name, vals in m.items():
        cls = name if name in ("fused", "reranked") else ""
        tag = " (best single)" if name == result.best_single else ""
        cells = "".join(f"<td class='num{' best' if vals[lab] == best_of[lab] else ''}'>{_frac(vals[lab])}</td>"
                        for lab in labels)
        w(f"<tr class='{cls}'><td>{_E(name)}{tag}</td>{cells}</tr>")
    gains = "".join(f"<td class='num'>{result.gain[lab]:+.3f}</td>" for lab in labels)
    w(f"<tr><td>fusion gain over {_E(result.best_single)}</td>{gains}</tr></tbody></table>")
    w("<p class='sub'>Fractions of 1 over all sample queries (as trec_eval and ranx print them); R@1 = share of "
      "queries whose relevant video is ranked first; nDCG@10 and MRR@10 over the top 10. Underlined: best in the "
      "column.</p>")
    w(f"<img class='chart' id='chart' src='{_E(chart_src)}' alt='bar chart of R@1, nDCG@10 and MRR@10 per run'>")
    if result.missing:
        w("<h2>Not run (optional models)</h2><ul class='missing'>")
        for x in result.missing:
            w(f"<li><b>{_E(x.part)}</b>: {_E(x.reason)}. Enable with <code>{_E(x.enable)}</code></li>")
        w("</ul>")
    # per query
    w(f"<h2>Queries: top {_thumbs(result)} of the {_E(final)} ranking</h2>")
    w("<p class='sub'>Each picture is the S-Grid a VLM reranker sees (frames left to right, top to bottom). Green"
      " border: the judged-relevant video. Under each: the rank each retriever gave it and the text it matched.</p>")
    for v in result.queries:
        rel = set(v.relevant)
        w(f"<section class='q' id='q-{_E(v.qid)}'><h3>“{_E(v.text)}” <span class='qid'>{_E(v.qid)} · relevant: "
          f"{_E(', '.join(v.relevant) or '-')}</span></h3><div class='qrow'><div class='hits'>")
        for rank, (doc, score) in enumerate(v.lists.get(final, [])[:_thumbs(result)], 1):
            ok = doc in rel
            src = grid_src.get(doc)
            img = f"<img src='{_E(src)}' alt='S-Grid of {_E(doc)}' loading='eager'>" if src else ""
            ev = "".join(f"<span class='ev'>{_E(r)} {_E(t)}</span>" for r, t in v.evidence.get(doc, {}).items())
            w(f"<figure class='{'rel' if ok else ''}'>{img}<figcaption><b>#{rank} {_E(doc)}</b>"
              f"{' <span class=ok>✓ relevant</span>' if ok else ''}{ev or '<span class=ev>(no retriever evidence)</span>'}"
              f"</figcaption></figure>")
        w("</div><table class='lists'><tr><th>list</th>" + "".join(f"<th>#{i}</th>" for i in range(1, 6)) + "</tr>")
        for name, lst in v.lists.items():
            cells = "".join(f"<td class='{'rel' if d in rel else ''}'>{_E(d)}</td>" for d, _ in lst[:5])
            cells += "<td></td>" * (5 - min(5, len(lst)))
            w(f"<tr><td>{_E(name)}</td>{cells}</tr>")
        w("</table></div></section>")
    if result.warnings:
        w("<h2>Warnings</h2><ul>" + "".join(f"<li>{_E(x)}</li>" for x in result.warnings) + "</ul>")
    w(f"<script>{CHECK_JS}</script></main></body></html>")
    return "\n".join(out)


def write_report(result: "DemoResult", paths: Mapping[str, str], cache: str | os.PathLike, *, grid: str = "2x2",
                 progress: Progress | None = None) -> Path:
    """Write ``index.html`` (last, atomically), ``chart.png`` and ``grids/*.png`` into the report folder."""
    out = Path(result.report).parent
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{out}: cannot create the report folder: {e.strerror}") from None
    srcs = _grid_images(result, paths, Path(cache), out, grid, progress)
    write_chart(result, out / "chart.png")
    page = render_html(result, srcs, "chart.png")
    with atomic_write(out / "index.html", "w") as fh:
        fh.write(page)
    if progress:
        progress(1, 1, "index.html written")
    return out / "index.html"
