"""``mmfuse serve``: search an index from a browser or over HTTP. :class:`SearchService` answers (no web framework),
:func:`create_app` puts it behind a FastAPI app with the JSON API, the media files and the search page
(``static/``). FastAPI loads only when an app is created."""

from .api import create_app
from .service import THUMBNAIL, Limits, NotFound, SearchService, Unavailable, one_thread_per_call

__all__ = ["THUMBNAIL", "Limits", "NotFound", "SearchService", "Unavailable", "create_app", "one_thread_per_call"]
