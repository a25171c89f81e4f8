"""Project commands: ``mmfuse init`` (a commented config) and ``mmfuse demo`` (the sample corpus end to end)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmfuse.config import write_default_config
from mmfuse.fusion import get_method

from ..demo import METRICS, DemoOptions, run_demo
from .args import Checked, Choice, Int
from .common import FRACTIONS, app, console, progress_bar


@app.command("init")
def init_cmd(
    path: str = typer.Argument("mmfuse.toml", help="Config file to write (a folder gets mmfuse.toml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the commented default pipeline config (used by --config and Pipeline.from_config)."""
    written = write_default_config(path, force=force)
    console.print(f"wrote {written}: edit it, then use it with [bold]--config {written}[/]", highlight=False)


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("demo-report", "--out", help="Report folder (index.html, chart.png, grids/)."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Corpus folder with queries.tsv + qrels.txt (default: the bundled sample)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Index and grid cache (default: .mmfuse-cache in the repo)."),
    k: int = typer.Option(10, "--k", parser=Int(min=1), help="Results per query."),
    fusion: Optional[str] = typer.Option(None, "--fusion", parser=Checked(get_method),
                                         help="Fusion method (default: the library default)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", envvar="MMFUSE_CLIP_MODEL", help="open_clip model name (e.g. ViT-B-32) for the visual modality."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", envvar="MMFUSE_CLIP_PRETRAINED", help="open_clip pretrained tag (e.g. openai)."),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint", envvar="MMFUSE_CLIP_CHECKPOINT", help="Local CLIP checkpoint file."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", envvar="MMFUSE_CLAP_MODEL", help="CLAP model dir or hub name for the audio modality."),
    vlm_model: Optional[str] = typer.Option(None, "--vlm-model", envvar="MMFUSE_VLM_MODEL", help="VLM to rerank with: served model name, or a local model dir."),
    vlm_base_url: Optional[str] = typer.Option(None, "--vlm-base-url", envvar="MMFUSE_VLM_BASE_URL", help="OpenAI-compatible server URL (default $OPENAI_BASE_URL)."),
    vlm_backend: Optional[str] = typer.Option(None, "--vlm-backend", parser=Choice(("openai", "transformers")),
                                              help="openai or transformers (default: from the other flags)."),
    vlm_api_key: Optional[str] = typer.Option(None, "--vlm-api-key", envvar="OPENAI_API_KEY", help="API key for the server."),
    rerank_top: int = typer.Option(5, "--rerank-top", parser=Int(min=1), help="Candidates the VLM reranks per query."),
    show: int = typer.Option(3, "--show", parser=Int(min=0), help="Queries printed with each list's top hits."),
) -> None:
    """The README's main job: index the sample corpus, search per modality and fused, evaluate, write an HTML report."""
    opts = DemoOptions(corpus=corpus, out=out, cache=cache, k=k, fusion=fusion, clip_model=clip_model,
                       clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint, clap_model=clap_model,
                       vlm_backend=vlm_backend, vlm_model=vlm_model, vlm_base_url=vlm_base_url,
                       vlm_api_key=vlm_api_key, rerank_top=rerank_top)
    bar = progress_bar(TextColumn("[bold]{task.description:<7}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("{task.fields[label]}"), transient=False)
    tasks: dict[str, int] = {}

    def progress(done: int, total: int, label: str) -> None:
        stage, _, detail = label.partition(": ")
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None, label="")
        bar.update(tasks[stage], completed=done, total=total or None, label=escape(detail.split(" | ")[0][-48:]))

    with bar:
        res = run_demo(opts, progress=progress)
        for t in tasks.values():
            bar.update(t, completed=bar.tasks[t].total or 1, total=bar.tasks[t].total or 1)
    final = res.final_name
    names = list(res.metrics)
    for v in res.showcase(show):
        t = Table(title=escape(f"{v.qid} “{v.text}” (relevant: {', '.join(v.relevant)})"), title_justify="left")
        t.add_column("#", justify="right")
        for n in names:
            t.add_column(escape(n), style="bold" if n in ("fused", "reranked") else None)
        for r in range(3):
            cells = []
            for n in names:
                lst = v.lists.get(n) or []
                d = lst[r][0] if r < len(lst) else ""
                cells.append(f"[green]{escape(d)} ✓[/]" if d in v.relevant else escape(d))
            t.add_row(str(r + 1), *cells)
        console.print(t)
    mt = Table(title=escape(f"{len(res.queries)} sample queries, {res.n_videos} videos: per modality vs fused ({res.fusion})"),
               title_justify="left", caption=FRACTIONS, caption_justify="left")
    mt.add_column("run")
    for lab, _ in METRICS:
        mt.add_column(lab, justify="right")
    for n, vals in res.metrics.items():
        style = "bold green" if n == "fused" else ("bold blue" if n == "reranked" else None)
        label = n + (" (best single)" if n == res.best_single else "")
        mt.add_row(escape(label), *[f"{vals[lab]:.3f}" for lab, _ in METRICS], style=style)
    mt.add_row(f"gain over {res.best_single}", *[f"{res.gain[lab]:+.3f}" for lab, _ in METRICS], style="italic")
    console.print(mt)
    if res.missing:
        console.print("[bold]not run (optional):[/]")
        for x in res.missing:
            console.print(f"  [yellow]{escape(x.part)}[/]: {escape(x.reason)}; enable with [bold]{escape(x.enable)}[/]",
                          highlight=False)
    fused = res.metrics["fused"]
    best = res.metrics[res.best_single]
    lines = [
        f"modalities: {', '.join(res.modalities)}  ·  retrievers: {len(res.singles)}  ·  fusion: {res.fusion}",
        f"fused R@1 [bold]{fused['R@1']:.3f}[/]  vs best single ({res.best_single}) {best['R@1']:.3f}  "
        f"→ [bold green]{res.gain['R@1']:+.3f}[/]; nDCG@10 {fused['nDCG@10']:.3f} ({res.gain['nDCG@10']:+.3f})",
    ]
    if res.reranked:
        lines.append(f"reranked R@1 {res.metrics['reranked']['R@1']:.3f}  ·  {escape(res.rerank_summary)}")
    idx = "reused" if res.index_stats.get("reused") else f"built in {res.timings.get('index', 0):.0f} s"
    lines.append(f"index {escape(str(res.index))} ({idx})  ·  total {res.timings.get('total', 0):.0f} s")
    lines.append(f"report: [bold]{escape(str(res.report))}[/]  (open it in a browser)")
    console.print(Panel("\n".join(lines), title=f"mmfuse demo: {final} ranking", expand=False), highlight=False)
