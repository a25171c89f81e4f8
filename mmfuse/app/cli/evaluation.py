"""Evaluation commands: ``mmfuse eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mmfuse.eval.metrics import evaluate, parse_metric
from mmfuse.runs import FORMATS, Qrels, Run
from mmfuse.utils.files import distinct_names

from .args import Checked, Choice, Csv
from .common import app, console, warn


@app.command("eval")
def eval_cmd(
    qrels: str = typer.Argument(..., help="Qrels file (TREC, Parquet or JSON)."),
    runs: list[str] = typer.Argument(..., help="Run files to evaluate."),
    metrics: str = typer.Option("ndcg@10,recall@100,mrr@10,map", "--metrics", parser=Csv(Checked(parse_metric)),
                                help="Comma-separated ranx metric names."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    fmt: Optional[str] = typer.Option(None, "--format", parser=Choice(FORMATS),
                                      help="Force the run format: trec, parquet or json."),
) -> None:
    """Evaluate runs against qrels (ranx metric names); runs of the same file name are told apart by folder."""
    q = Qrels.read(qrels)
    results = {}
    for p, name in zip(runs, distinct_names(runs)):
        res = evaluate(q, Run.read(p, format=fmt, name=Path(p).stem), metrics)
        if res.matched < res.queries:
            warn(f"{name}: answers {res.matched} of the {res.queries} queries in {qrels}; the others count as "
                 f"empty lists" + (" (do the query ids match?)" if res.matched == 0 else ""))
        results[name] = {m: float(v) for m, v in res.items()}
    if as_json:
        console.print_json(json.dumps(results))
        return
    table = Table(title=escape(Path(qrels).name))
    table.add_column("run")
    for m in metrics:
        table.add_column(m, justify="right")
    for run_name, vals in results.items():
        table.add_row(escape(run_name), *(f"{vals[m]:.4f}" for m in metrics))
    console.print(table)
