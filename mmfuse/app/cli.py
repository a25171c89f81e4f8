"""The mmfuse command line: parses arguments, calls the library, renders with rich. No logic lives here."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from mmfuse.errors import MmfuseError, ParameterError

app = typer.Typer(
    name="mmfuse",
    help="Fuse many text-to-video retrievers and rerank with a vision-language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


# Each command group lives in its own block below; keep the blocks independent.

# --- fusion commands (fuse, methods, eval) ------------------------------------------------


def _fusion_params(items: list[str]) -> dict[str, str]:
    from mmfuse.errors import ParameterError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param {item!r}: expected name=value")
        out[name.strip().replace("-", "_").replace(".", "_")] = value.strip()
    return out


def _fusion_weights(text: Optional[str]) -> Optional[list[float]]:
    from mmfuse.errors import ParameterError

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ParameterError(f"--weights {text!r}: expected comma-separated numbers such as 1,0.5") from None


@app.command("fuse")
def fuse_cmd(
    runs: list[str] = typer.Argument(..., help="Run files: TREC, Parquet or JSON (format from the extension)."),
    output: str = typer.Option(..., "-o", "--output", help="Output file; .parquet/.json by extension, else TREC."),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Fusion method (see `mmfuse methods`); default: the library default."),
    norm: Optional[str] = typer.Option(None, "--norm", help="Normalization: none, min-max, zmuv, sum, max, rank, borda, softmax."),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per run, comma-separated (weighted methods)."),
    k: Optional[float] = typer.Option(None, "--k", help="RRF k (same as --param k=VALUE)."),
    depth: Optional[int] = typer.Option(1000, "--depth", help="Use the top DEPTH of each run and write the top DEPTH."),
    param: list[str] = typer.Option([], "--param", help="Method parameter name=value (repeatable); norm_temperature=T for softmax."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Force the input format: trec, parquet or json."),
    on_duplicate: str = typer.Option("error", "--on-duplicate", help="Repeated (query, doc) in a run: error, max or first."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Run tag written in TREC output (default: the method name)."),
    stream: bool = typer.Option(False, "--stream", help="Parquet runs larger than memory: fuse block by block."),
    block_rows: int = typer.Option(1_000_000, "--block-rows", help="With --stream: rows per block (bounds memory)."),
) -> None:
    """Fuse several runs into one and write it."""
    from pathlib import Path

    from mmfuse.errors import InputError
    from mmfuse.fusion import fuse
    from mmfuse.runs.run import Run

    params = _fusion_params(param)
    if k is not None:
        params["k"] = str(k)
    w = _fusion_weights(weights)
    out = Path(output)
    if out.is_dir():
        raise InputError(f"{out}: is a directory; give an output file name")
    if stream:
        from mmfuse.fusion.streaming import fuse_stream

        stats = fuse_stream(runs, out, method=method, norm=norm, weights=w, depth=depth, block_rows=block_rows,
                            on_duplicate=on_duplicate, **params)
        err_console.print(f"fused {len(runs)} runs block by block -> {out} "
                          + ", ".join(f"{k}={v}" for k, v in stats.items() if isinstance(v, (int, float, str))),
                          highlight=False)
        return
    loaded = [Run.read(p, format=fmt, name=Path(p).stem, on_duplicate=on_duplicate) for p in runs]
    fused = fuse(loaded, method=method, norm=norm, weights=w, depth=depth, **params)
    try:
        fused.write(out, tag=tag or fused.name)
    except OSError as e:
        raise InputError(f"{out}: cannot write: {e.strerror or e}") from None
    err_console.print(f"fused {len(loaded)} runs with {fused.name}: {fused.n_queries} queries, {len(fused)} entries -> {out}",
                      highlight=False)


@app.command("methods")
def methods_cmd() -> None:
    """List fusion methods, their parameters and defaults."""
    from rich.table import Table

    from mmfuse.fusion import default_method, methods

    default = default_method()
    table = Table(title="fusion methods (* = default)")
    for col in ("method", "kind", "default norm", "weights", "parameters", "description"):
        table.add_column(col, overflow="fold")
    for name, m in methods().items():
        params = "\n".join(f"{p.name}={p.default!r}: {p.doc}" for p in m.params) or "-"
        desc = m.doc + (" [transductive]" if m.transductive else "") + (f" (ranx: {m.ranx})" if m.ranx else "")
        if m.aliases:
            desc += f" aliases: {', '.join(m.aliases)}"
        table.add_row(name + (" *" if name == default else ""), m.kind, m.default_norm or "none",
                      "yes" if m.weighted else "-", params, desc)
    console.print(table)


@app.command("eval")
def eval_cmd(
    qrels: str = typer.Argument(..., help="Qrels file (TREC, Parquet or JSON)."),
    runs: list[str] = typer.Argument(..., help="Run files to evaluate."),
    metrics: str = typer.Option("ndcg@10,recall@100,mrr@10,map", "--metrics", help="Comma-separated ranx metric names."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Force the run format: trec, parquet or json."),
) -> None:
    """Evaluate runs against qrels (ranx metric names)."""
    import json
    from pathlib import Path

    from mmfuse.runs.run import Qrels, Run

    try:
        from mmfuse.eval.metrics import evaluate
    except ImportError:  # metrics module not available: ranx computes the same numbers
        def evaluate(q, r, metrics):
            import ranx

            res = ranx.evaluate(q.to_ranx(), r.to_ranx(), metrics, make_comparable=True)
            return res if isinstance(res, dict) else {metrics[0]: res}

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    q = Qrels.read(qrels)
    results = {}
    for p in runs:
        run = Run.read(p, format=fmt, name=Path(p).stem)
        results[Path(p).name] = {m: float(v) for m, v in evaluate(q, run, names).items()}
    if as_json:
        console.print_json(json.dumps(results))
        return
    from rich.table import Table

    table = Table(title=f"{Path(qrels).name}")
    table.add_column("run")
    for m in names:
        table.add_column(m, justify="right")
    for run_name, vals in results.items():
        table.add_row(run_name, *(f"{vals[m]:.4f}" for m in names))
    console.print(table)

# --- end fusion commands ------------------------------------------------------------------

# --- benchmark commands (bench) -----------------------------------------------------------


@app.command("bench")
def bench_cmd(
    datasets: list[str] = typer.Argument(..., help="Dataset directories: .npy score matrices + CSV, or qrels + run files."),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated fusion methods (default: the default grid)."),
    retrievers: Optional[str] = typer.Option(None, "--retrievers", help="Comma-separated retriever names to use (default: all)."),
    subsets: str = typer.Option("every", "--subsets", help="Retriever subsets to fuse: all, singles, pairs or every."),
    tune_on: Optional[str] = typer.Option(None, "--tune-on", help="Dataset (directory name) whose best parameters are applied unchanged to the others."),
    mode: str = typer.Option("t2v", "--mode", help="t2v (text queries) or v2t (transposed matrices)."),
    candidates: str = typer.Option("all", "--candidates", help="Zero-filled matrix entries: 'all' (every column a candidate, the ViC protocol) or 'real' (only real candidates)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the results JSON here."),
    report: Optional[str] = typer.Option(None, "--report", help="Write the Markdown report here."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    top: int = typer.Option(20, "--top", help="Rows of the results table printed (the report lists all)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for the sweep (default: up to 2)."),
) -> None:
    """Benchmark fusion methods x normalizations x parameters x retriever subsets on datasets."""
    import shlex
    from pathlib import Path

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from mmfuse.benchmarks import report as rep
    from mmfuse.benchmarks import sweep as sw
    from mmfuse.benchmarks.datasets import load_dataset
    from mmfuse.errors import ParameterError

    names = [r.strip() for r in retrievers.split(",") if r.strip()] if retrievers else None
    meths = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    if subsets not in sw.SUBSET_MODES:
        from mmfuse.errors import unknown

        raise unknown("--subsets value", subsets, sw.SUBSET_MODES)
    for out in (json_out, report):
        if out and Path(out).is_dir():
            raise ParameterError(f"{out}: is a directory; give a file name")
    loaded = [load_dataset(d, mode=mode, candidates=candidates, retrievers=names) for d in datasets]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("sweep", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(label[:60]))

        results = sw.run_benchmark(loaded, methods=meths, subset_mode=subsets, tune_on=tune_on, progress=progress,
                                   workers=workers)
    n_q = {d.name: d.n_queries for d in loaded}
    for d in loaded:
        res = sorted(results[d.name], key=lambda r: (-r.metrics["R@1"], r.ms_per_query))
        table = Table(title=f"{d.name} ({d.n_queries} queries, {mode}, candidates={d.candidates}): top {min(top, len(res))} of {len(res)} by R@1")
        for col in ("configuration", "retrievers", "R@1", "R@5", "R@10", "MdR", "MnR", "ms/q"):
            table.add_column(col, justify="left" if col in ("configuration", "retrievers") else "right")
        for r in res[:top]:
            m = r.metrics
            lab = rep.label(r) + (" (default)" if rep._is_default(r) else "") + (f" (tuned on {r.tuned_on})" if r.tuned_on else "")
            table.add_row(escape(lab), "+".join(r.config.retrievers), f"{m['R@1']:.1f}", f"{m['R@5']:.1f}", f"{m['R@10']:.1f}",
                          f"{m['MdR']:g}", f"{m['MnR']:.1f}", f"{r.ms_per_query:.3f}")
        console.print(table)
    if json_out:
        rep.write_json(json_out, results, n_q)
        err_console.print(f"wrote {json_out}", highlight=False)
    figs = {}
    if plots:
        from mmfuse.benchmarks.plots import plot_all

        for d in loaded:
            files = plot_all(d.name, results[d.name], plots)
            if report:
                rel = Path(plots).resolve()
                try:
                    rel = rel.relative_to(Path(report).resolve().parent)
                except ValueError:
                    pass
                figs[d.name] = {k: str(rel / v) for k, v in files.items()}
        err_console.print(f"wrote plots to {plots}", highlight=False)
    if report:
        cmd = "mmfuse bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
        notes = {d.name: f"Format: {d.meta.get('format')}, mode {d.mode}, candidates={d.candidates}, "
                         f"retrievers: {', '.join(d.retrievers)}." for d in loaded}
        extra = {d.name: rep.significance_lines(d, results[d.name]) for d in loaded}
        rep.write_markdown(report, rep.markdown(results, n_q, command=cmd, plots=figs or None, notes=notes,
                                                extra=extra))
        err_console.print(f"wrote {report}", highlight=False)

# --- end benchmark commands ---------------------------------------------------------------

# --- index commands (index, search) -------------------------------------------------------


def _from_config(ctx: typer.Context, command: str, values: dict) -> dict:
    """Fill the parameters the user did not pass on the command line from the ``--config`` file."""
    from mmfuse.config import apply_defaults, load_config_defaults

    return apply_defaults(ctx, values, load_config_defaults(values.get("config"), command))


def _required(value, flag: str, key: str):
    if value is None:
        raise ParameterError(f"{flag} is required (or set {key} in --config)")
    return value


def _split_csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command("index")
def index_cmd(
    ctx: typer.Context,
    video_dir: str = typer.Argument(..., help="Folder of videos (searched recursively)."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory (created if missing)."),
    modalities: str = typer.Option("visual,audio,ocr,asr,meta", "--modalities",
                                   help="Comma-separated built-in modalities, or 'none' (plug-ins only)."),
    retriever: list[str] = typer.Option([], "--retriever", help="Plug-in: module:Class or entry-point name (repeatable)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="open_clip model name, config JSON or local dir."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="open_clip pretrained tag."),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint", help="Local CLIP checkpoint file."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="CLAP model directory or hub name."),
    metadata: Optional[str] = typer.Option(None, "--metadata", help="Sidecar JSON/CSV (default VIDEO_DIR/metadata.json)."),
    window: float = typer.Option(10.0, "--window", help="Segment length in seconds."),
    frames: int = typer.Option(4, "--frames", help="Frames sampled per segment."),
    workers: int = typer.Option(1, "--workers", help="Files processed in parallel."),
    no_dense: bool = typer.Option(False, "--no-dense", help="Skip dense text embeddings of ASR/metadata."),
    engine: str = typer.Option("local", "--engine", help="local (threads on this machine) or ray (Ray Data pipeline)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: cluster to join ('auto', 'ray://host:10001')."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
) -> None:
    """Index a folder of videos: new and changed files only; bad files are reported and skipped."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from mmfuse.ingest import IndexConfig, index_folder

    v = _from_config(ctx, "index", locals())
    index = _required(v["index"], "--index", "[index] path")
    modalities, retriever, metadata, window, frames, workers, no_dense = (
        v[n] for n in ("modalities", "retriever", "metadata", "window", "frames", "workers", "no_dense"))
    clip_model, clip_pretrained, clip_checkpoint, clap_model = (
        v[n] for n in ("clip_model", "clip_pretrained", "clip_checkpoint", "clap_model"))
    cfg = IndexConfig(
        modalities=[] if modalities.strip().lower() == "none" else (_split_csv(modalities) or []), window=window, frames_per_segment=frames, clip_model=clip_model,
        clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint, clap_model=clap_model,
        dense_text=not no_dense, retrievers=list(retriever), metadata=metadata, workers=workers,
    )
    bar = Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                   TextColumn("{task.fields[segments]} segments"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), TextColumn("{task.fields[label]}"), console=err_console, transient=True)
    with bar:
        task = bar.add_task("index", total=None, segments=0, label="")

        def progress(done: int, total: int, label: str) -> None:
            name, _, segs = label.rpartition(" | ")
            bar.update(task, completed=done, total=total, segments=segs.split()[0] if segs else 0, label=name[-40:])

        if engine == "ray":
            from mmfuse.ingest.ray_engine import index_with_ray

            summary = index_with_ray(video_dir, index, address=address, config=cfg, progress=progress)
        elif engine == "local":
            summary = index_folder(video_dir, index, cfg, progress=progress)
        else:
            from mmfuse.errors import unknown

            raise unknown("--engine", engine, ["local", "ray"])
    for w in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    table = Table(title=f"mmfuse index {index}", show_lines=False)
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
        table.add_row("", "", f"[red]{name}[/]: {reason}")
    table.add_row("modalities", str(len(summary.modalities)), ", ".join(summary.modalities))
    console.print(table)
    if summary.failed:
        raise SystemExit(1)  # typer.Exit is swallowed by click in standalone_mode=False


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="Text query."),
    index: Optional[str] = typer.Option(None, "--index", help="Index directory built by `mmfuse index`."),
    k: int = typer.Option(10, "--k", help="Videos to return."),
    fusion: Optional[str] = typer.Option(None, "--fusion", help="Fusion method (default: the library default)."),
    per_modality: bool = typer.Option(False, "--per-modality", help="Also print each modality's own list."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    modalities: Optional[str] = typer.Option(None, "--modalities", help="Comma-separated subset of modalities."),
    aggregation: str = typer.Option("max", "--aggregation", help="Segment -> video: max, mean, sum, topn."),
    pooling: str = typer.Option("mean", "--pooling", help="Frame pooling: mean, max, softmax, maxsim."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="Override the CLIP model recorded in the index."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained"),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint"),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", help="Override the CLAP model recorded in the index."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
) -> None:
    """Search an index: fused ranking with each modality's rank and score per hit."""
    import json as _json

    import numpy as _np
    from rich.table import Table

    from mmfuse.config import apply_defaults, load_config_defaults
    from mmfuse.encoders import load_encoder
    from mmfuse.errors import ParameterError
    from mmfuse.pipeline import search_index

    cfg = load_config_defaults(config, "search")  # read once: flags below, and the [fusion] settings further down
    v = apply_defaults(ctx, locals(), cfg)
    index = _required(v["index"], "--index", "[index] path")
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
    res = search_index(index, {"q": query}, k=k, fusion=fusion, modalities=_split_csv(modalities),
                       aggregation=aggregation, pooling=pooling, clip_encoder=clip, clap_encoder=clap,
                       depth=cfg.get("depth"), fusion_params=extra)

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


# --- end index commands -------------------------------------------------------------------

# --- rerank commands (rerank, grid) -------------------------------------------------------


def _rerank_cache_dir(value: Optional[str]) -> Optional[str]:
    import os
    from pathlib import Path

    if value is not None:
        return value or None  # --cache-dir "" keeps grids in memory only
    base = os.environ.get("MMFUSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mmfuse")
    return os.path.join(base, "grids")


@app.command("rerank")
def rerank_cmd(
    ctx: typer.Context,
    runs: list[str] = typer.Argument(..., help="Run file(s) (TREC/Parquet/JSON). Several runs: ViC fusion of their union."),
    queries: str = typer.Option(..., "--queries", help="Query texts: TSV 'qid<TAB>text' or JSON {qid: text}."),
    videos: Optional[str] = typer.Option(None, "--videos", help="Folder of videos named <doc id>.<ext>."),
    mapping: Optional[str] = typer.Option(None, "--mapping", help="doc id -> video path (TSV or JSON), instead of or on top of --videos."),
    subtitles: Optional[str] = typer.Option(None, "--subtitles", help="JSON [{video_id, subtitle}] or {video_id: text}."),
    subtitle_tokens: int = typer.Option(64, "--subtitle-tokens", help="Token budget per candidate's subtitles."),
    backend: Optional[str] = typer.Option(None, "--backend", help="transformers | openai"),
    model: Optional[str] = typer.Option(None, "--model", help="Hub name / local dir (transformers) or served model name (openai)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (env OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (env OPENAI_API_KEY)."),
    mode: str = typer.Option("listwise", "--mode", help="listwise | pointwise (P('yes') from logits/logprobs)."),
    template: Optional[str] = typer.Option(None, "--template", help="Prompt template file (see mmfuse/rerankers/templates)."),
    top: int = typer.Option(20, "--top", help="Rerank this many candidates per query; the tail keeps its order."),
    window: int = typer.Option(20, "--window", help="Candidates per model call."),
    step: int = typer.Option(10, "--step", help="Sliding-window step when --top > --window."),
    grid: str = typer.Option("2x2", "--grid", help="Frames per S-Grid as ROWSxCOLS."),
    cell: str = typer.Option("224", "--cell", help="Cell size in pixels: N or WxH."),
    sampling: str = typer.Option("uniform", "--sampling", help="uniform | scene (one frame per detected shot)."),
    evidence_run: list[str] = typer.Option([], "--evidence-run", help="First-stage run whose ranks the model sees (repeatable)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Fusion mode: interleave this many entries of each run."),
    device: str = typer.Option("auto", "--device", help="transformers: auto | cpu | cuda | cuda:1 | mps."),
    dtype: str = typer.Option("auto", "--dtype", help="transformers: auto | float32 | bfloat16 | float16."),
    query_batch: int = typer.Option(1, "--query-batch", help="transformers: queries generated together (single window)."),
    batch_size: int = typer.Option(8, "--batch-size", help="transformers: pointwise prompts per forward pass."),
    timeout: float = typer.Option(120.0, "--timeout", help="openai: seconds per request."),
    retries: int = typer.Option(2, "--retries", help="openai: retries on timeouts, 429 and 5xx."),
    concurrency: int = typer.Option(4, "--concurrency", help="openai: requests in flight at once."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Grid cache (default ~/.cache/mmfuse/grids; '' = none)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.partial.jsonl left by an interrupted run."),
    stats: Optional[str] = typer.Option(None, "--stats", help="Write rerank and parse statistics as JSON here."),
    output: str = typer.Option(..., "-o", "--output", help="Output run (format from the extension; TREC by default)."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Run tag written in TREC output."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
) -> None:
    """Rerank existing result lists with a vision-language model over S-Grids of the top candidates."""
    import json
    from pathlib import Path

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from mmfuse.errors import ParameterError
    from mmfuse.rerankers import VLMReranker, get_backend, load_mapping, load_queries
    from mmfuse.rerankers.grid import parse_cell, parse_grid
    from mmfuse.rerankers.reranker import index_videos
    from mmfuse.runs.run import Run

    v = _from_config(ctx, "rerank", locals())
    backend = _required(v["backend"], "--backend", "[rerank] backend")
    model, base_url, top, window, step, grid, cell, cache_dir, mode = (
        v[n] for n in ("model", "base_url", "top", "window", "step", "grid", "cell", "cache_dir", "mode"))
    cell = str(cell)
    if videos is None and mapping is None:
        raise ParameterError("give --videos DIR and/or --mapping FILE so candidates can be found")
    paths = {}
    if videos is not None:
        paths.update(index_videos(videos))
    if mapping is not None:
        paths.update(load_mapping(mapping))
    texts = load_queries(queries)
    in_runs = [Run.read(r) for r in runs]
    ev_runs = [Run.read(r) for r in evidence_run]
    kw: dict = {"mode": mode, "template": template}
    if backend == "transformers":
        kw.update(device=device, dtype=dtype, query_batch=query_batch, batch_size=batch_size)
    elif backend == "openai":
        kw.update(base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, concurrency=concurrency)
    with err_console.status(f"loading {backend} backend {model or ''}"):
        be = get_backend(backend, model, **kw)
    rr = VLMReranker(be, top=top, window=window, step=step, grid=parse_grid(grid), cell=parse_cell(cell),
                     subtitles=subtitles, subtitle_tokens=subtitle_tokens, cache_dir=_rerank_cache_dir(cache_dir),
                     sampling=sampling)
    out_path = Path(output)
    checkpoint = out_path.with_name(out_path.name + ".partial.jsonl")
    if resume and not checkpoint.exists():
        err_console.print(f"[yellow]note:[/] no {checkpoint} to resume from; starting from scratch")
    bar = Progress(TextColumn("[bold]reranking"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[label]}"),
                   console=err_console, transient=True)
    with bar:
        task = bar.add_task("rerank", total=None, label="")

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, label=label)

        if len(in_runs) > 1:
            result = rr.rerank_fusion(texts, in_runs, paths, depth=depth, names=[Path(r).stem for r in runs],
                                      progress=progress, checkpoint=checkpoint, resume=resume)
        else:
            result = rr.rerank(texts, in_runs[0], paths, retriever_runs=ev_runs or None, progress=progress,
                               checkpoint=checkpoint, resume=resume)
    result.write(out_path, tag=tag)
    checkpoint.unlink(missing_ok=True)
    st = rr.stats
    if stats:
        from mmfuse.utils.files import atomic_write

        with atomic_write(stats) as fh:
            json.dump(st.as_dict(), fh, indent=2)
    table = Table(title=f"rerank -> {out_path}", show_header=False)
    for k, v in [("queries", st.queries), ("reranked", st.reranked), ("resumed", st.resumed),
                 ("kept in incoming order (errors)", st.failed), ("model calls", st.model_calls),
                 ("model seconds", f"{st.model_seconds:.1f}"),
                 ("grid seconds", f"{st.grid_seconds:.1f} ({st.grid_hits} cached, {st.grid_misses} built)"),
                 ("answers clean / repaired / unparseable", f"{st.parse.clean} / {st.parse.repaired} / {st.parse.failed}"),
                 ("missing or unreadable videos", len(st.missing_videos))]:
        table.add_row(k, str(v))
    console.print(table)
    for qid, why in st.failures[:5]:
        err_console.print(f"[yellow]warning:[/] query {qid} kept its incoming order: {why}", highlight=False)
    if len(st.failures) > 5:
        err_console.print(f"[yellow]warning:[/] ... and {len(st.failures) - 5} more (see --stats)")
    if st.missing_videos:
        some = ", ".join(sorted(st.missing_videos)[:5])
        err_console.print(f"[yellow]note:[/] placeholder grids for {len(st.missing_videos)} candidates ({some} ...)")
    if st.queries and st.failed == st.queries - st.resumed and st.failed:
        from mmfuse.errors import BackendError

        raise BackendError(f"every query failed; {out_path} keeps the incoming order (first error: {st.failures[0][1]})")


@app.command("grid")
def grid_cmd(
    video: str = typer.Argument(..., help="A video file."),
    output: str = typer.Option(..., "-o", "--output", help="Image file to write (PNG/JPEG by extension)."),
    grid: str = typer.Option("2x2", "--grid", help="ROWSxCOLS."),
    cell: str = typer.Option("224", "--cell", help="Cell size in pixels: N or WxH."),
    sampling: str = typer.Option("uniform", "--sampling", help="uniform | scene."),
    label: Optional[str] = typer.Option(None, "--label", help="Draw this label, e.g. 3 -> [3]."),
) -> None:
    """Write the S-Grid the reranker would show a model for VIDEO, for a person to look at."""
    from pathlib import Path

    from mmfuse.errors import InputError
    from mmfuse.rerankers.grid import GridSpec, build_grid, draw_label, parse_cell, parse_grid
    from mmfuse.utils.files import atomic_path

    if not Path(video).is_file():
        raise InputError(f"{video}: no such file")
    rows, cols = parse_grid(grid)
    img = build_grid(video, GridSpec(rows=rows, cols=cols, cell=parse_cell(cell), sampling=sampling))
    if label is not None:
        img = draw_label(img, f"[{label}]")
    out = Path(output)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
    with atomic_path(out) as tmp:
        img.save(tmp, format=fmt)
    console.print(f"wrote {out} ({img.width}x{img.height}, {rows}x{cols} frames)")


# --- end rerank commands ------------------------------------------------------------------

# --- pipeline commands (init, demo) -------------------------------------------------------
@app.command("init")
def init_cmd(
    path: str = typer.Argument("mmfuse.toml", help="Config file to write (a folder gets mmfuse.toml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the commented default pipeline config (used by --config and Pipeline.from_config)."""
    from mmfuse.config import write_default_config

    written = write_default_config(path, force=force)
    console.print(f"wrote {written}: edit it, then use it with [bold]--config {written}[/]", highlight=False)


def _pick_queries(result, n: int) -> list:
    """A few queries worth showing: fusion right at rank 1, each won by a different retriever where possible."""
    final = result.final_name
    picked, seen = [], set()
    top = lambda v, name: (v.lists.get(name) or [("", 0.0)])[0][0]  # noqa: E731
    good = [v for v in result.queries if top(v, final) in v.relevant]
    for v in good:
        winners = tuple(s for s in result.singles if top(v, s) in v.relevant)
        if winners and winners[0] not in seen:
            seen.add(winners[0])
            picked.append(v)
    for v in good:  # fusion right where no single retriever was
        if len(picked) < n and v not in picked and not any(top(v, s) in v.relevant for s in result.singles):
            picked.insert(min(1, len(picked)), v)
    picked += [v for v in result.queries if v not in picked]
    return picked[: max(0, n)]


@app.command("demo")
def demo_cmd(
    out: str = typer.Option("demo-report", "--out", help="Report folder (index.html, chart.png, grids/)."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Corpus folder with queries.tsv + qrels.txt (default: the bundled sample)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Index and grid cache (default: .mmfuse-cache in the repo)."),
    k: int = typer.Option(10, "--k", help="Results per query."),
    fusion: Optional[str] = typer.Option(None, "--fusion", help="Fusion method (default: the library default)."),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", envvar="MMFUSE_CLIP_MODEL", help="open_clip model name (e.g. ViT-B-32) for the visual modality."),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", envvar="MMFUSE_CLIP_PRETRAINED", help="open_clip pretrained tag (e.g. openai)."),
    clip_checkpoint: Optional[str] = typer.Option(None, "--clip-checkpoint", envvar="MMFUSE_CLIP_CHECKPOINT", help="Local CLIP checkpoint file."),
    clap_model: Optional[str] = typer.Option(None, "--clap-model", envvar="MMFUSE_CLAP_MODEL", help="CLAP model dir or hub name for the audio modality."),
    vlm_model: Optional[str] = typer.Option(None, "--vlm-model", envvar="MMFUSE_VLM_MODEL", help="VLM to rerank with: served model name, or a local model dir."),
    vlm_base_url: Optional[str] = typer.Option(None, "--vlm-base-url", envvar="MMFUSE_VLM_BASE_URL", help="OpenAI-compatible server URL (default $OPENAI_BASE_URL)."),
    vlm_backend: Optional[str] = typer.Option(None, "--vlm-backend", help="openai or transformers (default: from the other flags)."),
    vlm_api_key: Optional[str] = typer.Option(None, "--vlm-api-key", envvar="OPENAI_API_KEY", help="API key for the server."),
    rerank_top: int = typer.Option(5, "--rerank-top", help="Candidates the VLM reranks per query."),
    show: int = typer.Option(3, "--show", help="Queries printed with each list's top hits."),
) -> None:
    """The README's main job: index the sample corpus, search per modality and fused, evaluate, write an HTML report."""
    from rich.panel import Panel
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .demo import METRICS, DemoOptions, run_demo

    if vlm_backend is not None and vlm_backend not in ("openai", "transformers"):
        from mmfuse.errors import unknown

        raise unknown("--vlm-backend", vlm_backend, ["openai", "transformers"])
    opts = DemoOptions(corpus=corpus, out=out, cache=cache, k=k, fusion=fusion, clip_model=clip_model,
                       clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint, clap_model=clap_model,
                       vlm_backend=vlm_backend, vlm_model=vlm_model, vlm_base_url=vlm_base_url,
                       vlm_api_key=vlm_api_key, rerank_top=rerank_top)
    bar = Progress(TextColumn("[bold]{task.description:<7}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[label]}"), console=err_console)
    tasks: dict[str, int] = {}

    def progress(done: int, total: int, label: str) -> None:
        stage, _, detail = label.partition(": ")
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total or None, label="")
        bar.update(tasks[stage], completed=done, total=total or None, label=detail.split(" | ")[0][-48:])

    with bar:
        res = run_demo(opts, progress=progress)
        for t in tasks.values():
            bar.update(t, completed=bar.tasks[t].total or 1, total=bar.tasks[t].total or 1)
    final = res.final_name
    names = list(res.metrics)
    for v in _pick_queries(res, show):
        t = Table(title=f"{v.qid} “{v.text}” (relevant: {', '.join(v.relevant)})", title_justify="left")
        t.add_column("#", justify="right")
        for n in names:
            t.add_column(n, style="bold" if n in ("fused", "reranked") else None)
        for r in range(3):
            cells = []
            for n in names:
                lst = v.lists.get(n) or []
                d = lst[r][0] if r < len(lst) else ""
                cells.append(f"[green]{d} ✓[/]" if d in v.relevant else d)
            t.add_row(str(r + 1), *cells)
        console.print(t)
    mt = Table(title=f"{len(res.queries)} sample queries, {res.n_videos} videos: per modality vs fused ({res.fusion})",
               title_justify="left")
    mt.add_column("run")
    for lab, _ in METRICS:
        mt.add_column(lab + " %", justify="right")
    for n, vals in res.metrics.items():
        style = "bold green" if n == "fused" else ("bold blue" if n == "reranked" else None)
        label = n + (" (best single)" if n == res.best_single else "")
        mt.add_row(label, *[f"{100 * vals[lab]:.1f}" for lab, _ in METRICS], style=style)
    mt.add_row(f"gain over {res.best_single}", *[f"{100 * res.gain[lab]:+.1f}" for lab, _ in METRICS], style="italic")
    console.print(mt)
    if res.missing:
        console.print("[bold]not run (optional):[/]")
        for x in res.missing:
            console.print(f"  [yellow]{x.part}[/]: {x.reason}; enable with [bold]{x.enable}[/]", highlight=False)
    fused = res.metrics["fused"]
    best = res.metrics[res.best_single]
    lines = [
        f"modalities: {', '.join(res.modalities)}  ·  retrievers: {len(res.singles)}  ·  fusion: {res.fusion}",
        f"fused R@1 [bold]{100 * fused['R@1']:.1f}%[/]  vs best single ({res.best_single}) {100 * best['R@1']:.1f}%  "
        f"→ [bold green]{100 * res.gain['R@1']:+.1f}[/] points; nDCG@10 {100 * fused['nDCG@10']:.1f} "
        f"({100 * res.gain['nDCG@10']:+.1f})",
    ]
    if res.reranked:
        lines.append(f"reranked R@1 {100 * res.metrics['reranked']['R@1']:.1f}%  ·  {res.rerank_summary}")
    idx = "reused" if res.index_stats.get("reused") else f"built in {res.timings.get('index', 0):.0f} s"
    lines.append(f"index {res.index} ({idx})  ·  total {res.timings.get('total', 0):.0f} s")
    lines.append(f"report: [bold]{res.report}[/]  (open it in a browser)")
    console.print(Panel("\n".join(lines), title=f"mmfuse demo: {final} ranking", expand=False), highlight=False)


# --- end pipeline commands ----------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning MmfuseError into one red line and a non-zero exit."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = app(args=argv, standalone_mode=False)
        # In non-standalone mode click returns typer.Exit's code instead of raising it.
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
    except MmfuseError as e:
        if debug:
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:  # raised by commands that decide the exit code themselves
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
