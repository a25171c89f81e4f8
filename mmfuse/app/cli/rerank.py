"""Reranking commands: ``mmfuse rerank`` (a VLM over S-Grids) and ``mmfuse grid`` (look at one S-Grid)."""

from __future__ import annotations

from typing import Optional

import typer

from .common import app, config_defaults, console, err_console, required


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

    v = config_defaults(ctx, "rerank", locals())
    backend = required(v["backend"], "--backend", "[rerank] backend")
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
