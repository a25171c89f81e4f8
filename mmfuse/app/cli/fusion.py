"""Fusion commands: ``mmfuse fuse`` and ``mmfuse methods``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mmfuse.errors import InputError, ParameterError
from mmfuse.fusion import default_method, fuse, get_method, methods
from mmfuse.fusion.align import RANKS
from mmfuse.fusion.norm import NORMS, norm_name
from mmfuse.fusion.registry import Method
from mmfuse.fusion.streaming import fuse_stream
from mmfuse.runs import FORMATS, Run
from mmfuse.utils.files import check_writable, refuse_input_overwrite

from .args import Checked, Choice, Float, Int, KeyValue, Numbers, Word
from .common import app, console, err_console, narrow_table, warn

DUPLICATES = ("error", "max", "first")
NO_SHARED_QUERY = ("the runs share no query id: each query is fused over the runs that have it (check that the files "
                   "use the same query ids)")


@app.command("fuse")
def fuse_cmd(
    runs: list[str] = typer.Argument(..., help="Run files: TREC, Parquet or JSON (format from the extension)."),
    runs_flag: bool = typer.Option(False, "--runs",
                                   help="pyserini's spelling: `--runs A B ...` is the same as the RUNS arguments."),
    output: str = typer.Option(..., "-o", "--output", help="Output file; .parquet/.json by extension, else TREC."),
    method: Optional[str] = typer.Option(None, "--method", "-m", parser=Checked(get_method),
                                         help="Fusion method (see `mmfuse methods`); default: the library default."),
    norm: Optional[str] = typer.Option(None, "--norm", parser=Checked(norm_name),
                                       help="Normalization: none, min-max, zmuv, sum, max, rank, borda, softmax."),
    weights: Optional[str] = typer.Option(None, "--weights", parser=Numbers(),
                                          help="One weight per run, comma-separated (weighted methods)."),
    k: Optional[int] = typer.Option(None, "--k", parser=Int(min=1),
                                    help="Results per query written (pyserini's --k); default: --depth."),
    depth: int = typer.Option(1000, "--depth", parser=Int(min=1),
                              help="Entries of each input run used, per query (pyserini's --depth)."),
    rrf_k: Optional[float] = typer.Option(None, "--rrf-k", "--rrf.k", parser=Float(min=0),
                                          help="RRF's constant k (pyserini's --rrf.k; same as --param k=VALUE)."),
    param: list[str] = typer.Option([], "--param", parser=KeyValue(),
                                    help="Method parameter name=value (repeatable); norm_temperature=T for softmax."),
    fmt: Optional[str] = typer.Option(None, "--format", parser=Choice(FORMATS),
                                      help="Force the input format: trec, parquet or json."),
    on_duplicate: str = typer.Option("error", "--on-duplicate", parser=Choice(DUPLICATES),
                                     help="Repeated (query, doc) in a run: error, max or first."),
    tag: Optional[str] = typer.Option(None, "--tag", "--runtag", parser=Word(),
                                      help="Run tag written in TREC output (default: the method name)."),
    ranks: str = typer.Option("input", "--ranks", parser=Choice(RANKS),
                              help="Ranks of rank-based methods: input (a TREC file's line order, as pyserini) or "
                                   "score (score desc, then doc id desc, as trec_eval); they differ only within ties."),
    stream: bool = typer.Option(False, "--stream", help="Parquet runs larger than memory: fuse block by block."),
    block_rows: int = typer.Option(1_000_000, "--block-rows", parser=Int(min=1),
                                   help="With --stream: rows per block (bounds memory)."),
    force: bool = typer.Option(False, "--force", help="Allow the output to replace one of the input runs."),
) -> None:
    """Fuse several runs into one and write it: the top --depth of each run in, the top --k per query out."""
    params = dict(param)
    if rrf_k is not None:
        _check_rrf_k(method, rrf_k, params.get("k"))
        params["k"] = str(rrf_k)
    out_depth = depth if k is None else k
    check_writable(output)
    refuse_input_overwrite(output, runs, force)
    out = Path(output)
    if stream:
        if out_depth != depth:
            raise ParameterError(f"--k {k} with --stream: the streamed output keeps the top --depth ({depth}) of each "
                                 "query; give --depth alone, or fuse in memory (without --stream)")
        stats = fuse_stream(runs, out, method=method, norm=norm, weights=weights, depth=depth, block_rows=block_rows,
                            on_duplicate=on_duplicate, force=force, **params)
        if len(runs) > 1 and stats.get("shared_queries") == 0:
            warn(NO_SHARED_QUERY)
        err_console.print(f"fused {len(runs)} runs block by block -> {out} "
                          + ", ".join(f"{k}={v}" for k, v in stats.items() if isinstance(v, (int, float, str))),
                          highlight=False)
        return
    loaded = [Run.read(p, format=fmt, name=Path(p).stem, on_duplicate=on_duplicate) for p in runs]
    for p, r in zip(runs, loaded):
        if len(r) == 0:
            raise InputError(f"{p}: empty run (no entries)")
    common = set.intersection(*(set(r.query_ids.tolist()) for r in loaded))
    if len(loaded) > 1 and not common:
        warn(NO_SHARED_QUERY)
    if out_depth <= depth:
        fused = fuse(loaded, method=method, norm=norm, weights=weights, depth=depth, ranks=ranks, **params)
    else:
        # fuse(depth=D) cuts the inputs and the fused lists at D; for more results than --depth the inputs are cut
        # here, in the order fuse would cut them (input order only where ranks are read), as pyserini does
        m = get_method(method)
        by = ranks if m.kind == "rank" or norm_name(norm or m.default_norm or "none") in ("rank", "borda") else "score"
        fused = fuse([r.cut(depth, by=by) for r in loaded], method=method, norm=norm, weights=weights,
                     depth=out_depth, ranks=ranks, **params)
    fused = fused.cut(out_depth)
    try:
        fused.write(out, tag=tag or fused.name)
    except OSError as e:
        raise InputError(f"{out}: cannot write: {e.strerror or e}") from None
    err_console.print(f"fused {len(loaded)} runs with {fused.name}: {fused.n_queries} queries, {len(fused)} entries -> {out}",
                      highlight=False)


def _check_rrf_k(method: Optional[str], rrf_k: float, param_k: Optional[str]) -> None:
    """--rrf-k names parameter k of the method; --param k= may name it too, but not differently."""
    m = get_method(method)
    if not any(p.name == "k" for p in m.params):
        raise ParameterError(f"--rrf-k: method {m.name!r} has no constant k; it goes with --method rrf")
    if param_k is not None:
        try:
            same = float(param_k) == rrf_k
        except ValueError:
            same = False
        if not same:
            raise ParameterError(f"--rrf-k {rrf_k:g} and --param k={param_k} both set RRF's k; give one of them")


@app.command("methods")
def methods_cmd(
    name: Optional[str] = typer.Argument(None, parser=Checked(get_method),
                                         help="A method (or alias): print its parameters, defaults and aliases."),
) -> None:
    """List the fusion methods; `mmfuse methods NAME` prints one method's details."""
    default = default_method()
    if name is not None:
        _method_details(get_method(name), default)
        return
    table = narrow_table("fusion methods")
    table.add_column("method", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("summary", overflow="fold")
    for n, m in methods().items():
        table.add_row(n + (" *" if n == default else ""), m.kind, escape(m.doc))
    console.print(table)
    console.print("* the default.  `mmfuse methods NAME`: parameters, aliases, normalization, ranx name.",
                  highlight=False)


def _method_details(m: Method, default: str) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("method", m.name + ("  (the default)" if m.name == default else ""))
    grid.add_row("kind", m.kind + ("; transductive: scores depend on the whole query batch" if m.transductive else ""))
    grid.add_row("about", escape(m.doc))
    grid.add_row("aliases", ", ".join(m.aliases) or "-")
    grid.add_row("norm", f"{m.default_norm or 'none'} by default" +
                 ("; ranks only (--norm none)" if m.kind == "rank" else f"; any of {', '.join(NORMS)}"))
    grid.add_row("weights", "one per run (--weights)" if m.weighted else "-")
    grid.add_row("ranx", m.ranx or "-")
    console.print(grid)
    if m.params:
        params = narrow_table("parameters (--param NAME=VALUE)")
        params.add_column("name", no_wrap=True)
        params.add_column("default", no_wrap=True)
        params.add_column("type", no_wrap=True)
        params.add_column("meaning", overflow="fold")
        for p in m.params:
            params.add_row(p.name, repr(p.default), p.type.__name__, escape(p.doc))
        console.print(params)
