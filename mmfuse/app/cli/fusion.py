"""Fusion commands: ``mmfuse fuse`` and ``mmfuse methods``."""

from __future__ import annotations

from typing import Optional

import typer

from .common import app, console, err_console, parse_params, parse_weights


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

    params = parse_params(param)
    if k is not None:
        params["k"] = str(k)
    w = parse_weights(weights)
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
