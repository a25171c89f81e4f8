"""S-Grid serialization: a video as one labelled image of sampled frames, cached on disk by content and parameters."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmfuse.errors import ParameterError, unknown
from mmfuse.ingest.frames import sample_frames, tile_frames
from mmfuse.ingest.probe import content_hash, probe
from mmfuse.utils.files import atomic_path, cache_home

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

SAMPLINGS = ("uniform", "scene")
# The largest grid built: VLMs see a few hundred pixels a side, and the limits stop a typo such as a 20000 px cell
# from allocating gigabytes (a 2x2 grid of 224 px cells is 448 x 448).
MAX_SIDE = 8192  # pixels per side of the whole grid
MAX_PIXELS = 4096 * 4096  # width x height of the whole grid (48 MB as RGB)
MAX_CELLS = 64  # rows x cols
_INTS = re.compile(r"[0-9]+(?:x[0-9]+)?")
# Bump when the pixels a given spec produces change, so stale cache entries are never reused.
_GRID_VERSION = 1


@dataclass(frozen=True)
class GridSpec:
    """How a video becomes a grid: ``rows`` x ``cols`` cells of ``cell`` = (width, height) pixels each."""

    rows: int = 2
    cols: int = 2
    cell: tuple[int, int] = (224, 224)
    sampling: str = "uniform"
    background: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ParameterError(f"grid must be at least 1x1, got {self.rows}x{self.cols}")
        if isinstance(self.cell, int):
            object.__setattr__(self, "cell", (int(self.cell), int(self.cell)))
        w, h = self.cell
        if w < 16 or h < 16:
            raise ParameterError(f"grid cell must be at least 16x16 pixels, got {w}x{h}")
        if self.rows * self.cols > MAX_CELLS:
            raise ParameterError(f"grid {self.rows}x{self.cols} has {self.rows * self.cols} cells; at most {MAX_CELLS}")
        gw, gh = self.size
        if max(gw, gh) > MAX_SIDE or gw * gh > MAX_PIXELS:
            raise ParameterError(f"grid {self.rows}x{self.cols} of {w}x{h} px cells would be {gw}x{gh} px; at most "
                                 f"{MAX_SIDE} px a side and {MAX_PIXELS} px in all: use smaller cells or fewer frames")
        if self.sampling not in SAMPLINGS:
            raise unknown("grid sampling", self.sampling, SAMPLINGS)

    @property
    def n_frames(self) -> int:
        return self.rows * self.cols

    @property
    def size(self) -> tuple[int, int]:
        return (self.cols * self.cell[0], self.rows * self.cell[1])

    @functools.cached_property
    def _key(self) -> str:
        d = asdict(self)
        d["version"] = _GRID_VERSION
        return json.dumps(d, sort_keys=True)

    def key(self) -> str:
        """A stable text of every parameter that changes the pixels (cache key material)."""
        return self._key


def parse_grid(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"2x3"`` -> (rows=2, cols=3); tuples pass through."""
    if isinstance(text, tuple):
        return text
    t = str(text).strip().lower().replace("*", "x")
    if not _INTS.fullmatch(t) or "x" not in t:
        raise ParameterError(f"--grid must look like ROWSxCOLS (e.g. 2x2), got {text!r}")
    rows, cols = (int(p) for p in t.split("x"))
    if rows < 1 or cols < 1 or rows * cols > MAX_CELLS:
        raise ParameterError(f"--grid {text!r}: rows and cols must be >= 1 and at most {MAX_CELLS} cells in all")
    return rows, cols


def parse_cell(text: str | int | tuple[int, int]) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"320x180"`` -> (320, 180). Sizes are checked by :class:`GridSpec`."""
    if isinstance(text, tuple):
        return text
    if isinstance(text, int):
        return (text, text)
    t = str(text).strip().lower()
    if not _INTS.fullmatch(t):
        raise ParameterError(f"--cell must be N or WxH pixels, got {text!r}")
    w, _, h = t.partition("x")
    return (int(w), int(h or w))


# ---------------------------------------------------------------------------------------------------------------
# Frame sampling

def _frames(path: Path, *, n: int | None = None, times: list[float] | None = None, size: int | None = None):
    if times is not None:
        return sample_frames(path, times=times, size=size)
    return sample_frames(path, n=n, size=size)


def scene_times(path: Path, n: int, *, probe_frames: int | None = None) -> list[float]:
    """``n`` timestamps spread over the video's shots: every shot gets a frame, longer shots get more.

    Decodes ``probe_frames`` small grey thumbnails uniformly and cuts where consecutive thumbnails differ far
    more than usual (3x the median difference and at least 10 grey levels); with more shots than frames the
    ``n - 1`` strongest cuts win. Without cuts this is uniform sampling.
    """
    import numpy as np

    duration = float(probe(path).duration or 0.0)
    m = probe_frames or max(4 * n, 24)
    if duration <= 0 or n <= 1:
        return [duration / 2.0] * max(n, 1)
    small = sample_frames(path, times=list((np.arange(m) + 0.5) * duration / m), size=32)
    m = len(small)
    if m < 2:
        return list((np.arange(n) + 0.5) * duration / n)
    # frames of one video share a size, so they stack into one array of grey thumbnails
    arr = np.stack([np.asarray(f, dtype=np.float32).mean(axis=2) for f in small]).reshape(m, -1)
    diff = np.abs(np.diff(arr, axis=0)).mean(axis=1)
    strong = np.flatnonzero(diff > max(3.0 * float(np.median(diff)), 10.0))
    cuts = np.sort(strong[np.argsort(-diff[strong], kind="stable")][: n - 1]) + 1
    bounds = np.concatenate([[0], cuts, [m]]) * (duration / m)
    lengths = np.diff(bounds)
    # one frame per shot, the rest by largest remainder of the shot-length share
    share = lengths / lengths.sum() * (n - len(lengths))
    alloc = 1 + np.floor(share).astype(int)
    rest = n - int(alloc.sum())
    alloc[np.argsort(-(share - np.floor(share)), kind="stable")[:rest]] += 1
    times: list[float] = []
    for (a, b), k in zip(zip(bounds[:-1], bounds[1:]), alloc):
        times += list(a + (np.arange(k) + 0.5) * (b - a) / k)
    return [float(t) for t in times]


def sample_times(path: Path, spec: GridSpec) -> list[float] | None:
    """Timestamps for the grid's frames, or None to let ``sample_frames`` spread ``n`` uniformly."""
    if spec.sampling == "scene":
        return scene_times(path, spec.n_frames)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Drawing

def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def tile(frames, spec: GridSpec) -> "Image.Image":
    """Tile frames row-major (time runs left to right, top to bottom); missing cells stay background."""
    return tile_frames(frames, spec.rows, spec.cols, spec.cell, spec.background)


def draw_label(img: "Image.Image", label: str) -> "Image.Image":
    """Return a copy with ``label`` (e.g. "[3]") in a high-contrast box at the top-left corner."""
    from PIL import ImageDraw

    out = img.copy()
    draw = ImageDraw.Draw(out)
    size = max(12, min(out.width, out.height) // 8)
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
    pad = max(2, size // 6)
    draw.rectangle((0, 0, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), fill=(255, 230, 0))
    draw.text((pad - x0, pad - y0), label, font=font, fill=(0, 0, 0))
    return out


def placeholder(spec: GridSpec, note: str = "video unavailable") -> "Image.Image":
    """A grey grid standing in for a candidate whose video is missing or unreadable."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", spec.size, (96, 96, 96))
    draw = ImageDraw.Draw(img)
    font = _font(max(10, min(spec.size) // 14))
    x0, y0, x1, y1 = draw.textbbox((0, 0), note, font=font)
    draw.text(((spec.size[0] - (x1 - x0)) // 2 - x0, (spec.size[1] - (y1 - y0)) // 2 - y0), note,
              font=font, fill=(235, 235, 235))
    return img


# ---------------------------------------------------------------------------------------------------------------
# Cache

def default_cache_dir() -> Path:
    """Where grids are kept between runs unless told otherwise: ``grids`` in :func:`mmfuse.utils.files.cache_home`
    (``$MMFUSE_CACHE_DIR``, else ``~/.cache/mmfuse``)."""
    return cache_home() / "grids"


class GridCache:
    """Builds grids and keeps them on disk, named by sha256(content hash + grid parameters).

    Entries are raw ``.npy`` arrays (about 600 KB for a 2x2 grid of 224 px cells): reading one costs well
    under a millisecond, where decoding a PNG costs tens. Content hashes are remembered per
    (path, size, mtime) in ``hashes.jsonl`` so a cache hit never re-reads the video. The last
    ``memory_items`` grids also stay decoded in memory. ``cache_dir=None`` keeps everything in memory.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, memory_items: int = 256):
        from collections import OrderedDict

        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._hashes: dict[tuple[str, int, int], str] = {}
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._load_hashes()
        self._memory: OrderedDict[str, Any] = OrderedDict()
        # without a disk cache, memory is the only copy: keep every grid
        self.memory_items = memory_items if self.cache_dir is not None else 1 << 62
        self.hits = 0
        self.misses = 0

    def _load_hashes(self) -> None:
        f = self.cache_dir / "hashes.jsonl"
        if not f.exists():
            return
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                try:
                    p, size, mtime, h = json.loads(line)
                    self._hashes[(p, int(size), int(mtime))] = str(h)
                except (ValueError, TypeError):
                    continue  # a line cut by a crash

    def content_hash(self, path: Path) -> str:
        st = path.stat()
        k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        h = self._hashes.get(k)
        if h is None:
            h = self._hashes[k] = content_hash(path)
            if self.cache_dir is not None:
                # one short line per new file; appends from parallel processes interleave by whole lines
                with open(self.cache_dir / "hashes.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps([k[0], k[1], k[2], h]) + "\n")
        return h

    def key(self, path: Path, spec: GridSpec) -> str:
        return hashlib.sha256(f"{self.content_hash(path)}\n{spec.key()}".encode()).hexdigest()

    def _remember(self, key: str, img) -> None:
        self._memory[key] = img
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def get(self, path: str | os.PathLike, spec: GridSpec) -> "Image.Image":
        """The unlabelled grid for ``path``; raises ``MediaError`` / ``OSError`` if it cannot be read."""
        import numpy as np
        from PIL import Image

        path = Path(path)
        key = self.key(path, spec)
        if key in self._memory:
            self.hits += 1
            self._memory.move_to_end(key)
            return self._memory[key]
        file = self.cache_dir / key[:2] / f"{key}.npy" if self.cache_dir is not None else None
        if file is not None and file.exists():
            try:
                img = Image.fromarray(np.load(file, allow_pickle=False))
                self.hits += 1
                self._remember(key, img)
                return img
            except (OSError, ValueError):
                pass  # a damaged cache entry is rebuilt below
        self.misses += 1
        img = build_grid(path, spec)
        if file is not None:
            file.parent.mkdir(exist_ok=True)
            with atomic_path(file) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(img), allow_pickle=False)
        self._remember(key, img)
        return img


def build_grid(path: str | os.PathLike, spec: GridSpec | None = None) -> "Image.Image":
    """Sample ``spec.n_frames`` frames from ``path`` and tile them (no label, no cache)."""
    spec = spec or GridSpec()
    path = Path(path)
    times = sample_times(path, spec)
    size = max(spec.cell)
    frames = _frames(path, times=times, size=size) if times is not None else _frames(path, n=spec.n_frames, size=size)
    if not frames:  # audio-only files: say so instead of showing a black grid
        return placeholder(spec, "no picture (audio only)")
    return tile(frames, spec)
