"""``mmfuse bench``: sweeps of fusion methods over datasets, with tables, a JSON file, a report and plots."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from .common import app, console, err_console


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
