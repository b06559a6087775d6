"""Atomic file writes: a file appears under its final name complete, or not at all.

Data is written to a hidden temporary name in the same folder (same file system, so the final
``os.replace`` is atomic) and renamed only once it is fully written. A killed process leaves at
most a ``.NAME.PID.part`` file behind, never a truncated file under a final name;
:func:`remove_partials` sweeps those away when the work is re-run. Writers that insist on a file
name ending (Keras: ``.keras``, ``.weights.h5``) get the same name with that ending added
(``.last.keras.PID.part.keras``), so one sweep finds every kind.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError

PARTIAL_SUFFIX = ".part"


# .NAME.PID.part, optionally followed by the ending a writer requires (.keras, .weights.h5).
_PARTIAL_NAME = re.compile(r"\..+\.\d+\.part(\.[A-Za-z0-9]+)*")


def partial_path(path: Path, ending: str = "") -> Path:
    """The temporary name ``path`` is written under; unique per final name and per process.

    ``ending`` is appended for writers that check the file name (Keras saves only to names
    ending in ``.keras``): ``partial_path(Path("last.keras"), ".keras")`` is
    ``.last.keras.PID.part.keras``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}{ending}")


def is_partial(name: str) -> bool:
    """Whether ``name`` is a temporary name of :func:`partial_path` (with or without an ending)."""
    return _PARTIAL_NAME.fullmatch(name) is not None


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
        for tmp in folder.rglob(f".*{PARTIAL_SUFFIX}*"):
            if is_partial(tmp.name) and not tmp.is_dir():
                _discard(tmp)
                removed += 1
    return removed


def output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}")


def _discard(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
