"""Atomic file writes shared by every writer (temp file in the target directory, fsync, rename) and the checks every
output goes through first: writable, and not one of the inputs."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from mmfuse.errors import InputError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash or exception leaves the old file (or nothing) in place, never a half-written one.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: cannot write: directory {parent} does not exist")
    if "b" in mode:
        encoding = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for libraries that write by file name (pyarrow, PIL)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: cannot write: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{path}: cannot write: directory {parent} is not writable")
    tmp = parent / f".{path.name}.{os.getpid()}.tmp{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def refuse_input_overwrite(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], force: bool = False) -> None:
    """Raise InputError when the output ``out`` is the same file as one of ``inputs``, unless ``force``.

    Writing the output would replace that input (the atomic rename keeps nothing of it). "The same file" means the
    same inode, so a second name, a symlink or ``./a`` vs ``a`` are caught too; only existing regular files can be
    inputs that get lost, so devices, FIFOs and paths that do not exist yet pass.
    """
    if force:
        return
    try:
        st = os.stat(out)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    for p in inputs:
        try:
            if os.path.samestat(st, os.stat(p)):
                raise InputError(f"{out}: is also an input ({p}); writing it would lose that input. Choose another "
                                 f"output file (or pass --force to replace it)")
        except OSError:
            continue


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Raise InputError now, before any work is done, when ``path`` cannot be written later: as a file (it is a
    directory, or its folder is missing or read-only) or, with ``folder=True``, as a folder to write files into
    (created with its parents when missing, so the nearest existing one must be a writable folder)."""
    p = Path(path)
    if folder:
        if p.exists() and not p.is_dir():
            raise InputError(f"{p}: is a file; give a folder for the output files")
        base = p
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise InputError(f"{p}: cannot write: {base} is not a writable folder")
        return
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name")
    if not parent.is_dir():
        raise InputError(f"{p}: cannot write: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{p}: cannot write: directory {parent} is not writable")


def distinct_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A short label per path, unique among ``paths``: the file name, or as many trailing folders as it takes to
    tell two files of the same name apart (``a/run.trec``, ``b/run.trec``); the same file given twice gets ``#2``."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(parts)
    while True:
        labels = [os.path.join(*pp[-d:]) for pp, d in zip(parts, depth)]
        seen: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            seen.setdefault(lab, []).append(i)
        grow = [i for group in seen.values() if len({parts[j] for j in group}) > 1 for i in group
                if depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    count: dict[str, int] = {}
    out = []
    for lab in labels:
        count[lab] = count.get(lab, 0) + 1
        out.append(lab if count[lab] == 1 else f"{lab}#{count[lab]}")
    return out
