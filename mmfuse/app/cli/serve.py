"""``mmfuse serve``: the search service (:mod:`mmfuse.app.serve`) on uvicorn, with the pipeline ``mmfuse search``
builds, loaded once before the first request."""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Optional

import typer

from mmfuse.app.serve import SearchService, create_app, one_thread_per_call
from mmfuse.app.serve.api import LOOPBACK_HOSTS
from mmfuse.errors import MmfuseError, ParameterError
from mmfuse.store.lance import IndexStore
from mmfuse.utils.lazy import require

from .args import Int
from .common import app, apply_defaults, err_console, load_config_defaults, required, split_csv, warn
from .videos import config_modalities, open_searcher

# `mmfuse search`'s defaults of the options that shape its pipeline (a --config file may set them)
SEARCH_OPTIONS = {"aggregation": "max", "pooling": "mean", "clip_model": None, "clip_pretrained": None,
                  "clip_checkpoint": None, "clap_model": None, "expand": None, "expand_n": None, "expand_fusion": None,
                  "expand_template": None, "llm_base_url": None, "llm_model": None, "llm_cache": None,
                  "llm_timeout": 60.0, "llm_retries": 2, "llm_concurrency": 4, "retriever": []}

# Everything on stderr, one line per request; uvicorn's start-up chatter only when something goes wrong.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(message)s"},
        "access": {"()": "uvicorn.logging.AccessFormatter", "use_colors": False,
                   "fmt": '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s'},
    },
    "handlers": {
        "plain": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "uvicorn.error": {"handlers": ["plain"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "mmfuse.serve": {"handlers": ["plain"], "level": "INFO", "propagate": False},
    },
}


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` now, so a busy port or an unknown host is one line before models load."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ParameterError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    # Made with proto=IPPROTO_TCP: asyncio turns Nagle's algorithm off only on sockets that say they are TCP; with it
    # on, a response's body waits for the client's delayed ACK of its head (~40 ms a request).
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        raise ParameterError(f"--host {host} --port {port}: cannot listen there ({e.strerror}); "
                             f"pick another --port (0 = any free one)") from None
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host) if ":" not in host else host).is_loopback
    except (OSError, ValueError):
        return False


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    index: Optional[str] = typer.Option(None, "--index", help="Index directory built by `mmfuse index`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", parser=Int(min=0, max=65535), help="Port (0: any free port)."),
    config: Optional[str] = typer.Option(None, "--config", help="Pipeline config file (`mmfuse init`): the search "
                                         "defaults, as for `mmfuse search`."),
) -> None:
    """Search an index from a browser (a page at /) or over HTTP (a JSON API at /api): models load once, at start."""
    cfg = load_config_defaults(config, "search")
    v = apply_defaults(ctx, {**locals(), **SEARCH_OPTIONS}, cfg)
    index = required(v["index"], "--index", "[index] path")
    uvicorn = require("uvicorn", "serve")
    require("fastapi", "serve")
    store = IndexStore.open(index)
    one_thread_per_call()
    service = SearchService(
        store, lambda s, fusion, modalities: open_searcher(s, v, cfg, fusion=fusion, modalities=modalities),
        k=cfg.get("k") or 10, fusion=cfg.get("fusion"), modalities=config_modalities(store, cfg))
    sock = _listen(host, port)
    loopback = _is_loopback(host)
    if not loopback:
        warn(f"listening on {host}: anyone who can reach this machine can search the index and play its videos")
    t0 = time.perf_counter()
    try:
        service.warm_up()
    except MmfuseError as e:
        warn(f"{e}; the server answers with this error until it is fixed")
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    err_console.print(f"mmfuse serve: {store.path} ({store.videos().num_rows} videos) ready in "
                      f"{time.perf_counter() - t0:.1f} s at http://{shown}:{bound}/ (Ctrl+C to stop)",
                      highlight=False, soft_wrap=True)
    server = uvicorn.Server(uvicorn.Config(create_app(service, allowed_hosts=LOOPBACK_HOSTS if loopback else None),
                                           host=host, port=bound, log_config=LOG_CONFIG))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl+C is how a server is stopped: uvicorn finished the open requests first
        err_console.print("mmfuse serve: stopped", highlight=False)
