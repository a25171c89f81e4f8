"""The pipeline config file: pydantic models of the TOML schema, the commented default, loading and one-line errors.

The schema only: how the CLI turns a config into option defaults lives with the CLI (``mmfuse.app.cli.common``)."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mmfuse.encoders.clip import POOLINGS
from mmfuse.errors import ConfigError, MmfuseError
from mmfuse.expand import METHODS as EXPAND_METHODS
from mmfuse.fusion import NORMS, get_method, methods
from mmfuse.rerankers.grid import parse_grid
from mmfuse.utils.files import atomic_write

BUILTIN_KINDS = ("visual", "audio", "ocr", "asr", "meta", "caption", "plugin")
AGGREGATIONS = ("max", "mean", "sum", "topn")

DEFAULT_CONFIG_TOML = '''\
# mmfuse pipeline config: retrievers -> fusion -> optional VLM reranker.
# Used by `mmfuse search/index/rerank --config FILE` (flags override it) and by
# `mmfuse.Pipeline.from_config(FILE)`. Every key is optional; the values shown are the defaults.

[index]
path = "mmfuse-index"        # LanceDB index directory, relative to this file
window = 10.0                # segment length in seconds
frames_per_segment = 4       # frames sampled per segment (visual, OCR, grids)
frame_size = 960             # longer side of decoded frames in pixels
workers = 1                  # files indexed in parallel
# metadata = "videos/metadata.json"   # sidecar with title/description/tags (default: VIDEO_DIR/metadata.json)
# text_model = "paraphrase-multilingual-MiniLM-L12-v2"   # dense text embedder (default: bundled all-MiniLM-L6-v2)

# One table per retriever. The table name is the retriever's name; `kind` defaults to the name for the
# built-in modalities visual, audio, ocr, asr, meta, caption. Set enabled = false to leave one out.

[retrievers.visual]
enabled = true
# CLIP via open_clip: a model name plus pretrained tag (downloads from the hub on first use), or a local
# checkpoint file. Without one of them the visual modality is skipped with a warning.
# model = "ViT-B-32"
# pretrained = "openai"
# checkpoint = "/path/to/open_clip_model.safetensors"
pooling = "mean"             # frame pooling: mean, max, softmax, maxsim
aggregation = "max"          # segment -> video score: max, mean, sum, topn

[retrievers.audio]
enabled = true
# model = "/path/to/clap-model-dir"   # transformers CLAP directory or hub name; none = skipped
aggregation = "max"

[retrievers.ocr]
enabled = true               # rapidocr (bundled models) + BM25 over character n-grams
aggregation = "max"

[retrievers.asr]
enabled = true               # faster-whisper tiny.en (bundled) + BM25
# model = "large-v3"         # any faster-whisper model: size name or CTranslate2 folder
# task = "translate"         # also index the English translation (retriever asr_en; multilingual models)
dense = true                 # also search the transcript with all-MiniLM-L6-v2 (bundled)
aggregation = "max"

[retrievers.meta]
enabled = true               # title/description/tags from the metadata sidecar
dense = true
aggregation = "max"

# Captions: a vision-language model describes each segment's frames (see docs/captions.md).
# [retrievers.caption]
# model = "Qwen/Qwen2.5-VL-7B-Instruct"   # served model name, or a local transformers model folder
# base_url = "http://localhost:8000/v1"   # OpenAI-compatible server; default: $MMFUSE_VLM_BASE_URL, $OPENAI_BASE_URL
# template = "prompts/caption.txt"        # prompt file (fields {frames}, {seconds}, {layout}); unset = built-in
# dense = true

# A plug-in retriever (any class with name, modality and search(queries, k) -> Run, or a SegmentEncoder):
# [retrievers.mine]
# kind = "plugin"
# ref = "mypackage.module:MyRetriever"   # or an entry point of group mmfuse.retrievers
# params = { threshold = 0.5 }           # keyword arguments for the class

[fusion]
# method = "rrf"             # any name from `mmfuse methods`; unset = the library's adaptive default
# norm = "min-max"           # unset = the method's default (rank methods such as rrf take none)
# weights = [1.0, 1.0]       # one per retriever, in the order above (weighted methods only)
depth = 100                  # candidates each retriever contributes
# params = { k = 60 }        # method parameters

[rerank]
enabled = false              # rerank the fused top candidates with a vision-language model
backend = "openai"           # openai (any OpenAI-compatible server) or transformers (local model)
# model = "Qwen/Qwen2.5-VL-7B-Instruct"
# base_url = "http://localhost:8000/v1"   # openai backend; default: $OPENAI_BASE_URL
top = 20                     # candidates reranked per query; the tail keeps its order
window = 20                  # sliding window size (back to front) when top > window
step = 10
grid = "2x2"                 # S-Grid rows x cols of sampled frames per candidate
cell = 224                   # grid cell size in pixels
subtitles = true             # send each candidate's ASR transcript with its grid
# cache = ".mmfuse-cache/grids"           # S-Grid cache directory

[expand]
# Query expansion with a language model at search time (see docs/expansion.md). Unset method = none.
# method = "q2e"             # q2e (sub-queries), hyde (hypothetical passages) or lamer (answers grounded in BM25 hits)
# n = 5                      # sub-queries or passages asked for (default: 5 for q2e, 4 for hyde and lamer)
# fusion = "entropy"         # fuses each retriever's q2e sub-query lists; unset = the library default
# template = "prompts/q2e.txt"             # prompt file (fields {query}, {n}, lamer: {candidates}); unset = built-in
# model = "Qwen/Qwen2.5-7B-Instruct"       # served model name, or a local transformers model folder
# base_url = "http://localhost:8000/v1"    # OpenAI-compatible server; default: $MMFUSE_LLM_BASE_URL, $OPENAI_BASE_URL
# api_key_env = "MY_SERVER_KEY"           # variable holding the API key; default: $MMFUSE_LLM_API_KEY, $OPENAI_API_KEY
candidates = 5               # lamer: first-retrieval videos shown to the model
# max_tokens = 464           # answer length limit (default: 80 per item + 64)
temperature = 0.0
timeout = 60.0               # seconds per request
retries = 2                  # retries on timeouts, 429 and 5xx
concurrency = 4              # requests in flight at once
# cache = ".mmfuse-cache/llm"              # answers cached here (default ~/.cache/mmfuse/llm); "" = no cache

[search]
k = 10                       # results per query
'''


def _error_line(exc: ValidationError, source: str) -> str:
    """The first pydantic error as ``FILE: [table] key: what is wrong; allowed: ...``."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    where = _where(loc)
    typ = err.get("type", "")
    if typ == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model is not None else ""
        key = loc[-1] if loc else "?"
        table = _where(loc[:-1]) or "top level"
        return f"{source}: unknown key {key!r} in {table}" + (f"; allowed: {allowed}" if allowed else "")
    msg = err.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    got_s = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) and typ != "missing" else ""
    if msg.startswith("["):  # the validator already named the table
        return f"{source}: {msg}{got_s}"
    return f"{source}: {where or 'config'}: {msg}{got_s}"


def _where(loc: list[str]) -> str:
    if not loc:
        return ""
    if len(loc) == 1:
        return f"[{loc[0]}]" if loc[0] in PipelineConfig.model_fields and loc[0] not in ("version",) else loc[0]
    if loc[0] == "retrievers" and len(loc) >= 2:
        head = f"[retrievers.{loc[1]}]"
        return head + (f" {'.'.join(loc[2:])}" if len(loc) > 2 else "")
    return f"[{loc[0]}] {'.'.join(loc[1:])}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    if not loc:
        return PipelineConfig
    if loc[0] == "retrievers":
        return RetrieverConfig if len(loc) == 2 else None
    field = PipelineConfig.model_fields.get(loc[0])
    ann = field.annotation if field else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) and len(loc) == 1 else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IndexSection(_Strict):
    """Where the index lives and how videos are cut into segments."""

    path: str = "mmfuse-index"
    window: float = Field(10.0, gt=0)
    frames_per_segment: int = Field(4, ge=1, le=64)
    frame_size: int | None = Field(960, ge=32)
    workers: int = Field(1, ge=1)
    metadata: str | None = None
    text_model: str | None = None


class RetrieverConfig(_Strict):
    """One retriever: a built-in modality of the index, or a plug-in class."""

    kind: Literal["visual", "audio", "ocr", "asr", "meta", "caption", "plugin"] | None = None
    enabled: bool = True
    model: str | None = None
    pretrained: str | None = None
    checkpoint: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"  # asr
    base_url: str | None = None  # caption
    template: str | None = None  # caption
    pooling: Literal[POOLINGS] = "mean"
    aggregation: Literal["max", "mean", "sum", "topn"] = "max"
    dense: bool = True
    ref: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _plugin_needs_ref(self) -> "RetrieverConfig":
        if self.kind == "plugin" and not self.ref:
            raise ValueError("kind = \"plugin\" needs ref = \"module:Class\" (or an entry point name)")
        return self


class FusionSection(_Strict):
    """Fusion method (None = the library default), normalization, weights, depth and method parameters."""

    method: str | None = None
    norm: str | None = None
    weights: list[float] | None = None
    depth: int = Field(100, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str | None) -> str | None:
        return _fusion_method(v)

    @field_validator("norm")
    @classmethod
    def _known_norm(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        names = list(NORMS) if not isinstance(NORMS, dict) else list(NORMS.keys())
        if v not in names:
            raise ValueError(f"unknown normalization {v!r}{_did_you_mean(v, names)}; allowed: {', '.join(names)}")
        return v

    @field_validator("weights")
    @classmethod
    def _positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (any(w < 0 for w in v) or sum(v) <= 0):
            raise ValueError("weights must be >= 0 with a positive sum")
        return v


class RerankSection(_Strict):
    """The VLM reranker: backend, model, how many candidates, window and the S-Grid shape."""

    enabled: bool = False
    backend: Literal["openai", "transformers"] = "openai"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    top: int = Field(20, ge=1)
    window: int = Field(20, ge=2)
    step: int = Field(10, ge=1)
    grid: str = "2x2"
    cell: int = Field(224, ge=16)
    subtitles: bool = True
    cache: str | None = None
    mode: Literal["listwise", "pointwise"] = "listwise"

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: str) -> str:
        try:
            parse_grid(v)
        except MmfuseError:
            raise ValueError("grid must look like ROWSxCOLS (e.g. \"2x2\"), at most 64 cells") from None
        return v

    @model_validator(mode="after")
    def _model_when_enabled(self) -> "RerankSection":
        if self.enabled and not self.model:
            raise ValueError("enabled = true needs model = \"NAME\" (the served model name or a local path)")
        if self.step > self.window:
            raise ValueError(f"step ({self.step}) must be <= window ({self.window})")
        return self


class ExpandSection(_Strict):
    """Query expansion: the method, the prompt, the fusion of q2e's sub-query lists and the language model."""

    method: Literal[EXPAND_METHODS] | None = None
    n: int | None = Field(None, ge=1, le=20)
    fusion: str | None = None
    fusion_params: dict[str, Any] = Field(default_factory=dict)
    template: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    candidates: int = Field(5, ge=1, le=100)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    timeout: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0)
    concurrency: int = Field(4, ge=1)
    cache: str | None = None

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, v: str | None) -> str | None:
        return _fusion_method(v)


class SearchSection(_Strict):
    k: int = Field(10, ge=1)


def _default_retrievers() -> dict[str, RetrieverConfig]:
    return {m: RetrieverConfig(kind=m) for m in ("visual", "audio", "ocr", "asr", "meta")}


class PipelineConfig(_Strict):
    """The whole config file. ``base_dir`` (not in the file) resolves relative paths: the file's folder."""

    index: IndexSection = Field(default_factory=IndexSection)
    retrievers: dict[str, RetrieverConfig] = Field(default_factory=_default_retrievers)
    fusion: FusionSection = Field(default_factory=FusionSection)
    rerank: RerankSection = Field(default_factory=RerankSection)
    expand: ExpandSection = Field(default_factory=ExpandSection)
    search: SearchSection = Field(default_factory=SearchSection)

    @field_validator("retrievers", mode="after")
    @classmethod
    def _kinds(cls, v: dict[str, RetrieverConfig]) -> dict[str, RetrieverConfig]:
        for name, r in v.items():
            if r.kind is None:
                if name not in BUILTIN_KINDS[:-1]:
                    raise ValueError(f"[retrievers.{name}] needs kind = one of {', '.join(BUILTIN_KINDS)} "
                                     f"(only visual, audio, ocr, asr, meta, caption default to their own name)")
                r.kind = name  # type: ignore[assignment]
        return v

    _named: frozenset = PrivateAttr(default_factory=frozenset)

    # --- conveniences ------------------------------------------------------------------------------------------
    @property
    def named_retrievers(self) -> frozenset:
        """The ``[retrievers.NAME]`` tables the file itself holds (the built-ins it leaves out come from the
        defaults)."""
        return self._named

    def enabled_retrievers(self) -> dict[str, RetrieverConfig]:
        return {n: r for n, r in self.retrievers.items() if r.enabled}

    def resolve(self, path: str | None, base_dir: str | os.PathLike | None) -> str | None:
        """``path`` relative to ``base_dir`` (the config file's folder) unless absolute; ``~`` expanded."""
        if not path:
            return path
        p = Path(os.path.expanduser(path))
        return str(p if p.is_absolute() or base_dir is None else Path(base_dir) / p)


def _fusion_method(v: str | None) -> str | None:
    """A fusion method name as the config takes it: None, "" and "default" mean the library default."""
    if v in (None, "", "default"):
        return None
    try:
        get_method(v)
    except Exception as e:  # ParameterError with "did you mean"
        raise ValueError(f"unknown fusion method {v!r}{_did_you_mean(v, list(methods()))}; allowed: "
                         f"{', '.join(methods())}") from e
    return v


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name).lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_config(data: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a dict (as read from TOML) into a :class:`PipelineConfig`; errors are one-line ConfigErrors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings")
    data = dict(data)
    named: frozenset = frozenset()
    if isinstance(data.get("retrievers"), dict):
        named = frozenset(data["retrievers"])
        # A partial [retrievers] section replaces the defaults, except that built-in tables the user left out
        # stay as in the default file (so `[retrievers.ocr] enabled = false` does not drop the others).
        merged: dict[str, Any] = {m: {"kind": m} for m in ("visual", "audio", "ocr", "asr", "meta")}
        for name, table in data["retrievers"].items():
            merged[name] = table
        data["retrievers"] = merged
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_error_line(e, source)) from None
    cfg._named = named
    return cfg


def load_config(path: str | os.PathLike) -> tuple[PipelineConfig, Path]:
    """Read and validate a TOML config; returns (config, the file's folder for relative paths)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file does not exist" + ("" if p.exists() else " (create one with `mmfuse init`)"))
    try:
        raw = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config: {e}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    return parse_config(data, str(p)), p.resolve().parent


def write_default_config(path: str | os.PathLike, force: bool = False) -> Path:
    """Write the commented default config to ``path`` (atomically); refuses to overwrite unless ``force``."""
    p = Path(path)
    if p.is_dir():
        p = p / "mmfuse.toml"
    if p.exists() and not force:
        raise ConfigError(f"{p}: already exists; pass --force to overwrite it")
    if not p.parent.exists():
        raise ConfigError(f"{p.parent}: folder does not exist")
    with atomic_write(p, "w") as fh:
        fh.write(DEFAULT_CONFIG_TOML)
    return p
