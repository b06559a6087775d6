"""The paths of many image files, held compactly: in memory for a small tree, on disk for a large one.

A list of ``Path`` objects costs about 460 bytes a file (the object, its cached string, its
parts) and a second list of relative names as much again; at ImageNet's 1.28 million files that
is over a GB before anything is written. :class:`FileNames` keeps every name of a listing as UTF-8
bytes one after another, with where each starts, its length and which folder holds it: 16 bytes a
file beside the name itself. Items are made as ``str`` when asked for, a chunk at a time; slices
are views sharing the same names.

A small listing keeps them in memory (one ``bytes`` and numpy arrays). A large one
(:mod:`.listing` decides) keeps them in two unlinked temporary files (:class:`.spill.SpilledBytes`),
the names and a :data:`RECORD` a file, and reads a chunk's records and names with ``pread`` as
they are asked for: nothing is mapped, so what a pass over the names touched is not left in the
process's memory. A view of such a listing is a ``range`` of its records; a selection by indices
or a mask is an index array while small, else a table of its own records in another temporary
file (the names stay shared). Records read back are checked against the files' sizes and the
folders, and names read back for UTF-8 and for a separator or NUL, so a name read lies in its
folder; a name changed in place for another such name, or records swapped, read as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SourceError
from .spill import SpilledBytes

_ITER_CHUNK = 4096
RECORD = np.dtype([("start", "<i8"), ("length", "<i4"), ("folder", "<i4")])  # one file of a listing on disk
SPAN_BYTES = 4 << 20  # a chunk's names (or records) within this many bytes are read in one piece
SELECTION_BYTES = 4 << 20  # a larger selection of a listing on disk gets a table of its own, on disk
_CHANGED = "a temporary file of the tree's listing was changed while it was read"
_NOT_IN_A_NAME = (os.sep, "\0")  # no name a folder lists holds these


@dataclass(frozen=True)
class FolderListing:
    """The names of one folder's files, sorted, as one UTF-8 ``bytes`` and each name's length."""

    folder: str
    names: bytes
    lengths: np.ndarray  # int32, one per file

    def __len__(self) -> int:
        return len(self.lengths)


def folder_listing(folder: str, names: list[str]) -> FolderListing:
    """``names`` (sorted, each valid UTF-8) of files in ``folder``, in the compact form."""
    encoded = [name.encode("utf-8") for name in names]
    lengths = np.fromiter(map(len, encoded), np.int32, len(encoded))
    return FolderListing(folder, b"".join(encoded), lengths)


class _InMemory:
    """Names in one ``bytes``; each file's start, length and folder in arrays (views share them)."""

    __slots__ = ("blob", "starts", "lengths", "folder")

    def __init__(self, blob: bytes, starts: np.ndarray, lengths: np.ndarray, folder: np.ndarray):
        self.blob, self.starts, self.lengths, self.folder = blob, starts, lengths, folder

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, selection) -> _InMemory:
        return _InMemory(self.blob, self.starts[selection], self.lengths[selection], self.folder[selection])

    def records(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.starts[lo:hi], self.lengths[lo:hi], self.folder[lo:hi]

    def span(self, starts: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
        return self.blob, 0

    def nbytes(self) -> int:
        return len(self.blob) + self.starts.nbytes + self.lengths.nbytes + self.folder.nbytes


class _OnDisk:
    """Names in one temporary file and a :data:`RECORD` a file in another; ``rows``, a ``range`` or
    an int64 array, picks this view's records."""

    __slots__ = ("names", "table", "rows")

    def __init__(self, names: SpilledBytes, table: SpilledBytes, rows: range | np.ndarray):
        self.names, self.table, self.rows = names, table, rows

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, selection) -> _OnDisk:
        if isinstance(selection, slice):
            return _OnDisk(self.names, self.table, self.rows[selection])
        picked = _positions(selection, len(self))
        if isinstance(self.rows, range):  # the records' numbers, without making the whole range
            picked = self.rows.start + self.rows.step * picked
        else:
            picked = self.rows[picked]
        if picked.nbytes <= SELECTION_BYTES:
            return _OnDisk(self.names, self.table, picked)
        table = SpilledBytes()  # a selection of millions: its records copied a chunk at a time
        for first in range(0, len(picked), _ITER_CHUNK):
            table.write(self._read_rows(picked[first : first + _ITER_CHUNK]).view(np.uint8))
        return _OnDisk(self.names, table, range(len(picked)))

    def records(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.rows[lo:hi]
        if not len(rows):
            found = np.zeros(0, RECORD)
        elif isinstance(rows, range):
            if rows.step == 1 or len(rows) == 1:
                got = self.table.read_at(rows.start * RECORD.itemsize, len(rows) * RECORD.itemsize)
                found = np.frombuffer(got, RECORD)
            else:
                found = self._read_rows(np.arange(rows.start, rows.stop, rows.step, dtype=np.int64))
        else:
            found = self._read_rows(rows)
        starts, lengths = found["start"], found["length"]
        if len(found) and (starts.min() < 0 or lengths.min() < 0 or int((starts + lengths).max()) > self.names.size):
            raise SourceError(_CHANGED)
        return starts, lengths, found["folder"]

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The records numbered ``rows``: the span they lie in, read once, or each on its own."""
        if not len(rows):
            return np.zeros(0, RECORD)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        size = RECORD.itemsize
        if (hi - lo) * size <= SPAN_BYTES:
            return np.frombuffer(self.table.read_at(lo * size, (hi - lo) * size), RECORD)[rows - lo]
        return np.frombuffer(b"".join(self.table.read_at(int(r) * size, size) for r in rows), RECORD)

    def span(self, starts: np.ndarray, lengths: np.ndarray) -> tuple[bytes | None, int]:
        """The names of a chunk in one read where they lie close together, else None (each read alone)."""
        if not len(starts):
            return b"", 0
        lo, hi = int(starts.min()), int((starts + lengths).max())
        return (self.names.read_at(lo, hi - lo), lo) if hi - lo <= SPAN_BYTES else (None, 0)

    def nbytes(self) -> int:
        return 0 if isinstance(self.rows, range) else self.rows.nbytes


def _positions(selection, n: int) -> np.ndarray:
    """Indices, or a mask, as int64 positions in ``0..n-1``; IndexError as numpy gives it."""
    picked = np.asarray(selection)
    if picked.dtype == np.bool_:
        if picked.shape != (n,):
            raise IndexError(f"a mask of {picked.shape} for {n} file names")
        return np.flatnonzero(picked)
    if picked.size == 0:
        return np.zeros(0, np.int64)
    if picked.dtype.kind not in "iu":
        raise IndexError("file names are picked by integer indices or a boolean mask")
    picked = picked.astype(np.int64).ravel()
    if picked.min() < -n or picked.max() >= n:
        raise IndexError("FileNames index out of range")
    return np.where(picked < 0, picked + n, picked)


class FileNames(Sequence):
    """``folders[folder[i]]``, a separator and name ``i``, for each file ``i``; see the module's notes."""

    __slots__ = ("folders", "_prefixes", "_store")

    def __init__(self, folders: Sequence[str], blob: bytes, starts: np.ndarray, lengths: np.ndarray, folder):
        self._name(folders, _InMemory(blob, starts, lengths, folder))

    def _name(self, folders: Sequence[str], store: _InMemory | _OnDisk) -> None:
        self.folders = tuple(folders)
        self._prefixes = tuple(f if not f or f.endswith(os.sep) else f + os.sep for f in self.folders)
        self._store = store

    @staticmethod
    def _made(folders: Sequence[str], store: _InMemory | _OnDisk) -> FileNames:
        made = FileNames.__new__(FileNames)
        made._name(folders, store)
        return made

    @staticmethod
    def spilled(folders: Sequence[str], names: SpilledBytes, table: SpilledBytes) -> FileNames:
        """The files whose records ``table`` holds in order (:data:`RECORD`), their names in ``names``."""
        return FileNames._made(folders, _OnDisk(names, table, range(table.size // RECORD.itemsize)))

    @staticmethod
    def from_listings(listings: Sequence[FolderListing], order: np.ndarray | None = None) -> FileNames:
        """The files of ``listings`` one folder after another, or in ``order`` (indices into
        that sequence), in memory."""
        lengths = np.concatenate([listing.lengths for listing in listings] or [np.zeros(0, np.int32)])
        starts = np.cumsum(lengths, dtype=np.int64)
        starts -= lengths
        folder = np.repeat(np.arange(len(listings), dtype=np.int32), [len(listing) for listing in listings])
        if order is not None:  # one array at a time: a copy of one, not of three, at the peak
            starts = starts[order]
            lengths = lengths[order]
            folder = folder[order]
        blob = b"".join(listing.names for listing in listings)
        return FileNames([listing.folder for listing in listings], blob, starts, lengths, folder)

    def with_folders(self, folders: Sequence[str]) -> FileNames:
        """The same files named under other folder strings (relative ones, say): no copy."""
        if len(folders) != len(self.folders):
            raise ValueError("with_folders needs one folder per folder of the listing")
        return FileNames._made(folders, self._store)

    @property
    def on_disk(self) -> bool:
        """Whether the names are read from temporary files rather than held in memory."""
        return isinstance(self._store, _OnDisk)

    def __len__(self) -> int:
        return len(self._store)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return FileNames._made(self.folders, self._store.take(item))
        if isinstance(item, (list, np.ndarray)):  # a selection: indices, or a mask
            picked = np.asarray(item) if len(item) else np.zeros(0, np.int64)
            return FileNames._made(self.folders, self._store.take(picked))
        n = len(self)
        i = int(item)
        if not -n <= i < n:
            raise IndexError("FileNames index out of range")
        i %= n
        names, folder = self._names(i, i + 1)
        return self._prefixes[folder[0]] + names[0]

    def _raw(self, lo: int, hi: int) -> tuple[list[bytes], np.ndarray]:
        """Files ``lo:hi``: each name's UTF-8 bytes, and its folder's number."""
        store = self._store
        try:
            starts, lengths, folder = store.records(lo, hi)
            if len(folder) and (folder.min() < 0 or folder.max() >= len(self.folders)):
                raise SourceError(_CHANGED)
            buffer, base = store.span(starts, lengths)
            starts, lengths = starts.tolist(), lengths.tolist()
            if buffer is None:
                names = [store.names.read_at(a, n) for a, n in zip(starts, lengths)]
            else:
                names = [buffer[a - base : a - base + n] for a, n in zip(starts, lengths)]
        except OSError as exc:
            raise SourceError(f"the tree's listing cannot be read back from its temporary file ({exc})") from None
        return names, folder

    def _names(self, lo: int, hi: int) -> tuple[list[str], np.ndarray]:
        """Files ``lo:hi``: each name, and its folder's number. Names read back from a temporary
        file are checked as they are decoded, once."""
        raw, folder = self._raw(lo, hi)
        if isinstance(self._store, _OnDisk):
            return _checked(raw), folder
        return [name.decode("utf-8") for name in raw], folder

    def __iter__(self) -> Iterator[str]:
        prefixes = self._prefixes
        for first in range(0, len(self), _ITER_CHUNK):  # a chunk's names and numbers at a time, not all of them
            names, folders = self._names(first, first + _ITER_CHUNK)
            for name, folder in zip(names, folders.tolist()):
                yield prefixes[folder] + name

    def nbytes(self) -> int:
        """Memory held for the names (shared with every view of the same listing): none but a
        selection's indices where they are on disk."""
        return self._store.nbytes()

    def __reduce__(self):
        # A view pickles its own names and folders only, in memory, not the whole listing's (a worker's task).
        parts, folders = [], [np.zeros(0, np.int32)]
        for first in range(0, len(self), _ITER_CHUNK):
            names, folder = self._raw(first, first + _ITER_CHUNK)
            if isinstance(self._store, _OnDisk):
                _checked(names)
            parts += names
            folders.append(folder)
        lengths = np.fromiter(map(len, parts), np.int32, len(parts))
        starts = np.cumsum(lengths, dtype=np.int64) - lengths
        used, folder = np.unique(np.concatenate(folders), return_inverse=True)
        names = [self.folders[i] for i in used.tolist()]
        return FileNames, (names, b"".join(parts), starts, lengths, folder.astype(np.int32).ravel())


def _checked(raw: list[bytes]) -> list[str]:
    """Names read from a listing's file, decoded; refused where no listed name could be what was
    read: bytes that are not UTF-8, or a separator or NUL (a path leading out of its folder)."""
    try:
        names = [name.decode("utf-8") for name in raw]
    except UnicodeDecodeError:
        raise SourceError(_CHANGED) from None
    joined = "".join(names)
    if any(part in joined for part in _NOT_IN_A_NAME):
        raise SourceError(_CHANGED)
    return names


def stratified_permutation(counts: Sequence[int], labels: Sequence[int]) -> np.ndarray:
    """The order that spreads each group evenly through the whole (:func:`.folder.stratified_order`):
    indices into the groups laid one after another, the ``i``-th of a group of ``n`` at
    ``(i + 0.5) / n`` of the way, ties by label. Two arrays of a number per file, not a tuple."""
    keys = np.concatenate([(np.arange(n, dtype=np.float64) + 0.5) / n for n in counts if n] or [np.zeros(0)])
    return np.lexsort((np.repeat(np.asarray(labels, np.int32), counts), keys))
