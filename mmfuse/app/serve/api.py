"""The HTTP face of :class:`~.service.SearchService`: a FastAPI app with the JSON API, the media files (with range
requests, so a browser can seek) and the search page (plain files from ``static/``, no build step, no CDN).

Every error is a JSON object ``{"error": "one line"}``: 400 for a request the limits or the index refuse, 404 for an
id the index does not hold, 503 when the index or a model cannot answer. Behind a loopback address only requests
naming a loopback host are served (a web page elsewhere cannot reach the API by rebinding its DNS name to it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import mmfuse
from mmfuse.encoders.base import first_line
from mmfuse.errors import ConfigError, IndexError_, InputError, MmfuseError, ModelError, ParameterError
from mmfuse.utils.lazy import require

from .service import NotFound, SearchService, Unavailable

STATIC = Path(__file__).with_name("static")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# The page runs only its own script and shows only this server's images and media.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
log = logging.getLogger("mmfuse.serve")


class Batch(BaseModel):
    """``POST /api/search``: several queries at once."""

    queries: dict[str, str]
    k: int | None = None
    fusion: str | None = None
    modalities: list[str] | str | None = None


def status_of(e: MmfuseError) -> int:
    if isinstance(e, NotFound):
        return 404
    if isinstance(e, (Unavailable, IndexError_, ModelError)):
        return 503
    return 400 if isinstance(e, (ParameterError, InputError, ConfigError)) else 500


def split_modalities(value: list[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    names = [m.strip() for m in (value.split(",") if isinstance(value, str) else value) if m and m.strip()]
    if not names:
        raise ParameterError("modalities: no modality named; give a comma-separated list such as ocr,asr")
    return names


def create_app(service: SearchService, *, allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS) -> Any:
    """The ASGI app over ``service``. ``allowed_hosts``: the Host header values served (None: any)."""
    fastapi = require("fastapi", "serve")
    responses = require("fastapi.responses", "serve")
    staticfiles = require("fastapi.staticfiles", "serve")
    exceptions = require("fastapi.exceptions", "serve")
    trustedhost = require("fastapi.middleware.trustedhost", "serve")
    starlette_exceptions = require("starlette.exceptions", "serve")
    JSONResponse, Response, FileResponse = responses.JSONResponse, responses.Response, responses.FileResponse
    Query = fastapi.Query
    lim = service.limits

    app = fastapi.FastAPI(title="mmfuse", version=mmfuse.__version__, docs_url=None, redoc_url=None,
                          openapi_url="/api/openapi.json")  # the docs pages load their scripts from a CDN: off
    if allowed_hosts is not None:
        app.add_middleware(trustedhost.TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    def error(status: int, message: str) -> Any:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(MmfuseError)
    def on_mmfuse_error(request: Any, e: MmfuseError) -> Any:
        status = status_of(e)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, e)
        return error(status, str(e))

    @app.exception_handler(exceptions.RequestValidationError)
    def on_invalid(request: Any, e: Any) -> Any:
        err = e.errors()[0]
        if err.get("type") == "json_invalid":
            return error(400, f"body: invalid JSON ({err.get('ctx', {}).get('error', 'cannot parse it')})")
        where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
        got = f" (got {err['input']!r})" if isinstance(err.get("input"), (str, int, float)) else ""
        return error(400, f"{where}: {err.get('msg', 'invalid')}{got}")

    @app.exception_handler(starlette_exceptions.HTTPException)
    def on_http(request: Any, e: Any) -> Any:
        return error(e.status_code, f"{request.method} {request.url.path}: {e.detail}")

    @app.exception_handler(Exception)
    def on_bug(request: Any, e: Exception) -> Any:  # Starlette logs the traceback after this answer
        return error(500, f"internal error: {first_line(e)}")

    @app.get("/api/health")
    def health() -> Any:
        return service.health()

    @app.get("/api/search")
    def search(q: str = Query(..., description=f"the query text, at most {lim.query_chars} characters"),
               k: int | None = Query(None, description=f"results, 1 to {lim.k} (default: the server's)"),
               fusion: str | None = Query(None, description="fusion method (default: the server's)"),
               modalities: str | None = Query(None, description="comma-separated modalities (default: all)")) -> Any:
        """One query: the JSON object ``mmfuse search --json`` prints."""
        return service.search_one(q, k, fusion, split_modalities(modalities))

    @app.post("/api/search")
    def search_batch(batch: Batch) -> Any:
        """Several queries: ``{query_id: the object GET returns}``, in the given order."""
        return service.search(batch.queries, batch.k, batch.fusion, split_modalities(batch.modalities))

    @app.get("/api/videos/{video_id:path}/grid.png", response_class=Response)
    def grid(video_id: str, if_none_match: str | None = fastapi.Header(None)) -> Any:
        png, etag = service.grid_png(video_id)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/videos/{video_id:path}")
    def video(video_id: str) -> Any:
        return service.video(video_id)

    @app.api_route("/media/{video_id:path}", methods=["GET", "HEAD"], response_class=FileResponse)
    def media(video_id: str) -> Any:
        return FileResponse(service.media(video_id))  # answers Range requests with 206 and Content-Range

    @app.get("/", response_class=FileResponse)
    def page() -> Any:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", staticfiles.StaticFiles(directory=STATIC), name="static")
    return app
