"""The mmfuse command line: parses arguments, calls the library, renders with rich. No logic lives here."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console

from .errors import MmfuseError

app = typer.Typer(
    name="mmfuse",
    help="Fuse many text-to-video retrievers and rerank with a vision-language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


# Each command group lives in its own block below; keep the blocks independent.

# --- fusion commands (fuse, methods, eval) ------------------------------------------------

# --- end fusion commands ------------------------------------------------------------------

# --- benchmark commands (bench) -----------------------------------------------------------

# --- end benchmark commands ---------------------------------------------------------------

# --- index commands (index, search) -------------------------------------------------------

# --- end index commands -------------------------------------------------------------------

# --- rerank commands (rerank, grid) -------------------------------------------------------

# --- end rerank commands ------------------------------------------------------------------

# --- pipeline commands (init, demo) -------------------------------------------------------

# --- end pipeline commands ----------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning MmfuseError into one red line and a non-zero exit."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except MmfuseError as e:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
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


if __name__ == "__main__":
    main()
