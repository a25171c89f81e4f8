"""What every command shares: the typer app, the two consoles (results on stdout, messages on stderr) and the
small argument helpers (``--param name=value``, ``--weights``, comma lists, ``--config`` defaults)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from mmfuse.errors import ParameterError

app = typer.Typer(
    name="mmfuse",
    help="Fuse many text-to-video retrievers and rerank with a vision-language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """``--debug`` is read by ``main`` before parsing; declared here so that it is accepted and documented."""


def parse_params(items: list[str]) -> dict[str, str]:
    from mmfuse.errors import ParameterError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param {item!r}: expected name=value")
        out[name.strip().replace("-", "_").replace(".", "_")] = value.strip()
    return out


def parse_weights(text: Optional[str]) -> Optional[list[float]]:
    from mmfuse.errors import ParameterError

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ParameterError(f"--weights {text!r}: expected comma-separated numbers such as 1,0.5") from None


def config_defaults(ctx: typer.Context, command: str, values: dict) -> dict:
    """Fill the parameters the user did not pass on the command line from the ``--config`` file."""
    from mmfuse.config import apply_defaults, load_config_defaults

    return apply_defaults(ctx, values, load_config_defaults(values.get("config"), command))


def required(value, flag: str, key: str):
    if value is None:
        raise ParameterError(f"{flag} is required (or set {key} in --config)")
    return value


def split_csv(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
