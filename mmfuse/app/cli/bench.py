"""``mmfuse bench``: sweeps of fusion methods over datasets, with tables, a JSON file, a report and plots."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from mmfuse.benchmarks import report as rep
from mmfuse.benchmarks.datasets import CANDIDATES, dataset_files, load_datasets
from mmfuse.benchmarks.plots import plot_all
from mmfuse.benchmarks.sweep import SUBSET_MODES, run_benchmark
from mmfuse.errors import InputError
from mmfuse.fusion import get_method
from mmfuse.utils.files import check_writable, refuse_input_overwrite

from .args import Checked, Choice, Csv, Int
from .common import FRACTIONS, app, console, err_console, legend, narrow_table, progress_bar, short_names, warn

BENCH_UNITS = (f"R@k: queries with a relevant item in the top k ({FRACTIONS}); MdR/MnR: median/mean rank of the "
               "first relevant item; ms/q: fusion milliseconds per query")


@app.command("bench")
def bench_cmd(
    datasets: list[str] = typer.Argument(..., help="Dataset directories: .npy score matrices + CSV (or the ViC release: Similarity_Matrices/ + Groud_Truth/), or qrels + run files."),
    names: Optional[str] = typer.Option(None, "--dataset", parser=Csv(),
                                        help="Comma-separated datasets to take from a ViC release (default: every one with matrices and a CSV)."),
    methods: Optional[str] = typer.Option(None, "--methods", parser=Csv(Checked(get_method)),
                                          help="Comma-separated fusion methods (default: the default grid)."),
    retrievers: Optional[str] = typer.Option(None, "--retrievers", parser=Csv(),
                                             help="Comma-separated retriever names to use (default: all)."),
    subsets: str = typer.Option("every", "--subsets", parser=Choice(SUBSET_MODES),
                                help="Retriever subsets to fuse: all, singles, pairs or every."),
    tune_on: Optional[str] = typer.Option(None, "--tune-on", help="Dataset (its directory name, or a ViC release dataset such as msrvtt) whose best parameters are applied unchanged to the others."),
    mode: str = typer.Option("t2v", "--mode", parser=Choice(("t2v", "v2t")),
                             help="t2v (text queries) or v2t (transposed matrices)."),
    candidates: str = typer.Option("all", "--candidates", parser=Choice(CANDIDATES),
                                   help="Zero-filled matrix entries: 'all' (every column a candidate, the ViC protocol) or 'real' (only real candidates)."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write the results JSON here."),
    report: Optional[str] = typer.Option(None, "--report", help="Write the Markdown report here."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Write PNG plots into this directory."),
    top: int = typer.Option(20, "--top", parser=Int(min=1), help="Rows of the results table printed (the report lists all)."),
    workers: Optional[int] = typer.Option(None, "--workers", parser=Int(min=1),
                                          help="Processes for the sweep (default: up to 2)."),
    force: bool = typer.Option(False, "--force", help="Allow --json/--report to replace a file of a dataset."),
) -> None:
    """Benchmark fusion methods x normalizations x parameters x retriever subsets on datasets."""
    # every output is checked before the sweep, which can take a long time
    inputs = [f for d in datasets for f in dataset_files(d)]
    for out in (json_out, report):
        if out:
            check_writable(out)
            refuse_input_overwrite(out, inputs, force)
    if json_out and report and Path(json_out).resolve() == Path(report).resolve():
        raise InputError(f"{report}: given for both --json and --report; give two file names")
    if plots:
        check_writable(plots, folder=True)
    loaded = load_datasets(datasets, mode=mode, candidates=candidates, retrievers=retrievers, names=names)
    for d in loaded:
        for name, n in d.matched_queries().items():
            if n < d.n_queries:
                warn(f"{d.name}: run {name} answers {n} of the {d.n_queries} qrels queries; the others count as "
                     f"empty lists" + (" (do the query ids match?)" if n == 0 else ""))
    with progress_bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn()) as bar:
        task = bar.add_task("sweep", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(label[:60]))

        results = run_benchmark(loaded, methods=methods, subset_mode=subsets, tune_on=tune_on, progress=progress,
                                workers=workers)
    n_q = {d.name: d.n_queries for d in loaded}
    for d in loaded:
        res = sorted(results[d.name], key=lambda r: (-r.metrics["R@1"], r.ms_per_query))
        codes = short_names(d.retrievers)
        table = narrow_table(escape(f"{d.name}: {d.n_queries} queries, {mode}, candidates={d.candidates}; "
                                    f"top {min(top, len(res))} of {len(res)} by R@1"),
                             escape(f"retrievers: {legend(codes)}\n{BENCH_UNITS}"))
        table.add_column("configuration", overflow="fold")
        table.add_column("subset", overflow="fold")
        for col in ("R@1", "R@5", "R@10", "MdR", "MnR", "ms/q"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in res[:top]:
            m = r.metrics
            lab = rep.label(r) + (" (default)" if rep.is_default(r) else "") + (f" (tuned on {r.tuned_on})" if r.tuned_on else "")
            table.add_row(escape(lab), escape("+".join(codes[x] for x in r.config.retrievers)), f"{m['R@1']:.3f}",
                          f"{m['R@5']:.3f}", f"{m['R@10']:.3f}", f"{m['MdR']:g}", f"{m['MnR']:.1f}",
                          f"{r.ms_per_query:.3f}")
        console.print(table)
    if json_out:
        rep.write_json(json_out, results, n_q)
        err_console.print(f"wrote {escape(json_out)}", highlight=False)
    figs = {}
    if plots:
        figs = {d.name: plot_all(d.name, results[d.name], plots) for d in loaded}
        err_console.print(f"wrote plots to {escape(plots)}", highlight=False)
    if report:
        cmd = "mmfuse bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
        rep.write_report(report, results, loaded, command=cmd, plots=figs, plots_dir=plots)
        err_console.print(f"wrote {escape(report)}", highlight=False)
