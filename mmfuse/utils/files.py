"""Output paths: the one place every mmfuse writer goes through, so that one set of rules holds for every output.

* ``-`` is standard output.
* A character device (``/dev/null``, a terminal), a FIFO, or a path naming an open descriptor (``/dev/stdout``,
  ``/dev/fd/N``) is opened and written through: it is never replaced by a regular file.
* A symlink is resolved and its target is written (atomically); the link stays where it points.
* A regular file, or a new path, is written atomically: a temp file in the target's directory, fsync, rename. An
  interrupted write leaves the old file, or nothing, never half a file. A new file gets the usual mode
  (0666 & ~umask, as any tool would create it); an existing file keeps its mode.
* Anything else at the path (a directory, a socket, a block device) is refused with one clear error.
* :func:`check_writable` says up front, before any work, whether a path can be written by these rules, and
  :func:`refuse_input_overwrite` refuses an output that is one of the inputs (the same file, also through a symlink
  or a hard link) unless forced: the input would be lost.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from mmfuse.errors import InputError

__all__ = ["atomic_write", "atomic_path", "check_writable", "refuse_input_overwrite", "distinct_names", "STDOUT"]

STDOUT = "-"
_FD_PATH = re.compile(r"/(?:proc/(?:self|\d+)|dev)/fd/\d+")


def _names_descriptor(p: str) -> bool:
    """True when ``p`` is, or links through, a path of an open file descriptor (``/dev/stdout`` -> /proc/self/fd/1).

    Such a path may resolve to a regular file (stdout redirected to a file); it must still be written through,
    as ``cmd > file`` expects, not replaced by a renamed temp file.
    """
    for _ in range(40):
        if _FD_PATH.fullmatch(os.path.abspath(p)):
            return True
        if not os.path.islink(p):
            return False
        p = os.path.join(os.path.dirname(p), os.readlink(p))
    return False


def _target(path: str | os.PathLike) -> tuple[str, Path | None]:
    """How to write ``path``: ('stdout', None), ('stream', path) for write-through, or ('file', real path)."""
    s = os.fspath(path)
    if s == STDOUT:
        return "stdout", None
    p = Path(s)
    try:
        st = os.stat(p)  # follows symlinks
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{p}: cannot write: {e.strerror}") from None
    if st is None:
        return "file", Path(os.path.realpath(p))  # a new file, or where a dangling symlink points
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or _names_descriptor(s):
        return "stream", p
    if stat.S_ISREG(st.st_mode):
        return "file", Path(os.path.realpath(p))
    kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a block device" if stat.S_ISBLK(st.st_mode) else "not a regular file")
    raise InputError(f"{p}: cannot write: it is {kind}, not a file")


def _check_parent(path: Path, shown: str | os.PathLike) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{shown}: cannot write: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{shown}: cannot write: directory {parent} is not writable")
    return parent


def _umask() -> int:
    """The process umask, read without changing it where the system allows (setting it races with threads)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_mode(tmp: str | os.PathLike, target: Path) -> None:
    """The mode the file at ``target`` will have: the old file's, or a new file's (0666 & ~umask, not mkstemp's
    0600)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


@contextlib.contextmanager
def _renamed_into_place(tmp: str | os.PathLike, target: Path) -> Iterator[None]:
    """Rename ``tmp`` over ``target``, with the mode ``target`` should have, when the block succeeds; else remove it."""
    try:
        yield
        _give_mode(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Raise InputError now, before any work is done, when ``path`` cannot be written later by the module's rules: as
    a file (a directory or a socket sits there, or its folder is missing or read-only; stdout, devices and FIFOs
    pass) or, with ``folder=True``, as a folder to write files into (created with its parents when missing, so the
    nearest existing one must be a writable folder)."""
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
    kind, target = _target(path)
    if kind == "file":
        _check_parent(target, path)


def refuse_input_overwrite(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], force: bool = False) -> None:
    """Raise InputError when the output ``out`` is the same file as one of ``inputs``, unless ``force``.

    Writing the output would replace that input (the atomic rename keeps nothing of it). "The same file" means the
    same inode, so a second name, a symlink or ``./a`` vs ``a`` are caught too; only existing regular files can be
    inputs that get lost, so stdout, devices, FIFOs and paths that do not exist yet pass.
    """
    if force or os.fspath(out) == STDOUT:
        return
    try:
        st = os.stat(out)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or _names_descriptor(os.fspath(out)):
        return
    for p in inputs:
        if os.fspath(p) == STDOUT:
            continue
        try:
            if os.path.samestat(st, os.stat(p)):
                raise InputError(f"{out}: is also an input ({p}); writing it would lose that input. Choose another "
                                 f"output file (or pass --force to replace it)")
        except OSError:
            continue


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing by the module's rules; a regular file is renamed into place only if the block
    succeeds (a crash or an exception leaves the old file, or nothing)."""
    if "b" in mode:
        encoding = None
    kind, target = _target(path)
    if kind == "stdout":
        sys.stdout.flush()
        out = sys.stdout.buffer if "b" in mode else sys.stdout
        yield out
        out.flush()
        return
    if kind == "stream":
        with open(target, mode, encoding=encoding) as fh:
            yield fh
        return
    parent = _check_parent(target, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror}") from None
    with _renamed_into_place(tmp, target), os.fdopen(fd, mode, encoding=encoding) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path for libraries that write by file name (pyarrow, PIL); on success its bytes land at
    ``path`` by the module's rules (renamed into place, or copied through to stdout, a device or a FIFO)."""
    kind, target = _target(path)
    suffix = Path(os.fspath(path)).suffix
    if kind != "file":
        fd, tmp = tempfile.mkstemp(prefix=".mmfuse-out.", suffix=suffix)
        os.close(fd)
        try:
            yield Path(tmp)
            with open(tmp, "rb") as src:
                if kind == "stdout":
                    sys.stdout.flush()
                    shutil.copyfileobj(src, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                else:
                    with open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return
    parent = _check_parent(target, path)
    tmp = parent / f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp{suffix}"
    with _renamed_into_place(tmp, target):
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


def cache_home() -> Path:
    """Where mmfuse keeps caches between runs (S-Grids, language-model answers): ``$MMFUSE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/mmfuse`` (``~/.cache/mmfuse``)."""
    base = os.environ.get("MMFUSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mmfuse")
    return Path(base)
