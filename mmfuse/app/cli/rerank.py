"""Reranking commands: ``mmfuse rerank`` (a VLM over S-Grids) and ``mmfuse grid`` (look at one S-Grid)."""

from __future__ import annotations

import json
from pathlib import Path
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

from mmfuse.errors import BackendError, InputError, ParameterError
from mmfuse.rerankers import build_reranker, load_mapping, load_queries
from mmfuse.rerankers.backends.base import MODES
from mmfuse.rerankers.build import BACKEND_OPTIONS
from mmfuse.rerankers.grid import SAMPLINGS, GridSpec, build_grid, default_cache_dir, draw_label, parse_cell, parse_grid
from mmfuse.rerankers.reranker import index_videos
from mmfuse.runs import Run
from mmfuse.utils.files import atomic_path, atomic_write, check_writable, refuse_input_overwrite

from .args import Checked, Choice, Float, Int, Word
from .common import app, config_defaults, console, err_console, progress_bar, required, warn

DTYPES = ("auto", "float32", "bfloat16", "float16")


@app.command("rerank")
def rerank_cmd(
    ctx: typer.Context,
    runs: list[str] = typer.Argument(..., help="Run file(s) (TREC/Parquet/JSON). Several runs: ViC fusion of their union."),
    queries: str = typer.Option(..., "--queries", help="Query texts: TSV 'qid<TAB>text' or JSON {qid: text}."),
    videos: Optional[str] = typer.Option(None, "--videos", help="Folder of videos named <doc id>.<ext>."),
    mapping: Optional[str] = typer.Option(None, "--mapping", help="doc id -> video path (TSV or JSON), instead of or on top of --videos."),
    subtitles: Optional[str] = typer.Option(None, "--subtitles", help="JSON [{video_id, subtitle}] or {video_id: text}."),
    subtitle_tokens: int = typer.Option(64, "--subtitle-tokens", parser=Int(min=0),
                                        help="Token budget per candidate's subtitles."),
    backend: Optional[str] = typer.Option(None, "--backend", parser=Choice(BACKEND_OPTIONS), help="transformers | openai"),
    model: Optional[str] = typer.Option(None, "--model", help="Hub name / local dir (transformers) or served model name (openai)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (env OPENAI_BASE_URL)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key (env OPENAI_API_KEY)."),
    mode: str = typer.Option("listwise", "--mode", parser=Choice(MODES),
                             help="listwise | pointwise (P('yes') from logits/logprobs)."),
    template: Optional[str] = typer.Option(None, "--template", help="Prompt template file (see mmfuse/rerankers/templates)."),
    top: int = typer.Option(20, "--top", parser=Int(min=1), help="Rerank this many candidates per query; the tail keeps its order."),
    window: int = typer.Option(20, "--window", parser=Int(min=2), help="Candidates per model call."),
    step: int = typer.Option(10, "--step", parser=Int(min=1), help="Sliding-window step when --top > --window."),
    grid: str = typer.Option("2x2", "--grid", parser=Checked(parse_grid), help="Frames per S-Grid as ROWSxCOLS."),
    cell: str = typer.Option("224", "--cell", parser=Checked(parse_cell), help="Cell size in pixels: N or WxH."),
    sampling: str = typer.Option("uniform", "--sampling", parser=Choice(SAMPLINGS),
                                 help="uniform | scene (one frame per detected shot)."),
    evidence_run: list[str] = typer.Option([], "--evidence-run", help="First-stage run whose ranks the model sees (repeatable)."),
    depth: Optional[int] = typer.Option(None, "--depth", parser=Int(min=1),
                                        help="Fusion mode: interleave this many entries of each run."),
    device: str = typer.Option("auto", "--device", help="transformers: auto | cpu | cuda | cuda:1 | mps."),
    dtype: str = typer.Option("auto", "--dtype", parser=Choice(DTYPES), help="transformers: auto | float32 | bfloat16 | float16."),
    query_batch: int = typer.Option(1, "--query-batch", parser=Int(min=1),
                                    help="transformers: queries generated together (single window)."),
    batch_size: int = typer.Option(8, "--batch-size", parser=Int(min=1),
                                   help="transformers: pointwise prompts per forward pass."),
    timeout: float = typer.Option(120.0, "--timeout", parser=Float(min=0, open_min=True), help="openai: seconds per request."),
    retries: int = typer.Option(2, "--retries", parser=Int(min=0), help="openai: retries on timeouts, 429 and 5xx."),
    concurrency: int = typer.Option(4, "--concurrency", parser=Int(min=1), help="openai: requests in flight at once."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Grid cache (default ~/.cache/mmfuse/grids; '' = none)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.partial.jsonl left by an interrupted run."),
    keep_order_on_failure: bool = typer.Option(
        False, "--keep-order-on-failure",
        help="Write the output even when every query failed (their incoming order); default: write nothing, exit 2."),
    stats: Optional[str] = typer.Option(None, "--stats", help="Write rerank and parse statistics as JSON here."),
    output: str = typer.Option(..., "-o", "--output", help="Output run (format from the extension; TREC by default)."),
    tag: Optional[str] = typer.Option(None, "--tag", parser=Word(), help="Run tag written in TREC output."),
    force: bool = typer.Option(False, "--force", help="Allow -o/--stats to replace one of the input files."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`); flags override it."),
) -> None:
    """Rerank existing result lists with a vision-language model over S-Grids of the top candidates."""
    v = config_defaults(ctx, "rerank", locals())
    backend = required(v["backend"], "--backend", "[rerank] backend")
    model, base_url, top, window, step, grid, cell, cache_dir, mode = (
        v[n] for n in ("model", "base_url", "top", "window", "step", "grid", "cell", "cache_dir", "mode"))
    if videos is None and mapping is None:
        raise ParameterError("give --videos DIR and/or --mapping FILE so candidates can be found")
    inputs = [*runs, *evidence_run, queries, *(p for p in (mapping, subtitles, template) if p)]
    for out in (output, stats):
        if out:
            check_writable(out)
            refuse_input_overwrite(out, inputs, force)
    if stats and Path(stats).resolve() == Path(output).resolve():
        raise InputError(f"{stats}: given for both -o and --stats; give two file names")
    paths = {}
    if videos is not None:
        paths.update(index_videos(videos))
    if mapping is not None:
        paths.update(load_mapping(mapping))
    texts = load_queries(queries)
    in_runs = [Run.read(r) for r in runs]
    ev_runs = [Run.read(r) for r in evidence_run]
    if cache_dir is None:
        cache_dir = default_cache_dir()
    with err_console.status(f"loading {backend} backend {escape(model or '')}"):
        rr = build_reranker(backend, model, mode=mode, template=template, top=top, window=window, step=step,
                            grid=grid, cell=cell, sampling=sampling, subtitles=subtitles,
                            subtitle_tokens=subtitle_tokens, cache_dir=cache_dir or None,  # "" = in memory only
                            device=device, dtype=dtype, query_batch=query_batch, batch_size=batch_size,
                            base_url=base_url, api_key=api_key, timeout=timeout, retries=retries,
                            concurrency=concurrency)
    out_path = Path(output)
    checkpoint = out_path.with_name(out_path.name + ".partial.jsonl")
    if resume and not checkpoint.exists():
        err_console.print(f"[yellow]note:[/] no {escape(str(checkpoint))} to resume from; starting from scratch")
    bar = progress_bar(TextColumn("[bold]reranking"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[label]}"))
    with bar:
        task = bar.add_task("rerank", total=None, label="")

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, label=escape(label))

        if len(in_runs) > 1:
            result = rr.rerank_fusion(texts, in_runs, paths, depth=depth, names=[Path(r).stem for r in runs],
                                      progress=progress, checkpoint=checkpoint, resume=resume)
        else:
            result = rr.rerank(texts, in_runs[0], paths, retriever_runs=ev_runs or None, progress=progress,
                               checkpoint=checkpoint, resume=resume)
    st = rr.stats
    if stats:
        with atomic_write(stats) as fh:
            json.dump(st.as_dict(), fh, indent=2)
    all_failed = st.failed > 0 and st.failed == st.queries - st.resumed
    if all_failed and not keep_order_on_failure:
        # nothing was reranked this time: writing the incoming order under a reranked name would pass for a result,
        # and dropping the checkpoint would lose what --resume can still continue from
        raise BackendError(f"every query failed (first error: {st.failures[0][1]}); nothing written to {out_path}; "
                           f"fix the cause and run again with --resume (or pass --keep-order-on-failure)")
    result.write(out_path, tag=tag)
    checkpoint.unlink(missing_ok=True)
    table = Table(title=escape(f"rerank -> {out_path}"), show_header=False)
    for k, val in [("queries", st.queries), ("reranked", st.reranked), ("resumed", st.resumed),
                   ("kept in incoming order (errors)", st.failed), ("model calls", st.model_calls),
                   ("model seconds", f"{st.model_seconds:.1f}"),
                   ("grid seconds", f"{st.grid_seconds:.1f} ({st.grid_hits} cached, {st.grid_misses} built)"),
                   ("answers clean / repaired / unparseable",
                    f"{st.parse.clean} / {st.parse.repaired} / {st.parse.failed}"),
                   ("missing or unreadable videos", len(st.missing_videos))]:
        table.add_row(k, str(val))
    console.print(table)
    for qid, why in st.failures[:5]:
        warn(f"query {qid} kept its incoming order: {why}")
    if len(st.failures) > 5:
        warn(f"... and {len(st.failures) - 5} more (see --stats)")
    if st.missing_videos:
        some = ", ".join(sorted(st.missing_videos)[:5])
        err_console.print(f"[yellow]note:[/] placeholder grids for {len(st.missing_videos)} candidates "
                          f"({escape(some)} ...)")


@app.command("grid")
def grid_cmd(
    video: str = typer.Argument(..., help="A video file."),
    output: str = typer.Option(..., "-o", "--output", help="Image file to write (PNG/JPEG by extension)."),
    grid: str = typer.Option("2x2", "--grid", parser=Checked(parse_grid), help="ROWSxCOLS."),
    cell: str = typer.Option("224", "--cell", parser=Checked(parse_cell), help="Cell size in pixels: N or WxH."),
    sampling: str = typer.Option("uniform", "--sampling", parser=Choice(SAMPLINGS), help="uniform | scene."),
    label: Optional[str] = typer.Option(None, "--label", help="Draw this label, e.g. 3 -> [3]."),
    force: bool = typer.Option(False, "--force", help="Allow the output to replace the video."),
) -> None:
    """Write the S-Grid the reranker would show a model for VIDEO, for a person to look at."""
    rows, cols = parse_grid(grid)
    spec = GridSpec(rows=rows, cols=cols, cell=parse_cell(cell), sampling=sampling)  # size limits: before decoding
    if not Path(video).is_file():
        raise InputError(f"{video}: no such file")
    check_writable(output)
    refuse_input_overwrite(output, [video], force)
    img = build_grid(video, spec)
    if label is not None:
        img = draw_label(img, f"[{label}]")
    out = Path(output)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
    with atomic_path(out) as tmp:
        img.save(tmp, format=fmt)
    console.print(f"wrote {escape(str(out))} ({img.width}x{img.height}, {rows}x{cols} frames)", highlight=False)
