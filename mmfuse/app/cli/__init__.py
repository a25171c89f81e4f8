"""The ``mmfuse`` command line, one module per command group; each parses arguments (types in :mod:`.args`), calls
the library and renders with rich. No retrieval or fusion logic lives here.

``main`` is the console script. Every way a run can end is decided there: a user mistake (a usage error found while
parsing, or an :class:`~mmfuse.errors.MmfuseError` from the library) is one line on stderr and exit 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from rich.markup import escape

from mmfuse.errors import MmfuseError, suggest

# isort: off
# importing registers the commands, in this order in `mmfuse --help`
from . import project, videos, fusion, convert, evaluation, bench, rerank, serve  # noqa: F401
# isort: on
from .common import app, console, err_console

__all__ = ["app", "main", "console", "err_console"]


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)


def _usage_error(e: typer.TyperException) -> int:
    """Print click's usage error as one line, with its "did you mean" and where to find help; the exit code."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":  # bare `mmfuse`: the help (typer's rich help printed it already)
        if e.format_message().strip():
            typer.echo(e.format_message(), err=True)
        return e.exit_code
    close = getattr(e, "possibilities", None)  # NoSuchOption: the options whose names are close
    message = e.message + suggest(e.option_name, close) if close else e.format_message()
    if ctx is not None:
        message += f" (try '{ctx.command_path} --help')"
    _error(message)
    return e.exit_code


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app; user mistakes become one red line and exit code 2, never a traceback."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in args
    try:
        rv = app(args=args, prog_name="mmfuse", standalone_mode=False)
        # In non-standalone mode click returns typer.Exit's code instead of raising it.
        if isinstance(rv, int) and rv != 0:
            sys.exit(rv)
    except typer.Exit as e:  # raised by commands that decide the exit code themselves
        sys.exit(e.exit_code)
    except MmfuseError as e:
        if debug:
            raise
        _error(str(e))
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # click's usage errors (typer vendors click: typer._click.exceptions)
        if debug:
            raise
        sys.exit(_usage_error(e))
    except (typer.Abort, KeyboardInterrupt):
        if debug:
            raise
        _error("interrupted")
        sys.exit(130)
    except BrokenPipeError:  # `mmfuse methods | head`: the reader left; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
