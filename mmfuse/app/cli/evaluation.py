"""Evaluation commands: ``mmfuse eval``."""

from __future__ import annotations

from typing import Optional

import typer

from .common import app, console


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
