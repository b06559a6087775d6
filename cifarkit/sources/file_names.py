"""The paths of many image files, held compactly: a photo tree of a million files in tens of MB.

A list of ``Path`` objects costs about 460 bytes a file (the object, its cached string, its
parts) and a second list of relative names as much again; at ImageNet's 1.28 million files that
is over a GB before anything is written. :class:`FileNames` keeps every name of a listing in one
``bytes`` (UTF-8) with numpy arrays of where each starts and ends and which folder holds it: about
16 bytes a file beside the name itself. Items are made as ``str`` when asked for, one at a time;
slices are views sharing the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

_ITER_CHUNK = 4096


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


class FileNames(Sequence):
    """``folders[folder[i]]``, a separator and name ``i``, for each file ``i``; see the module's notes."""

    __slots__ = ("folders", "_prefixes", "_blob", "_starts", "_lengths", "_folder")

    def __init__(self, folders: Sequence[str], blob: bytes, starts: np.ndarray, lengths: np.ndarray, folder):
        self.folders = tuple(folders)
        self._prefixes = tuple(f if not f or f.endswith(os.sep) else f + os.sep for f in self.folders)
        self._blob, self._starts, self._lengths, self._folder = blob, starts, lengths, folder

    @staticmethod
    def from_listings(listings: Sequence[FolderListing], order: np.ndarray | None = None) -> FileNames:
        """The files of ``listings`` one folder after another, or in ``order`` (indices into
        that sequence)."""
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
        return FileNames(folders, self._blob, self._starts, self._lengths, self._folder)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return self._view(item)
        if isinstance(item, (list, np.ndarray)):  # a selection: indices, or a mask
            return self._view(np.asarray(item))
        n = len(self)
        i = int(item)
        if not -n <= i < n:
            raise IndexError("FileNames index out of range")
        start = int(self._starts[i])
        name = self._blob[start : start + int(self._lengths[i])].decode("utf-8")
        return self._prefixes[self._folder[i]] + name

    def _view(self, selection) -> FileNames:
        parts = self._starts[selection], self._lengths[selection], self._folder[selection]
        return FileNames(self.folders, self._blob, *parts)

    def __iter__(self) -> Iterator[str]:
        blob, prefixes = self._blob, self._prefixes
        for first in range(0, len(self), _ITER_CHUNK):  # a chunk's numbers as Python ints, not all of them
            part = slice(first, first + _ITER_CHUNK)
            starts, lengths = self._starts[part].tolist(), self._lengths[part].tolist()
            for start, length, folder in zip(starts, lengths, self._folder[part].tolist()):
                yield prefixes[folder] + blob[start : start + length].decode("utf-8")

    def nbytes(self) -> int:
        """Memory held for the names (shared with every view of the same listing)."""
        return len(self._blob) + self._starts.nbytes + self._lengths.nbytes + self._folder.nbytes

    def __reduce__(self):
        # A view pickles its own names and folders only, not the whole listing's (a worker's task).
        starts, lengths = self._starts.tolist(), self._lengths.tolist()
        blob = b"".join(self._blob[a : a + n] for a, n in zip(starts, lengths))
        new_starts = np.cumsum(self._lengths, dtype=np.int64) - self._lengths
        used, folder = np.unique(self._folder, return_inverse=True)
        folders = [self.folders[i] for i in used.tolist()]
        return FileNames, (folders, blob, new_starts, self._lengths.copy(), folder.astype(np.int32))


def stratified_permutation(counts: Sequence[int], labels: Sequence[int]) -> np.ndarray:
    """The order that spreads each group evenly through the whole (:func:`.folder.stratified_order`):
    indices into the groups laid one after another, the ``i``-th of a group of ``n`` at
    ``(i + 0.5) / n`` of the way, ties by label. Two arrays of a number per file, not a tuple."""
    keys = np.concatenate([(np.arange(n, dtype=np.float64) + 0.5) / n for n in counts if n] or [np.zeros(0)])
    return np.lexsort((np.repeat(np.asarray(labels, np.int32), counts), keys))
