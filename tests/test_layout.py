"""The package layout: each room imports only from rooms below it, no module imports another room's private names,
and ``import mmfuse`` loads no heavy dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mmfuse"
# bottom to top; a room may import rooms of a lower level (same-level rooms are independent of each other)
LEVELS = {
    "errors": 0, "utils": 1, "_deprecated": 1,
    "runs": 2,
    "fusion": 3, "eval": 3,
    "encoders": 4, "store": 4,
    "retrievers": 5, "llm": 5,
    "ingest": 6, "expand": 6,
    "rerankers": 7, "benchmarks": 7,
    "config": 8,
    "pipeline": 9,
    "app": 10,
}


def _module(p: Path) -> str:
    parts = p.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(p: Path):
    """(target module, imported names, line) for every mmfuse import in the file, relative ones resolved."""
    mod = _module(p)
    pkg = mod if p.name == "__init__.py" else mod.rpartition(".")[0]
    for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            if target == "mmfuse":  # `from mmfuse import runs` imports a room
                for a in n.names:
                    yield f"mmfuse.{a.name}", [], n.lineno
            elif target.startswith("mmfuse."):
                yield target, [a.name for a in n.names], n.lineno
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.startswith("mmfuse."):
                    yield a.name, [], n.lineno


def _room(mod: str) -> str:
    return mod.split(".")[1] if "." in mod else ""


def _files():
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__main__.py" and p != PKG / "__init__.py")


def test_every_room_is_declared():
    rooms = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert rooms == set(LEVELS), f"undeclared rooms: {rooms - set(LEVELS)}; gone: {set(LEVELS) - rooms}"


def test_rooms_import_only_rooms_below():
    bad = []
    for p in _files():
        here = _room(_module(p))
        for target, _, line in _imports(p):
            there = _room(target)
            if there and there != here and LEVELS[there] >= LEVELS[here]:
                bad.append(f"{p.relative_to(PKG.parent)}:{line}: {here} (level {LEVELS[here]}) imports {target} "
                           f"(level {LEVELS[there]})")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_rooms():
    bad = []
    for p in _files():
        here = _room(_module(p))
        for target, names, line in _imports(p):
            if _room(target) == here or target == "mmfuse._deprecated":
                continue
            private = [n for n in names if n.startswith("_")] + \
                      [s for s in target.split(".")[1:] if s.startswith("_")]
            if private:
                bad.append(f"{p.relative_to(PKG.parent)}:{line}: {target} {private}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stmt", ["import mmfuse", "import mmfuse.fusion, mmfuse.eval, mmfuse.runs",
                                  "import mmfuse.pipeline, mmfuse.app.cli"])
def test_import_loads_no_heavy_dependency(stmt):
    heavy = ("torch", "open_clip", "transformers", "sentence_transformers", "faster_whisper", "rapidocr_onnxruntime",
             "av", "lancedb", "ray", "bm25s", "PIL", "matplotlib", "fastapi", "uvicorn", "starlette")
    code = f"import sys; {stmt}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"{stmt} imported {out}"
