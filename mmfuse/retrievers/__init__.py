"""Retrievers: the protocol, the built-in modality retrievers, plug-in loading and the per-index retriever set."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from mmfuse.errors import ModelError, ParameterError

from .base import (
    AGGREGATIONS,
    EmbeddingRetriever,
    IndexedRetriever,
    Retriever,
    SegmentEncoder,
    aggregate_segments,
    normalize_queries,
    segment_run,
)
from .modalities import (
    AsrRetriever,
    AudioRetriever,
    DenseTextRetriever,
    MetadataRetriever,
    OcrRetriever,
    PrecomputedRetriever,
    VectorRetriever,
    VisualRetriever,
)

if TYPE_CHECKING:  # pragma: no cover
    from mmfuse.store.lance import IndexStore

ENTRY_POINT_GROUP = "mmfuse.retrievers"

__all__ = [
    "AGGREGATIONS", "ENTRY_POINT_GROUP", "AsrRetriever", "AudioRetriever", "DenseTextRetriever", "EmbeddingRetriever",
    "IndexedRetriever", "MetadataRetriever", "OcrRetriever", "PrecomputedRetriever", "Retriever", "SegmentEncoder", "VectorRetriever",
    "VisualRetriever", "aggregate_segments", "entry_points", "load_retriever", "normalize_queries",
    "retrievers_for_index", "segment_run",
]


def entry_points() -> dict[str, Any]:
    """Installed plug-ins: ``{name: EntryPoint}`` of the ``mmfuse.retrievers`` group."""
    from importlib.metadata import entry_points as eps

    return {ep.name: ep for ep in eps(group=ENTRY_POINT_GROUP)}


def load_retriever(ref: str) -> Any:
    """Resolve ``"package.module:Class"`` or an entry-point name of group ``mmfuse.retrievers``.

    Returns the object the reference names (usually a class; callers instantiate it).
    """
    ref = str(ref).strip()
    if ":" in ref:
        mod_name, _, attr = ref.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ParameterError(f"--retriever {ref}: cannot import module {mod_name!r}: {e}") from None
        obj: Any = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ParameterError(f"--retriever {ref}: module {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        return obj
    eps = entry_points()
    if ref not in eps:
        from mmfuse.errors import suggest

        names = sorted(eps)
        hint = f"; installed plug-ins: {', '.join(names)}" if names else "; no plug-ins are installed"
        raise ParameterError(
            f"--retriever {ref}: not a 'module:Class' reference nor an entry point in group "
            f"{ENTRY_POINT_GROUP!r}{suggest(ref, names)}{hint}"
        )
    try:
        return eps[ref].load()
    except Exception as e:
        raise ParameterError(f"--retriever {ref}: loading entry point failed: {e}") from None


def _instantiate(obj: Any, store: "IndexStore") -> Any:
    if not isinstance(obj, type):
        return obj
    if hasattr(obj, "from_index"):
        return obj.from_index(store)
    return obj()


def retrievers_for_index(
    store: "IndexStore",
    *,
    modalities: list[str] | None = None,
    aggregation: str = "max",
    pooling: str = "mean",
    clip_encoder: Any = None,
    clap_encoder: Any = None,
    dense: bool = True,
    warn: Any = None,
) -> list[Any]:
    """One retriever per modality recorded in the index, in a fixed order.

    Modalities whose query encoder cannot be loaded are skipped with one warning each (passed to
    ``warn(msg)``, default :func:`warnings.warn`) naming the flag that fixes it.
    """
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
    specs = store.specs()
    want = set(modalities) if modalities else None
    out: list[Any] = []

    def wanted(m: str) -> bool:
        return m in specs and (want is None or m in want or m.split("_")[0] in want)

    kw = {"aggregation": aggregation}
    if wanted("visual"):
        try:
            enc = clip_encoder
            if enc is None:
                from .modalities import clip_from_spec

                enc = clip_from_spec(specs["visual"]["spec"])
            out.append(VisualRetriever(store, encoder=enc, pooling=pooling, **kw))
        except ModelError as e:
            warn(f"visual modality skipped: {e}; pass --clip-model/--clip-pretrained or --clip-checkpoint to search with it")
    if wanted("audio"):
        try:
            enc = clap_encoder
            if enc is None:
                from .modalities import clap_from_spec

                enc = clap_from_spec(specs["audio"]["spec"])
            out.append(AudioRetriever(store, encoder=enc, **kw))
        except ModelError as e:
            warn(f"audio modality skipped: {e}; pass --clap-model to search with it")
    if wanted("ocr"):
        out.append(OcrRetriever(store, **kw))
    if wanted("asr"):
        out.append(AsrRetriever(store, **kw))
    if dense and wanted("asr_dense") and store.has_vectors("asr_dense"):
        out.append(DenseTextRetriever(store, "asr_dense", name="asr_dense", **kw))
    if wanted("meta"):
        out.append(MetadataRetriever(store, **kw))
    if dense and wanted("meta_dense") and store.has_vectors("meta_dense"):
        out.append(DenseTextRetriever(store, "meta_dense", name="meta_dense", **kw))
    for m, s in specs.items():
        if s["kind"] != "plugin" or not wanted(m):
            continue
        try:
            obj = _instantiate(load_retriever(s["ref"]), store)
        except Exception as e:  # a plug-in that is no longer installed must not break search
            warn(f"plug-in {m} skipped: {e}")
            continue
        if hasattr(obj, "encode_queries") and store.has_vectors(m):
            out.append(VectorRetriever(store, m, obj, name=m, **kw))
        elif hasattr(obj, "search"):
            out.append(obj)
    return out
