"""Arrays a source reads kept in a temporary file, mapped, rather than in the process's memory.

An export reads CIFAR whole before its workers start, and had held every decoded image in its main
process (184 MB of pixels for CIFAR-10, on top of the archive's 180 MB of pickles while they were
parsed): its peak grew 4.2 KiB an image. Inside :func:`arrays_on_disk` (the export command opens its
source there) the archive's members and each batch's pixels go to temporary files as they are read,
one batch in memory at a time, and the batch's images are a read-only ``np.memmap`` of its file.
The page cache holds them; the export's own process touches none of the pixels, and each forked
worker maps the pages of the images it writes and unmaps them after each task
(:func:`release_pages`). The files are unlinked as they are made, so nothing is left behind,
whatever ends the process. Where no temporary file can be written, the arrays stay in memory as
before.
"""

from __future__ import annotations

import contextlib
import contextvars
import mmap
import os
import tempfile
import weakref
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

_ON_DISK: contextvars.ContextVar[bool] = contextvars.ContextVar("cifarkit_arrays_on_disk", default=False)


@contextlib.contextmanager
def arrays_on_disk() -> Iterator[None]:
    """Sources read inside keep their large arrays in unlinked temporary files (see the notes)."""
    token = _ON_DISK.set(True)
    try:
        yield
    finally:
        _ON_DISK.reset(token)


def on_disk() -> bool:
    return _ON_DISK.get()


def keep_array(array: np.ndarray) -> np.ndarray:
    """``array``, or inside :func:`arrays_on_disk` a read-only map of a temporary file holding it."""
    if not _ON_DISK.get() or array.size == 0:
        return array
    try:
        with tempfile.TemporaryFile(prefix="cifarkit-") as handle:  # unlinked at once where the OS allows
            _write_rows(handle.fileno(), array)
            mapped = np.memmap(handle, dtype=array.dtype, mode="r", shape=array.shape)  # the map keeps the file
    except OSError:  # no room, or no writable temporary folder: memory, as without the option
        return array
    _MAPPED[:] = [ref for ref in _MAPPED if ref() is not None] + [weakref.ref(mapped)]
    return mapped


_MAPPED: list[weakref.ref] = []  # every map keep_array made, for release_pages


def release_pages() -> None:
    """Unmap from this process the pages of every kept array it has read (the page cache keeps
    them; a later read maps them again): a worker that has written its images holds none of them."""
    for ref in _MAPPED:
        mapped = ref()
        if mapped is not None and isinstance(getattr(mapped, "_mmap", None), mmap.mmap):
            with contextlib.suppress(OSError, ValueError):  # a closed map, or no madvise on this system
                mapped._mmap.madvise(mmap.MADV_DONTNEED)


class SpilledBytes:
    """Bytes in an unlinked temporary file, written a piece at a time, read back whole when asked for
    (or a range at a time, :meth:`read_at`, the file kept: a tree's listing). The file is closed,
    and its space freed, when the last holder lets go of it or the process ends."""

    __slots__ = ("_handle", "size", "__weakref__")

    def __init__(self) -> None:
        self._handle = tempfile.TemporaryFile(prefix="cifarkit-")
        self.size = 0
        weakref.finalize(self, self._handle.close)

    def write(self, data: bytes) -> None:
        _write_all(self._handle.fileno(), data)
        self.size += len(data)

    @contextlib.contextmanager
    def stream(self) -> Iterator[BinaryIO]:
        """The bytes as a file, from its start, for a reader that takes what it needs piece by piece
        (the unpickler copies an array's bytes once, where whole bytes in memory cost them twice)."""
        try:
            self._handle.seek(0)
            yield self._handle
        finally:
            self._handle.close()

    def read(self) -> bytes:
        try:
            return self.read_at(0, self.size)
        finally:
            self._handle.close()

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``, the file left open; OSError for a range past its end."""
        end = offset + size
        if offset < 0 or size < 0 or end > self.size:
            raise OSError(f"bytes {offset:,}-{end:,} asked of a temporary file of {self.size:,}")
        parts, at = [], offset
        while at < end:  # pread may return less than asked for; it leaves a shared file's position alone
            part = os.pread(self._handle.fileno(), end - at, at)
            if not part:
                raise OSError(f"a temporary file ended at byte {at:,} of {self.size:,}")
            parts.append(part)
            at += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)


READ_PIECE = 1 << 20


def read_member(handle, size: int) -> bytes | SpilledBytes:
    """``size`` bytes of ``handle`` (a tar member, say): read whole, or inside :func:`arrays_on_disk`
    a megabyte at a time into a :class:`SpilledBytes` (tarfile's own whole read holds about four
    copies of a member: 170 MB for CIFAR-10's). Fewer bytes where the stream ends early."""
    if not _ON_DISK.get():
        return handle.read(size)
    try:
        spilled = SpilledBytes()
    except OSError:
        return handle.read(size)
    while spilled.size < size:
        piece = handle.read(min(READ_PIECE, size - spilled.size))
        if not piece:
            break
        spilled.write(piece)
    return spilled


def as_bytes(kept: bytes | SpilledBytes) -> bytes:
    return kept.read() if isinstance(kept, SpilledBytes) else kept


def byte_count(kept: bytes | SpilledBytes) -> int:
    return kept.size if isinstance(kept, SpilledBytes) else len(kept)


ROWS_BYTES = 8 << 20  # a strided array is copied to its file this many bytes at a time


def _write_rows(fd: int, array: np.ndarray) -> None:
    """``array``'s bytes in C order; a strided one (a view of records' columns) a few MB at a time,
    never whole, so writing it costs no second copy of the pixels."""
    if array.flags.c_contiguous or array.ndim == 0:
        _write_all(fd, np.ascontiguousarray(array))
        return
    rows = max(1, ROWS_BYTES // max(1, array[0].nbytes))
    for start in range(0, len(array), rows):
        _write_all(fd, np.ascontiguousarray(array[start : start + rows]))


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]
