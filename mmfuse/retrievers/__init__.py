"""Retrievers: the protocol, the built-in modality retrievers, plug-in loading and the per-index retriever set."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mmfuse.errors import ModelError, ParameterError, suggest

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
    CaptionRetriever,
    DenseTextRetriever,
    MetadataRetriever,
    OcrRetriever,
    PrecomputedRetriever,
    TranslationRetriever,
    VectorRetriever,
    VisualRetriever,
    clap_from_spec,
    clip_from_spec,
)

if TYPE_CHECKING:  # pragma: no cover
    from mmfuse.store.lance import IndexStore

ENTRY_POINT_GROUP = "mmfuse.retrievers"

__all__ = [
    "AGGREGATIONS", "ENTRY_POINT_GROUP", "AsrRetriever", "AudioRetriever", "CaptionRetriever", "DenseTextRetriever",
    "EmbeddingRetriever", "IndexedRetriever", "MetadataRetriever", "OcrRetriever", "PrecomputedRetriever", "Retriever",
    "SegmentEncoder", "TranslationRetriever", "VectorRetriever", "VisualRetriever", "aggregate_segments",
    "entry_points", "load_retriever", "normalize_queries", "plugin_modality", "retrievers_for_index", "segment_run",
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


def _canonical(ref: str, eps: Mapping[str, Any]) -> str:
    """``module:attr`` of a plug-in reference (an entry-point name resolves to its target; nothing is imported)."""
    ref = str(ref).strip()
    ep = eps.get(ref) if ":" not in ref else None
    if ep is None:
        return ref
    return f"{ep.module}:{ep.attr}" if ep.attr else ep.module


def plugin_modality(store: "IndexStore", ref: str) -> str | None:
    """The modality an index records for plug-in reference ``ref`` (None when it records none)."""
    eps = entry_points()
    want = _canonical(ref, eps)
    return next((m for m, s in store.specs().items() if s["kind"] == "plugin" and _canonical(s["ref"], eps) == want),
                None)


def retrievers_for_index(
    store: "IndexStore",
    *,
    modalities: list[str] | None = None,
    aggregation: str = "max",
    pooling: str = "mean",
    clip_encoder: Any = None,
    clap_encoder: Any = None,
    dense: bool = True,
    plugins: Sequence[str] = (),
    warn: Any = None,
) -> list[Any]:
    """One retriever per modality recorded in the index, in a fixed order.

    ``modalities`` picks some (names, or plug-in references); None picks all. Modalities whose query
    encoder cannot be loaded are skipped with one warning each (passed to ``warn(msg)``, default
    :func:`warnings.warn`) naming the flag that fixes it.

    An index folder is data and may come from anyone, so the plug-in modules it names are imported only
    when they are installed as entry points of group ``mmfuse.retrievers`` or named again by the user:
    in ``plugins`` (``mmfuse search --retriever REF``: allowed, picked as ``modalities`` says) or as a
    reference in ``modalities`` (allowed and picked). Other plug-in modalities are skipped with a warning
    that says how to enable them.
    """
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
    specs = store.specs()
    eps = entry_points()
    want = set(modalities) if modalities else None
    picked = {_canonical(r, eps) for r in modalities or []}
    named = picked | {_canonical(r, eps) for r in plugins}
    refs = {m: _canonical(s["ref"], eps) for m, s in specs.items() if s["kind"] == "plugin"}
    for ref in sorted({_canonical(r, eps) for r in plugins} - set(refs.values())):
        have = ", ".join(f"{m} = {s['ref']}" for m, s in specs.items() if s["kind"] == "plugin") or "none"
        warn(f"plug-in {ref} not searched: index {store.path} holds no output of it (its plug-ins: {have})")
    installed = {_canonical(name, eps) for name in eps}
    out: list[Any] = []

    def wanted(m: str) -> bool:  # "asr" also wants asr_dense, asr_en and asr_en_dense; "asr_en" its own two
        return m in specs and (want is None or any(m == w or m.startswith(f"{w}_") for w in want)
                               or refs.get(m) in picked)

    kw = {"aggregation": aggregation}
    if wanted("visual"):
        try:
            enc = clip_encoder
            if enc is None:
                enc = clip_from_spec(specs["visual"]["spec"])
            out.append(VisualRetriever(store, encoder=enc, pooling=pooling, **kw))
        except ModelError as e:
            warn(f"visual modality skipped: {e}; pass --clip-model/--clip-pretrained or --clip-checkpoint to search with it")
    if wanted("audio"):
        try:
            enc = clap_encoder
            if enc is None:
                enc = clap_from_spec(specs["audio"]["spec"])
            out.append(AudioRetriever(store, encoder=enc, **kw))
        except ModelError as e:
            warn(f"audio modality skipped: {e}; pass --clap-model to search with it")
    if wanted("ocr"):
        out.append(OcrRetriever(store, **kw))
    for m, cls in (("asr", AsrRetriever), ("asr_en", TranslationRetriever), ("meta", MetadataRetriever),
                   ("caption", CaptionRetriever)):
        if wanted(m):
            out.append(cls(store, **kw))
        if dense and wanted(f"{m}_dense") and store.has_vectors(f"{m}_dense"):
            out.append(DenseTextRetriever(store, f"{m}_dense", name=f"{m}_dense", **kw))
    for m, ref in refs.items():
        if not wanted(m):
            continue
        if ref not in named and ref not in installed:
            warn(f"plug-in {m} skipped: index {store.path} names the module {specs[m]['ref']!r}, and mmfuse does not "
                 f"import code an index names; to search with it, install it as an entry point of group "
                 f"{ENTRY_POINT_GROUP!r} or name it again: mmfuse search --retriever {ref} "
                 f"(Python: Pipeline(retrievers=[{ref!r}]))")
            continue
        try:
            obj = _instantiate(load_retriever(specs[m]["ref"]), store)
        except Exception as e:  # a plug-in that is no longer installed must not break search
            warn(f"plug-in {m} skipped: {e}")
            continue
        if hasattr(obj, "encode_queries") and store.has_vectors(m):
            out.append(VectorRetriever(store, m, obj, name=m, **kw))
        elif hasattr(obj, "search"):
            out.append(obj)
    return out
