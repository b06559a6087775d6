"""Atomic file writes: a file appears under its final name complete, or not at all.

Data is written to a hidden temporary name in the same folder (same file system, so the final
``os.replace`` is atomic) and renamed only once it is fully written. A killed process leaves at
most a ``.*.part`` file behind, never a truncated file under a final name; :func:`remove_partials`
sweeps those away when the work is re-run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import OutputError

PARTIAL_SUFFIX = ".part"


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under; unique per final name and per process."""
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def write_plain(path: str | Path, data: bytes) -> None:
    """Create or truncate ``path`` and write ``data``: three system calls, no buffering layers.

    Not atomic by itself: for files inside a staging folder, and under :func:`write_bytes`. On an
    error the file is removed and the ``OSError`` propagates."""
    try:
        fd = os.open(path, _WRITE_FLAGS, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError:
        _discard(path)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    tmp = partial_path(path)
    try:
        write_plain(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise output_error(path, exc) from exc


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """A binary file object for ``path`` that is renamed into place only if the block succeeds."""
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise output_error(path, exc) from exc
    except BaseException:
        _discard(tmp)
        raise


def remove_partials(folder: Path) -> int:
    """Delete temporary files left in ``folder`` (recursively) by an interrupted run."""
    removed = 0
    if folder.is_dir():
        for tmp in folder.rglob(f".*{PARTIAL_SUFFIX}"):
            _discard(tmp)
            removed += 1
    return removed


def output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}")


def _discard(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
