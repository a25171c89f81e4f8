"""The ``mmfuse`` command line, one module per command group; each parses arguments, calls the library and renders
with rich. No retrieval or fusion logic lives here."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from mmfuse.errors import MmfuseError

# isort: off
# importing registers the commands, in this order in `mmfuse --help`
from . import project, videos, fusion, evaluation, bench, rerank  # noqa: F401
# isort: on
from .common import app, console, err_console

__all__ = ["app", "main", "console", "err_console"]


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning MmfuseError into one red line and a non-zero exit."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rv = app(args=argv, standalone_mode=False)
        # In non-standalone mode click returns typer.Exit's code instead of raising it.
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
    except MmfuseError as e:
        if debug:
            raise
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Exit as e:  # raised by commands that decide the exit code themselves
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
