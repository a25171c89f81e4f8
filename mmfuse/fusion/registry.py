"""The fusion-method registry: names, parameters (defaults, types, docs), the default method, entry-point plug-ins.

A method is a function ``fn(ctx: FusionInput, **params) -> np.ndarray`` returning one fused score per (query, doc)
pair of ``ctx`` (see ``mmfuse.fusion.align``). Register one with the decorator::

    @register_method("mymethod", params=[Param("alpha", 0.5, float, "mixing weight")])
    def mymethod(ctx, alpha):
        return ctx.pair_sum(ctx.value) * alpha

Third-party packages can ship methods through the ``mmfuse.fusion`` entry-point group: each entry point is loaded
(imported) the first time the registry is consulted, and registering happens as a side effect of that import.
``register_method(..., default=True)`` makes a method what ``fuse(runs)`` uses when no method is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmfuse.errors import ParameterError, unknown

__all__ = ["Param", "Method", "register_method", "methods", "get_method", "default_method", "DEFAULT_METHOD",
           "ENTRY_POINT_GROUP", "KINDS"]

ENTRY_POINT_GROUP = "mmfuse.fusion"
KINDS = ("score", "rank", "adaptive", "other")

# The library default until a module registers one with default=True (mmfuse.fusion.default does).
DEFAULT_METHOD = "combsum"


@dataclass(frozen=True)
class Param:
    """One method parameter: name, default, type (int/float/str/bool), one-line doc, optional choices/bounds."""

    name: str
    default: Any
    type: type = float
    doc: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    def coerce(self, value: Any, method: str) -> Any:
        """Convert ``value`` (possibly a CLI string) to this parameter's type, or raise a one-line ParameterError."""
        where = f"parameter {self.name!r} of method {method!r}"
        if value is None:
            return None
        try:
            if self.type is bool and isinstance(value, str):
                low = value.strip().lower()
                if low not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                value = low in {"true", "1", "yes"}
            elif self.type is int and isinstance(value, float) and value.is_integer():
                value = int(value)
            elif self.type is int and isinstance(value, str):
                f = float(value)
                if not f.is_integer():
                    raise ValueError(value)
                value = int(f)
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{where}: expected {self.type.__name__}, got {value!r}") from None
        if self.type is float and not math.isfinite(value):
            raise ParameterError(f"{where}: must be a finite number, got {value}")
        if self.choices is not None and value not in self.choices:
            raise unknown(f"value for {where}", value, [str(c) for c in self.choices])
        if self.min is not None and value < self.min:
            raise ParameterError(f"{where}: must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ParameterError(f"{where}: must be <= {self.max}, got {value}")
        return value


@dataclass(frozen=True)
class Method:
    """A registered fusion method and what the CLI, docs and benchmarks need to know about it."""

    name: str
    fn: Callable[..., Any]
    kind: str = "score"
    params: tuple[Param, ...] = ()
    default_norm: str | None = None
    weighted: bool = False
    aliases: tuple[str, ...] = ()
    doc: str = ""
    ranx: str | None = None
    transductive: bool = False
    extra: dict = field(default_factory=dict)
    fast: tuple | None = None  # mmfuse.fusion.fast.FastSpec: the same method as one compiled pass

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise unknown(f"parameter for method {self.name!r}", name, [p.name for p in self.params] or ["(none)"])

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (coerced and checked); unknown names raise with a suggestion."""
        out = {p.name: p.default for p in self.params}
        for k, v in given.items():
            out[k] = self.param(k).coerce(v, self.name)
        return out


_REGISTRY: dict[str, Method] = {}
_ALIASES: dict[str, str] = {}
_state = {"plugins_loaded": False, "default": DEFAULT_METHOD}


def _norm_name(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def register_method(name: str, *, kind: str = "score", params: Sequence[Param] | dict | None = None,
                    default_norm: str | None = None, weighted: bool = False, aliases: Iterable[str] = (),
                    doc: str | None = None, ranx: str | None = None, transductive: bool = False,
                    default: bool = False, replace: bool = False, fast: tuple | None = None) -> Callable:
    """Decorator registering ``fn(ctx, **params) -> scores[P]`` as fusion method ``name``.

    ``params`` is a list of :class:`Param` (or ``{name: (default, type, doc)}``); ``kind`` is one of
    score/rank/adaptive/other; ``default_norm`` is the normalisation used when the caller gives none (score methods:
    "min-max", like ranx); ``weighted`` says whether per-run weights apply; ``default=True`` makes it the method used
    when ``fuse`` is called without one. Re-registering a taken name needs ``replace=True``. ``fast`` (a
    ``mmfuse.fusion.fast.FastSpec``) declares that the method is a sum of per-entry contributions, so ``fuse`` may
    run it as one compiled pass; ``fn`` stays the reference implementation.
    """
    if kind not in KINDS:
        raise unknown("method kind", kind, KINDS)
    if isinstance(params, dict):
        params = [Param(k, *(v if isinstance(v, tuple) else (v,))) for k, v in params.items()]
    plist = tuple(params or ())

    def deco(fn: Callable) -> Callable:
        key = _norm_name(name)
        if (key in _REGISTRY or key in _ALIASES) and not replace:
            raise ParameterError(f"fusion method {name!r} is already registered (pass replace=True to override)")
        text = doc if doc is not None else (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        m = Method(key, fn, kind, plist, default_norm, weighted, tuple(_norm_name(a) for a in aliases), text, ranx,
                   transductive, fast=fast)
        _REGISTRY[key] = m
        _ALIASES.pop(key, None)
        for a in m.aliases:
            _ALIASES[a] = key
        if default:
            set_default(key)
        return fn

    return deco


def set_default(name: str) -> None:
    """Make ``name`` the method ``fuse`` uses when none is given."""
    global DEFAULT_METHOD
    DEFAULT_METHOD = _norm_name(name)
    _state["default"] = DEFAULT_METHOD


def _load_plugins() -> None:
    if _state["plugins_loaded"]:
        return
    _state["plugins_loaded"] = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plug-in must not break the built-in methods
            raise ParameterError(f"fusion plug-in {ep.name!r} ({ep.value}) failed to load: {e}") from None


def methods() -> dict[str, Method]:
    """All registered methods by name (built-ins and plug-ins), in registration order."""
    _load_plugins()
    return dict(_REGISTRY)


def default_method() -> str:
    """Name of the method ``fuse`` uses when none is given."""
    _load_plugins()
    return DEFAULT_METHOD if DEFAULT_METHOD in _REGISTRY else _state["default"]


def get_method(name: str | None) -> Method:
    """Look a method up by name or alias (case-insensitive, '-' == '_'); unknown names suggest the closest."""
    _load_plugins()
    if name is None:
        name = default_method()
    key = _norm_name(name)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        close = unknown("fusion method", name, list(_REGISTRY) + list(_ALIASES))
        hint = str(close).split(";")[0]  # the suggestion may be an alias; list only the primary names
        raise ParameterError(f"{hint}; choose from: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
