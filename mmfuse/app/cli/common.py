"""What every command shares: the typer app with its root options (``--debug``, ``--version``), the two consoles
(results on stdout, messages on stderr), and ``--config`` defaults: the config file flattened into the option names
of ``index``/``search``/``rerank``, applied where the user did not pass the flag. Option value types live in
:mod:`.args`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich import box
from rich.console import Console
from rich.progress import Progress, ProgressColumn
from rich.table import Table

import mmfuse
from mmfuse.config import load_config
from mmfuse.errors import ParameterError

app = typer.Typer(
    name="mmfuse",
    help="Fuse many text-to-video retrievers and rerank with a vision-language model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(emoji=False)  # ":x:" in a file name or id stays text
err_console = Console(stderr=True, emoji=False)

# The one convention for metric values in every command and report: fractions of 1, as trec_eval and ranx print
# them (a percent in one place and a fraction in another would be misread; trec_eval's format allows only this).
FRACTIONS = "values are fractions of 1"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"mmfuse {mmfuse.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """``--debug`` is read by ``main`` before parsing; declared here so that it is accepted and documented."""


def progress_bar(*columns: str | ProgressColumn, transient: bool = True) -> Progress:
    """A progress display on stderr, shown only on a terminal (in logs and pipes it would be noise)."""
    return Progress(*columns, console=err_console, transient=transient, disable=not err_console.is_terminal)


def warn(message: str) -> None:
    """One yellow ``warning:`` line on stderr, never wrapped."""
    from rich.markup import escape

    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def narrow_table(title: str, caption: str | None = None) -> Table:
    """The house style of result tables, made to fit 80 columns: a rule under the header, no side borders, one
    space between columns, title and caption (units, legends) left-aligned. Both are markup: escape user text."""
    return Table(title=title, caption=caption, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left",
                 pad_edge=False, collapse_padding=True)


def short_names(names: Sequence[str]) -> dict[str, str]:
    """A short, unique code per name for narrow table columns, printed with a legend: the initial when that is
    unique (``clip4clip`` C, ``ocr_bm25`` O), else the initials of the name's parts (``asr_dense`` AD), else more
    letters of its first part (``asr`` AS, ``audio`` AU)."""
    parts = {n: [p for p in re.split(r"[^0-9A-Za-z]+", n) if p] or [n] for n in names}

    def code(n: str, step: int) -> str:
        first, rest = parts[n][0], parts[n][1:]
        if step == 0:
            return first[0].upper()
        return (first[:step] + "".join(p[0] for p in rest)).upper()

    out = {n: code(n, 0) for n in names}
    for step in range(1, 2 + max((len(p[0]) for p in parts.values()), default=0)):
        clash = {n for n in names if list(out.values()).count(out[n]) > 1}
        if not clash:
            return out
        out.update({n: code(n, step) for n in clash})
    return {n: n for n in names}  # names that differ only past their first part's letters: keep them whole


def legend(codes: dict[str, str]) -> str:
    return " ".join(f"{c}={n}" for n, c in sorted(codes.items(), key=lambda kv: kv[1]))


def required(value, flag: str, key: str):
    if value is None:
        raise ParameterError(f"{flag} is required (or set {key} in --config)")
    return value


def split_csv(value: Optional[str | list[str]]) -> Optional[list[str]]:
    """A comma list (a config value) or the list the ``Csv`` option type already made."""
    if isinstance(value, list):
        return value or None
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# ------------------------------------------------------------------------------------------ --config defaults
def config_defaults(ctx: typer.Context, command: str, values: dict) -> dict:
    """Fill the parameters the user did not pass on the command line from the ``--config`` file."""
    return apply_defaults(ctx, values, load_config_defaults(values.get("config"), command))


def load_config_defaults(ctx_or_path: Any, command: str | None = None) -> dict[str, Any]:
    """Flat CLI defaults from a config file, for commands that take ``--config``.

    ``ctx_or_path`` is a path or a click/typer Context (its ``params['config']`` is used). Returns a dict
    keyed by the CLI option names of ``mmfuse index``/``search``/``rerank`` (``index``, ``k``, ``fusion``,
    ``modalities`` (and ``modalities_named``, those the file has tables for), ``clip_model``, ``clip_pretrained``,
    ``clip_checkpoint``, ``clap_model``, ``window``, ``frames``, ``frame_size``, ``workers``, ``metadata``,
    ``no_dense``, ``aggregation``, ``pooling``, ``backend``, ``model``, ``base_url``, ``top``, ``window`` (rerank:
    ``rerank_window``), ``step``, ``grid``, ``cell``, ``cache_dir``,
    ``mode``, ``asr_model``, ``asr_task``, ``text_model``, ``vlm_model``, ``vlm_base_url``, ``caption_template``,
    the ``[expand]`` flags ``expand``, ``expand_n``, ``expand_fusion``, ``expand_template``, ``llm_model``,
    ``llm_base_url``, ``llm_cache``, ``llm_timeout``, ``llm_retries``, ``llm_concurrency`` and its other settings as
    ``expand_options``), with relative paths resolved against the config file's folder. ``command`` ("index", "search",
    "rerank") picks the meaning of ``window`` (segment length for index, sliding window for rerank). An absent
    config (None) gives ``{}``. Callers apply a value only where the user did not pass the flag.
    """
    path = ctx_or_path
    if path is not None and not isinstance(path, (str, os.PathLike)):
        params = getattr(path, "params", None) or {}
        path = params.get("config")
    if not path:
        return {}
    cfg, base = load_config(path)
    rets = cfg.enabled_retrievers()
    vis = next((r for r in rets.values() if r.kind == "visual"), None)
    aud = next((r for r in rets.values() if r.kind == "audio"), None)
    asr = next((r for r in rets.values() if r.kind == "asr"), None)
    cap = next((r for r in rets.values() if r.kind == "caption"), None)
    text = [r for r in rets.values() if r.kind in ("asr", "meta", "caption")]
    out: dict[str, Any] = {
        "index": cfg.resolve(cfg.index.path, base),
        "k": cfg.search.k,
        "fusion": cfg.fusion.method,
        "fusion_norm": cfg.fusion.norm,
        "fusion_weights": cfg.fusion.weights,
        "fusion_params": dict(cfg.fusion.params),
        "depth": cfg.fusion.depth,
        "modalities": ",".join(dict.fromkeys(r.kind for r in rets.values() if r.kind != "plugin")),
        "modalities_named": [r.kind for n, r in rets.items() if r.kind != "plugin" and n in cfg.named_retrievers],
        "retriever": [r.ref for r in rets.values() if r.kind == "plugin" and r.ref],
        "clip_model": vis.model if vis else None,
        "clip_pretrained": vis.pretrained if vis else None,
        "clip_checkpoint": cfg.resolve(vis.checkpoint, base) if vis else None,
        "clap_model": _model(cfg, aud.model, base) if aud else None,
        "asr_model": _model(cfg, asr.model, base) if asr else None,
        "asr_task": asr.task if asr else None,
        "text_model": _model(cfg, cfg.index.text_model, base),
        "vlm_model": _model(cfg, cap.model, base) if cap else None,
        "vlm_base_url": cap.base_url if cap else None,
        "caption_template": cfg.resolve(cap.template, base) if cap else None,
        "frames": cfg.index.frames_per_segment,
        "frame_size": cfg.index.frame_size,
        "workers": cfg.index.workers,
        "metadata": cfg.resolve(cfg.index.metadata, base),
        "no_dense": bool(text) and not any(r.dense for r in text),
        "aggregation": next((r.aggregation for r in rets.values()), "max"),
        "pooling": vis.pooling if vis else "mean",
        "backend": cfg.rerank.backend,
        "model": cfg.rerank.model,
        "base_url": cfg.rerank.base_url,
        "top": cfg.rerank.top,
        "rerank_window": cfg.rerank.window,
        "step": cfg.rerank.step,
        "grid": cfg.rerank.grid,
        "cell": cfg.rerank.cell,
        "cache": cfg.resolve(cfg.rerank.cache, base),
        "cache_dir": cfg.resolve(cfg.rerank.cache, base),
        "mode": cfg.rerank.mode,
        "expand": cfg.expand.method,
        "expand_n": cfg.expand.n,
        "expand_fusion": cfg.expand.fusion,
        "expand_template": cfg.resolve(cfg.expand.template, base),
        "llm_model": _model(cfg, cfg.expand.model, base),
        "llm_base_url": cfg.expand.base_url,
        "llm_cache": cfg.resolve(cfg.expand.cache, base),
        "llm_timeout": cfg.expand.timeout,
        "llm_retries": cfg.expand.retries,
        "llm_concurrency": cfg.expand.concurrency,
        # [expand] settings without a flag, as build_expander arguments
        "expand_options": {"fusion_params": dict(cfg.expand.fusion_params), "candidates": cfg.expand.candidates,
                           "max_tokens": cfg.expand.max_tokens, "temperature": cfg.expand.temperature,
                           "api_key": os.environ.get(cfg.expand.api_key_env) if cfg.expand.api_key_env else None},
    }
    out["window"] = cfg.rerank.window if command == "rerank" else cfg.index.window
    return out


def _model(cfg: Any, model: str | None, base: Path | None) -> str | None:
    """A model setting: a path that looks local resolved against the config's folder, else the name as written."""
    return cfg.resolve(model, base) if model and _looks_local(model, base) else model


def _looks_local(model: str, base: Path | None) -> bool:
    p = Path(os.path.expanduser(model))
    return p.is_absolute() or model.startswith(".") or (base is not None and (base / p).exists())


def apply_defaults(ctx: Any, values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Fill ``values`` (the command's parameters) from ``defaults`` where the user did not pass the flag.

    With a click Context, a parameter counts as "not passed" when its source is the default; without one,
    when its value is None.
    """
    out = dict(values)
    get_source = getattr(ctx, "get_parameter_source", None)
    for name, v in defaults.items():
        if name not in out or v is None:
            continue
        if get_source is not None:
            src = get_source(name)
            passed = src is not None and getattr(src, "name", "") not in ("DEFAULT", "DEFAULT_MAP")
        else:
            passed = out[name] is not None
        if not passed:
            out[name] = v
    return out
