"""Evaluation commands: ``mmfuse eval`` (metrics of runs, as trec_eval or ranx print them) and ``mmfuse compare``
(paired significance tests of runs against the first one, as ``ranx.compare``).

Metric names are ranx's or trec_eval's (:func:`mmfuse.eval.metrics.parse_metric`); each is printed under the name
the user gave. Values are fractions of 1 in every output, as trec_eval and ranx print them (see
:data:`.common.FRACTIONS`). Queries are listed in natural order (``q2`` before ``q10``), the mean last as ``all``.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from mmfuse.errors import ParameterError
from mmfuse.eval.metrics import Evaluation, evaluate, parse_metric
from mmfuse.eval.significance import compare
from mmfuse.runs import FORMATS, Qrels, Run
from mmfuse.runs.ids import natural_order
from mmfuse.utils.files import distinct_names

from .args import Checked, Choice, Csv, Float, Int
from .common import FRACTIONS, app, console, narrow_table, warn

EVAL_FORMATS = ("table", "trec_eval", "json", "csv")
COMPARE_FORMATS = ("table", "json", "csv")
TESTS = {"t": "student", "student": "student", "fisher": "fisher"}
DEFAULT_METRICS = "ndcg@10,recall@100,mrr@10,map"
_TREC_DOT = re.compile(r"^([A-Za-z_]+)\.([0-9]+)")


def _metrics_option(default: str = DEFAULT_METRICS):
    return typer.Option([default], "--metrics", "-m", parser=Csv(Checked(parse_metric)),
                        help="Comma-separated metrics (repeatable), ranx or trec_eval names: ndcg@10, P_10, P@10, "
                             "recall_100, ndcg_cut_10, map, recip_rank, success_1, Rprec ...")


def _flat(metrics: list) -> list[str]:
    """``-m a,b -m c`` -> [a, b, c] without repeats (each value of a repeatable Csv option is a list); trec_eval's
    ``-m`` spelling ``P.10`` is printed as trec_eval prints it, ``P_10``."""
    names = (m for group in metrics for m in (group if isinstance(group, list) else [group]))
    return list(dict.fromkeys(_TREC_DOT.sub(r"\1_\2", m) for m in names))


def _read_runs(qrels: Qrels, qrels_path: str, runs: list[str], fmt: Optional[str]) -> list[Run]:
    loaded = [Run.read(p, format=fmt, name=name) for p, name in zip(runs, distinct_names(runs))]
    for r in loaded:
        answered = len(set(r.query_ids.tolist()) & set(qrels.query_ids.tolist()))
        if answered < qrels.n_queries:
            warn(f"{r.name}: answers {answered} of the {qrels.n_queries} queries in {qrels_path}; the others count as "
                 f"empty lists" + (" (do the query ids match?)" if answered == 0 else ""))
    return loaded


@app.command("eval")
def eval_cmd(
    qrels: str = typer.Argument(..., help="Qrels file (TREC, Parquet or JSON)."),
    runs: list[str] = typer.Argument(..., help="Run files to evaluate."),
    metrics: list[str] = _metrics_option(),
    per_query: bool = typer.Option(False, "-q", "--per-query",
                                   help="Also print every query's values (as trec_eval -q)."),
    out_format: str = typer.Option("table", "--format", parser=Choice(EVAL_FORMATS),
                                   help="table, trec_eval (metric<TAB>query<TAB>value lines), json or csv."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    run_format: Optional[str] = typer.Option(None, "--run-format", parser=Choice(FORMATS),
                                             help="Force the run format: trec, parquet or json."),
) -> None:
    """Evaluate runs against qrels with ranx's or trec_eval's metric names.

    Every qrels query counts (as trec_eval -c); runs of the same file name are told apart by folder."""
    fmt = _one_format(out_format, as_json)
    names = _flat(metrics)
    q = Qrels.read(qrels)
    results = {r.name: evaluate(q, r, names, per_query=True) for r in _read_runs(q, qrels, runs, run_format)}
    if fmt == "trec_eval":
        _print_trec_eval(results, names, per_query)
    elif fmt == "json":
        typer.echo(json.dumps({run: _json_entry(ev, names, per_query) for run, ev in results.items()}, indent=1))
    elif fmt == "csv":
        rows = [[run, qid, *vals] for run, ev in results.items() for qid, vals in _rows(ev, names, per_query)]
        _print_csv(["run", "query", *names], rows)
    elif per_query:
        for run, ev in results.items():
            table = _table(f"{run} on {Path(qrels).name}: per query", "query", names)
            rows = _rows(ev, names, True)
            for i, (qid, vals) in enumerate(rows):
                if i == len(rows) - 1:
                    table.add_section()
                table.add_row(escape(qid), *(f"{v:.4f}" for v in vals))
            console.print(table)
    else:
        table = _table(f"{Path(qrels).name}: means over {q.n_queries} queries", "run", names)
        for run, ev in results.items():
            table.add_row(escape(run), *(f"{float(ev[m].mean()):.4f}" for m in names))
        console.print(table)


def _one_format(out_format: str, as_json: bool) -> str:
    if as_json and out_format not in ("table", "json"):
        raise ParameterError(f"--json and --format {out_format} ask for two formats; give one of them")
    return "json" if as_json else out_format


def _rows(ev: Evaluation, names: list[str], per_query: bool) -> list[tuple[str, list[float]]]:
    """(query id, values) per query in natural order (with ``per_query``), then ("all", means)."""
    rows = []
    if per_query:
        ids = ev.query_ids
        rows = [(ids[i], [float(ev[m][i]) for m in names]) for i in natural_order(ids)]
    return rows + [("all", [float(ev[m].mean()) for m in names])]


def _json_entry(ev: Evaluation, names: list[str], per_query: bool) -> dict:
    means = {m: float(ev[m].mean()) for m in names}
    if not per_query:
        return means
    return {"all": means, "per_query": {qid: dict(zip(names, vals)) for qid, vals in _rows(ev, names, True)[:-1]}}


def _print_trec_eval(results: dict[str, Evaluation], names: list[str], per_query: bool) -> None:
    """trec_eval's layout (``%-22s\\t%s\\t%6.4f``): per run a ``runid`` line, with -q every query's measures, then
    the means under ``all``."""
    out = []
    for run, ev in results.items():
        out.append(f"{'runid':<22}\tall\t{run}")
        rows = _rows(ev, names, per_query)
        for qid, vals in rows:
            out += [f"{m:<22}\t{qid}\t{v:6.4f}" for m, v in zip(names, vals)]
    typer.echo("\n".join(out))


def _print_csv(header: list[str], rows: list[list]) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)


def _table(title: str, first: str, names: list[str]):
    table = narrow_table(escape(title), FRACTIONS)
    table.add_column(first, overflow="fold")
    for m in names:
        table.add_column(escape(m), justify="right", no_wrap=True)
    return table


@app.command("compare")
def compare_cmd(
    qrels: str = typer.Argument(..., help="Qrels file (TREC, Parquet or JSON)."),
    runs: list[str] = typer.Argument(..., help="Run files; the first is the baseline the others are tested against."),
    metrics: list[str] = _metrics_option("ndcg@10,map"),
    test: str = typer.Option("t", "--test", parser=Choice(TESTS),
                             help="Paired test: t (Student's t-test, ranx's default) or fisher (randomization)."),
    max_p: float = typer.Option(0.01, "--max-p", parser=Float(min=0, max=1, open_min=True),
                                help="Significance level (ranx.compare's default 0.01)."),
    permutations: int = typer.Option(10000, "--permutations", parser=Int(min=1, max=10_000_000),
                                     help="Fisher: random permutations."),
    seed: int = typer.Option(42, "--seed", parser=Int(min=0, max=2**32 - 1), help="Fisher: random seed."),
    out_format: str = typer.Option("table", "--format", parser=Choice(COMPARE_FORMATS), help="table, json or csv."),
    run_format: Optional[str] = typer.Option(None, "--run-format", parser=Choice(FORMATS),
                                             help="Force the run format: trec, parquet or json."),
) -> None:
    """Compare runs on qrels with a paired significance test of each run against the first (as ranx.compare)."""
    names = _flat(metrics)
    if len(runs) < 2:
        raise ParameterError("compare needs at least two runs: the baseline first, then the runs to test against it")
    q = Qrels.read(qrels)
    loaded = _read_runs(q, qrels, runs, run_format)
    res = compare(q, loaded, names, test=TESTS[test], n_permutations=permutations, max_p=max_p, seed=seed)
    base = loaded[0].name
    if out_format == "json":
        doc = {"baseline": base, "test": TESTS[test], "max_p": max_p, "runs": res}
        if TESTS[test] == "fisher":
            doc.update(permutations=permutations, seed=seed)
        typer.echo(json.dumps(doc, indent=1))
        return
    if out_format == "csv":
        _print_csv(["run", "metric", "mean", "p_value", "significant"],
                   [[run, m, e["mean"], "" if e["p_value"] is None else e["p_value"],
                     "" if e["significant"] is None else str(e["significant"]).lower()]
                    for run, per in res.items() for m, e in per.items()])
        return
    how = "paired t-test" if TESTS[test] == "student" else f"Fisher randomization, {permutations} permutations"
    table = _table(f"{Path(qrels).name}: {len(runs) - 1} runs against {base} ({how})", "run", names)
    table.caption = (f"{FRACTIONS}. p: two-sided p-value against {escape(base)}; * p <= {max_p:g}, "
                     "+ / - better / worse than it")
    for run, per in res.items():
        table.add_row(escape(run), *(_compare_cell(per[m], res[base][m]["mean"]) for m in names))
    console.print(table)


def _compare_cell(e: dict, baseline: float) -> str:
    if e["p_value"] is None:
        return f"{e['mean']:.4f}\nbaseline"
    mark = (" *" + ("+" if e["mean"] > baseline else "-")) if e["significant"] else ""
    return f"{e['mean']:.4f}\np={e['p_value']:.3g}{mark}"
