"""Commands over your own videos: ``mmfuse index`` and ``mmfuse search``."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmfuse.config import AGGREGATIONS, POOLINGS
from mmfuse.encoders import load_encoder
from mmfuse.fusion import get_method
from mmfuse.ingest import IndexConfig, index_folder
from mmfuse.ingest.ray_engine import index_with_ray

from .args import Checked, Choice, Csv, Float, Int
from .common import (
    app,
    apply_defaults,
    config_defaults,
    console,
    err_console,
    load_config_defaults,
    progress_bar,
    required,
    split_csv,
    warn,
)

ENGINES = ("local", "ray")


@app.command("index")
def index_cmd(
    ctx: typer.Context,
    video_dir: str = typer.Argument(..., help="Folder of videos (searched recursively)."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory (created if missing)."),
    modalities: str = typer.Option("visual,audio,ocr,asr,meta", "--modalities", parser=Csv(),
                                   help="Comma-separated built-in modalities, or 'none' (plug-ins only)."),
    retriever: list[str] = typer.Option([], "--retriever", help="Plug-in: module:Class or entry-point name (repeatable)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="open_clip model name, config JSON or local dir."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="open_clip pretrained tag."),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint", help="Local CLIP checkpoint file."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="CLAP model directory or hub name."),
    metadata: Optional[str] = typer.Option(None, "--metadata", help="Sidecar JSON/CSV (default VIDEO_DIR/metadata.json)."),
    window: float = typer.Option(10.0, "--window", parser=Float(min=0, open_min=True), help="Segment length in seconds."),
    frames: int = typer.Option(4, "--frames", parser=Int(min=1, max=64), help="Frames sampled per segment."),
    workers: int = typer.Option(1, "--workers", parser=Int(min=1), help="Files processed in parallel."),
    no_dense: bool = typer.Option(False, "--no-dense", help="Skip dense text embeddings of ASR/metadata."),
    engine: str = typer.Option("local", "--engine", parser=Choice(ENGINES),
                               help="local (threads on this machine) or ray (Ray Data pipeline)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: cluster to join ('auto', 'ray://host:10001')."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
    repair: bool = typer.Option(False, "--repair", help="Repair a damaged index first (re-indexes what was lost)."),
) -> None:
    """Index a folder of videos: new and changed files only; bad files are reported and skipped."""
    v = config_defaults(ctx, "index", locals())
    index = required(v["index"], "--index", "[index] path")
    modalities, retriever, metadata, window, frames, workers, no_dense = (
        v[n] for n in ("modalities", "retriever", "metadata", "window", "frames", "workers", "no_dense"))
    clip_model, clip_pretrained, clip_checkpoint, clap_model = (
        v[n] for n in ("clip_model", "clip_pretrained", "clip_checkpoint", "clap_model"))
    mods = split_csv(modalities) or []
    cfg = IndexConfig(
        modalities=[] if [m.lower() for m in mods] == ["none"] else mods, window=window, frames_per_segment=frames,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint, clap_model=clap_model,
        dense_text=not no_dense, retrievers=list(retriever), metadata=metadata, workers=workers,
    )
    if repair:
        from mmfuse.store.lance import IndexStore

        for line in IndexStore.repair(index):
            err_console.print(f"repair: {line}", highlight=False, soft_wrap=True)
    bar = progress_bar(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                       TextColumn("{task.fields[segments]} segments"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), TextColumn("{task.fields[label]}"))
    with bar:
        task = bar.add_task("index", total=None, segments=0, label="")

        def progress(done: int, total: int, label: str) -> None:
            name, _, segs = label.rpartition(" | ")
            bar.update(task, completed=done, total=total, segments=segs.split()[0] if segs else 0, label=escape(name[-40:]))

        if engine == "ray":
            summary = index_with_ray(video_dir, index, address=address, config=cfg, progress=progress)
        else:
            summary = index_folder(video_dir, index, cfg, progress=progress)
    for w in summary.warnings:
        warn(w)
    table = Table(title=escape(f"mmfuse index {index}"), show_lines=False)
    table.add_column("status")
    table.add_column("count", justify="right")
    table.add_column("details")
    table.add_row("indexed", str(len(summary.indexed)),
                  f"{sum(n for _, n, _ in summary.indexed)} segments, {summary.seconds:.1f} s of video in {summary.wall:.1f} s")
    unchanged = sum(why == "unchanged" for _, why in summary.skipped)
    table.add_row("skipped", str(len(summary.skipped)), f"{unchanged} unchanged since the last run" if unchanged else "")
    for name, why in summary.skipped:
        if why != "unchanged":
            table.add_row("", "", f"{name}: {why}")
    if summary.removed:
        table.add_row("removed", str(len(summary.removed)), "no longer in the folder")
    table.add_row("[red]failed[/]" if summary.failed else "failed", str(len(summary.failed)), "")
    for name, reason in summary.failed:
        table.add_row("", "", f"[red]{escape(name)}[/]: {escape(reason)}")
    table.add_row("modalities", str(len(summary.modalities)), escape(", ".join(summary.modalities)))
    console.print(table)
    if summary.failed:
        raise SystemExit(1)  # typer.Exit is swallowed by click in standalone_mode=False


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Text query."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory built by `mmfuse index`."),
    k: int = typer.Option(10, "--k", parser=Int(min=1), help="Videos to return."),
    fusion: Optional[str] = typer.Option(None, "--fusion", parser=Checked(get_method),
                                         help="Fusion method (default: the library default)."),
    per_modality: bool = typer.Option(False, "--per-modality", help="Also print each modality's own list."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    modalities: Optional[str] = typer.Option(None, "--modalities", parser=Csv(), help="Comma-separated subset of modalities."),
    aggregation: str = typer.Option("max", "--aggregation", parser=Choice(AGGREGATIONS),
                                    help="Segment -> video: max, mean, sum, topn."),
    pooling: str = typer.Option("mean", "--pooling", parser=Choice(POOLINGS), help="Frame pooling: mean, max, softmax, maxsim."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="Override the CLIP model recorded in the index."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained"),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint"),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="Override the CLAP model recorded in the index."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
    retriever: list[str] = typer.Option([], "--retriever", help="Plug-in the index names that may be imported: "
                                        "module:Class or entry-point name (repeatable)."),
) -> None:
    """Search an index: fused ranking with each modality's rank and score per hit."""
    import json as _json

    import numpy as _np
    from rich.table import Table

    from mmfuse.errors import ParameterError
    from mmfuse.pipeline import search_index

    cfg = load_config_defaults(config, "search")  # read once: flags below, and the [fusion] settings further down
    v = apply_defaults(ctx, locals(), cfg)
    index = required(v["index"], "--index", "[index] path")
    k, fusion, modalities, aggregation, pooling = (v[n] for n in ("k", "fusion", "modalities", "aggregation", "pooling"))
    clip_model, clip_pretrained, clip_checkpoint, clap_model = (
        v[n] for n in ("clip_model", "clip_pretrained", "clip_checkpoint", "clap_model"))
    if k < 1:
        raise ParameterError(f"--k must be >= 1, got {k}")
    clip = clap = None
    if clip_model or clip_checkpoint:
        clip = load_encoder("clip", clip_model, pretrained=clip_pretrained, checkpoint=clip_checkpoint, lazy=True)
    if clap_model:
        clap = load_encoder("clap", clap_model, lazy=True)
    # The config's [fusion] norm, params and depth go with its method (not with another one named by --fusion).
    # Its weights are per configured retriever, which need not match the modalities this index answers with.
    extra: dict = {}
    if cfg and fusion == cfg.get("fusion"):
        if cfg.get("fusion_norm"):
            extra["norm"] = cfg["fusion_norm"]
        extra.update(cfg.get("fusion_params") or {})
        if cfg.get("fusion_weights"):
            err_console.print("warning: \\[fusion] weights are not applied by `mmfuse search` (the modalities an "
                              "index answers with vary); use mmfuse.Pipeline for weighted fusion")
    res = search_index(index, {"q": query}, k=k, fusion=fusion, modalities=split_csv(modalities),
                       aggregation=aggregation, pooling=pooling, clip_encoder=clip, clap_encoder=clap,
                       depth=cfg.get("depth"), fusion_params=extra, plugins=v["retriever"])

    def entries(run):
        i = int(_np.flatnonzero(run.query_ids == "q")[0]) if "q" in run else -1
        if i < 0:
            return []
        lo, hi = int(run.offsets[i]), int(run.offsets[i + 1])
        ev = run.evidence or {}
        out = []
        for r, j in enumerate(range(lo, hi), 1):
            e = {"rank": r, "video_id": str(run.doc_ids[run.doc_idx[j]]), "score": float(run.scores[j])}
            for c in ("segment_id", "start", "end"):
                if c in ev:
                    v = ev[c][j]
                    e[c] = float(v) if c != "segment_id" else str(v)
            out.append(e)
        return out

    per = {r.name: entries(r) for r in res.runs}
    lookup = {m: {e["video_id"]: e for e in lst} for m, lst in per.items()}
    hits = []
    for e in entries(res.fused):
        e = {"rank": e["rank"], "video_id": e["video_id"], "score": e["score"], "modalities": {}}
        for m in per:
            h = lookup[m].get(e["video_id"])
            if h is not None:
                e["modalities"][m] = {kk: h[kk] for kk in ("rank", "score", "segment_id", "start", "end") if kk in h}
        hits.append(e)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if json_out:
        doc = {"query": query, "fusion": fusion or "default", "hits": hits, "warnings": res.warnings}
        if per_modality:
            doc["per_modality"] = {m: lst[:k] for m, lst in per.items()}
        typer.echo(_json.dumps(doc, indent=1))
        return
    names = list(per)
    table = Table(title=f"{query!r}: fused ({fusion or 'default'})")
    table.add_column("#", justify="right")
    table.add_column("video")
    table.add_column("score", justify="right")
    for m in names:
        table.add_column(f"{m} rank/score", justify="right")
    for h in hits:
        cells = []
        for m in names:
            x = h["modalities"].get(m)
            cells.append(f"{x['rank']} / {x['score']:.3g}" if x else "-")
        table.add_row(str(h["rank"]), h["video_id"], f"{h['score']:.4g}", *cells)
    console.print(table)
    if per_modality:
        for m, lst in per.items():
            t = Table(title=f"{m}")
            for c in ("#", "video", "score", "segment", "time"):
                t.add_column(c)
            for e in lst[:k]:
                span = f"{e['start']:.1f}-{e['end']:.1f}s" if "start" in e else ""
                t.add_row(str(e["rank"]), e["video_id"], f"{e['score']:.4g}", e.get("segment_id", ""), span)
            console.print(t)
