"""Fusion commands: ``mmfuse fuse`` and ``mmfuse methods``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mmfuse.errors import InputError, ParameterError
from mmfuse.fusion import default_method, fuse, get_method, methods
from mmfuse.fusion.align import RANKS
from mmfuse.fusion.norm import norm_name
from mmfuse.fusion.streaming import fuse_stream
from mmfuse.runs import FORMATS, Run
from mmfuse.utils.files import check_writable, refuse_input_overwrite

from .args import Checked, Choice, Float, Int, KeyValue, Numbers, Word
from .common import app, console, err_console, warn

DUPLICATES = ("error", "max", "first")
NO_SHARED_QUERY = ("the runs share no query id: each query is fused over the runs that have it (check that the files "
                   "use the same query ids)")


@app.command("fuse")
def fuse_cmd(
    runs: list[str] = typer.Argument(..., help="Run files: TREC, Parquet or JSON (format from the extension)."),
    output: str = typer.Option(..., "-o", "--output", help="Output file; .parquet/.json by extension, else TREC."),
    method: Optional[str] = typer.Option(None, "--method", "-m", parser=Checked(get_method),
                                         help="Fusion method (see `mmfuse methods`); default: the library default."),
    norm: Optional[str] = typer.Option(None, "--norm", parser=Checked(norm_name),
                                       help="Normalization: none, min-max, zmuv, sum, max, rank, borda, softmax."),
    weights: Optional[str] = typer.Option(None, "--weights", parser=Numbers(),
                                          help="One weight per run, comma-separated (weighted methods)."),
    k: Optional[float] = typer.Option(None, "--k", parser=Float(min=0), help="RRF k (same as --param k=VALUE)."),
    depth: int = typer.Option(1000, "--depth", parser=Int(min=1),
                              help="Use the top DEPTH of each run and write the top DEPTH."),
    param: list[str] = typer.Option([], "--param", parser=KeyValue(),
                                    help="Method parameter name=value (repeatable); norm_temperature=T for softmax."),
    fmt: Optional[str] = typer.Option(None, "--format", parser=Choice(FORMATS),
                                      help="Force the input format: trec, parquet or json."),
    on_duplicate: str = typer.Option("error", "--on-duplicate", parser=Choice(DUPLICATES),
                                     help="Repeated (query, doc) in a run: error, max or first."),
    tag: Optional[str] = typer.Option(None, "--tag", parser=Word(),
                                      help="Run tag written in TREC output (default: the method name)."),
    ranks: str = typer.Option("input", "--ranks", parser=Choice(RANKS),
                              help="Ranks of rank-based methods: input (a TREC file's line order, as pyserini) or "
                                   "score (score desc, then doc id desc, as trec_eval); they differ only within ties."),
    stream: bool = typer.Option(False, "--stream", help="Parquet runs larger than memory: fuse block by block."),
    block_rows: int = typer.Option(1_000_000, "--block-rows", parser=Int(min=1),
                                   help="With --stream: rows per block (bounds memory)."),
    force: bool = typer.Option(False, "--force", help="Allow the output to replace one of the input runs."),
) -> None:
    """Fuse several runs into one and write it."""
    params = dict(param)
    if k is not None:
        if "k" in params:
            raise ParameterError(f"--k {k:g} and --param k={params['k']} both set RRF's k; give one of them")
        params["k"] = str(k)
    check_writable(output)
    refuse_input_overwrite(output, runs, force)
    out = Path(output)
    if stream:
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
    fused = fuse(loaded, method=method, norm=norm, weights=weights, depth=depth, ranks=ranks, **params)
    try:
        fused.write(out, tag=tag or fused.name)
    except OSError as e:
        raise InputError(f"{out}: cannot write: {e.strerror or e}") from None
    err_console.print(f"fused {len(loaded)} runs with {fused.name}: {fused.n_queries} queries, {len(fused)} entries -> {out}",
                      highlight=False)


@app.command("methods")
def methods_cmd() -> None:
    """List fusion methods, their parameters and defaults."""
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
