"""``mmfuse convert``: a run or qrels file from one format to another (TREC, Parquet, JSON; format by extension).

What the file holds is told by its shape: TREC text with 4 columns is qrels (``qid iter doc rel``), with 5 or 6 a
run; Parquet with a ``relevance`` column is qrels; JSON is read as a run unless ``--kind qrels`` says otherwise (a
``{query: {doc: number}}`` object looks the same either way). The writers of :mod:`mmfuse.runs` list queries in
natural order (``q2`` before ``q10``) and each query's entries best first, the order trec_eval users expect; there
is no other order to choose, so there is no ``--sort``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmfuse.errors import ParameterError
from mmfuse.runs import FORMATS, Qrels, Run
from mmfuse.runs.readers import format_of
from mmfuse.utils.files import check_writable, refuse_input_overwrite

from .args import Choice, Int, Word
from .common import app, err_console

KINDS = ("auto", "run", "qrels")


@app.command("convert")
def convert_cmd(
    source: str = typer.Argument(..., metavar="IN", help="Run or qrels file: TREC, Parquet or JSON."),
    target: str = typer.Argument(..., metavar="OUT", help="File to write; .parquet/.json by extension, else TREC."),
    kind: str = typer.Option("auto", "--kind", parser=Choice(KINDS),
                             help="run or qrels; auto: from the file's columns (JSON: a run)."),
    depth: Optional[int] = typer.Option(None, "--depth", parser=Int(min=1),
                                        help="Runs: keep the best DEPTH entries of each query."),
    from_fmt: Optional[str] = typer.Option(None, "--from", parser=Choice(FORMATS),
                                           help="Input format when the extension does not tell: trec, parquet, json."),
    to_fmt: Optional[str] = typer.Option(None, "--to", parser=Choice(FORMATS),
                                         help="Output format when the extension does not tell: trec, parquet, json."),
    tag: Optional[str] = typer.Option(None, "--tag", parser=Word(),
                                      help="Run tag of TREC output (default: IN's name)."),
    force: bool = typer.Option(False, "--force", help="Allow OUT to replace IN."),
) -> None:
    """Convert a run or qrels file between TREC, Parquet and JSON; queries in natural order."""
    check_writable(target)
    refuse_input_overwrite(target, [source], force)
    is_qrels = _is_qrels(Path(source), from_fmt) if kind == "auto" else kind == "qrels"
    if is_qrels:
        if depth is not None or tag is not None:
            raise ParameterError(f"{'--depth' if depth is not None else '--tag'} applies to runs; {source} holds qrels")
        qrels = Qrels.read(source, format=from_fmt)
        qrels.write(target, format=to_fmt)
        what = f"qrels: {qrels.n_queries} queries, {len(qrels)} judgements"
    else:
        run = Run.read(source, format=from_fmt).cut(depth)
        run.write(target, format=to_fmt, tag=tag or run.name)
        what = f"run: {run.n_queries} queries, {len(run)} entries"
    err_console.print(f"wrote {target} ({what})", highlight=False, soft_wrap=True)


def _is_qrels(path: Path, fmt: Optional[str]) -> bool:
    """Whether ``path`` holds qrels, by its columns; a file that cannot be read is left to the reader to report."""
    fmt = format_of(path, fmt)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return "relevance" in pq.read_schema(path).names
        if fmt == "trec":
            with open(path, "rb") as fh:
                for line in fh:
                    if line.strip():
                        return len(line.split()) == 4
    except Exception:  # missing, unreadable or damaged: Run.read names the problem
        return False
    return False
