"""One split of a photo tree, listed folder by folder into :class:`.file_names.FileNames` in the
stratified order (:func:`.folder.stratified_order`), with memory that does not grow with the tree.

Each class folder is listed and sorted in memory (its ``os.scandir`` entries and ``sorted`` of its
names): that is bounded by the largest folder, not by the tree. Its names then join the split's
listing. Up to :data:`IN_MEMORY_BYTES` (4 MB of names and 16 bytes a file: 75,000-130,000 files
of camera-style names) the listing stays in memory, where it is made quickest; ordering it there
takes about twice that at its peak. Past that, every folder's names so far and after go to
unlinked temporary files (:class:`.spill.SpilledBytes`: the names, and each name's length), and
the ordered listing is written to two more, a chunk at a time:

The stratified order sorts the files by the key ``(i + 0.5) / n`` of the ``i``-th of a folder of
``n`` (ties by label). The key's range is cut into ``B`` equal parts of about :data:`CHUNK_FILES`
files each (``B = N / CHUNK_FILES``); each folder's files with keys in the ``b``-th part are a run
of it (its keys rise with ``i``), found with the float arithmetic that makes the keys, so each file
falls in exactly one part and the parts, each sorted alone, are the whole order, file for file. A
part is sorted in memory (its folders' runs of names and lengths, read with ``pread``; at most
``N / B`` files plus one a folder, about 150 bytes each: 2.5 MB) and written out, names in the new
order, so that reading the listing in order reads its files forward.

What stays in memory for each file is the split's labels (``Batch.labels``, int64: 8 bytes a
file, 80 MB at 10 million files; 300 MB, with the export's ~90 MB around it, at about 26 million),
and for each folder its name and a few numbers; nothing else grows with the tree. The temporary
files hold about twice the names and 20 bytes a file while the order is made (80 MB at a million
files of 30-byte names), and the names and 16 bytes a file after; they are unlinked from the
start, so nothing is left behind whatever ends the process, and their space is freed once the
listing is let go of. Where no temporary file can be made the listing stays in memory.
"""

from __future__ import annotations

import tempfile

import numpy as np

from ..errors import SourceError
from .file_names import RECORD, FileNames, FolderListing, folder_listing, stratified_permutation
from .spill import SpilledBytes

IN_MEMORY_BYTES = 4 << 20  # a split's listing past this (names and 16 bytes a file) goes to disk
CHUNK_FILES = 1 << 14  # files of the stratified order made at a time on disk (and one a folder)


class SplitListing:
    """A split's class folders, listed one after another (:meth:`add`), then put in order (:meth:`stratified`)."""

    def __init__(self) -> None:
        self.folders: list[str] = []
        self.counts: list[int] = []
        self.sizes: list[int] = []  # bytes of each folder's names
        self._memory: list[FolderListing] | None = []
        self._held = 0
        self._limit = IN_MEMORY_BYTES
        self._files: tuple[SpilledBytes, SpilledBytes] | None = None  # names, lengths

    def add(self, folder: str, names: list[str]) -> None:
        """``names``, the sorted names of ``folder``'s image files."""
        listing = folder_listing(folder, names)
        self.folders.append(folder)
        self.counts.append(len(listing))
        self.sizes.append(len(listing.names))
        if self._memory is None:
            self._write(listing)
            return
        self._memory.append(listing)
        self._held += len(listing.names) + RECORD.itemsize * len(listing)
        if self._held > self._limit:
            self._spill()

    def _spill(self) -> None:
        try:
            self._files = SpilledBytes(), SpilledBytes()
        except OSError:  # no writable temporary folder: in memory, as a small listing
            self._limit = float("inf")
            return
        listings, self._memory = self._memory, None
        for listing in listings:
            self._write(listing)

    def _write(self, listing: FolderListing) -> None:
        names, lengths = self._files
        _spill_write((names, listing.names), (lengths, listing.lengths.astype("<i4").view(np.uint8)))

    def stratified(self, labels: list[int]) -> tuple[FileNames, np.ndarray]:
        """The files in the stratified order, and their labels (``labels``: one a folder)."""
        if self._memory is not None:
            order = stratified_permutation(self.counts, labels)
            paths = FileNames.from_listings(self._memory, order)
            return paths, np.repeat(np.asarray(labels, np.int64), self.counts)[order]
        return self._ordered_on_disk(np.asarray(labels, np.int64))

    def _ordered_on_disk(self, labels: np.ndarray) -> tuple[FileNames, np.ndarray]:
        counts = np.asarray(self.counts, np.int64)
        total = int(counts.sum())
        runs = _Runs(self._files, counts, np.asarray(self.sizes, np.int64))
        names, table = SpilledBytes(), SpilledBytes()
        ordered = np.empty(total, np.int64)
        parts = max(1, -(-total // CHUNK_FILES))
        done = 0
        for part in range(1, parts + 1):
            upto = counts if part == parts else _below(counts, part / parts)
            try:
                keys, folder, lengths, starts, blob = runs.take(upto)
            except OSError as exc:
                raise SourceError(f"the tree's listing cannot be read back from its temporary file ({exc})") from None
            order = np.lexsort((labels[folder], keys))
            lengths, starts = lengths[order], starts[order]
            records = np.empty(len(order), RECORD)
            records["length"] = lengths
            records["start"] = names.size + np.cumsum(lengths, dtype=np.int64) - lengths
            records["folder"] = folder[order]
            data = b"".join([blob[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist())])
            _spill_write((names, data), (table, records.view(np.uint8)))
            ordered[done : done + len(order)] = labels[records["folder"]]
            done += len(order)
        self._files = None  # the folder-by-folder files are closed with the last reference
        return FileNames.spilled(self.folders, names, table), ordered


class _Runs:
    """Each folder's files taken in runs from the folder-by-folder files, in its order."""

    def __init__(self, files: tuple[SpilledBytes, SpilledBytes], counts: np.ndarray, sizes: np.ndarray):
        self.names, self.lengths = files
        self.counts = counts
        self.first = np.cumsum(counts) - counts  # each folder's first file among all
        self.at = np.cumsum(sizes) - sizes  # where each folder's next name starts in the names
        self.done = np.zeros_like(counts)  # files of each folder taken

    def take(self, upto: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bytes]:
        """Each folder's files up to ``upto``: their keys, folders, lengths and where each name
        starts in the last value, their names one after another."""
        keys, folders, lengths, blobs = [np.zeros(0)], [np.zeros(0, np.int32)], [np.zeros(0, np.int32)], []
        for c in np.flatnonzero(upto > self.done).tolist():
            lo, hi, n = int(self.done[c]), int(upto[c]), int(self.counts[c])
            keys.append((np.arange(lo, hi, dtype=np.float64) + 0.5) / n)  # as stratified_permutation makes them
            folders.append(np.full(hi - lo, c, np.int32))
            got = self.lengths.read_at(int(self.first[c] + lo) * 4, (hi - lo) * 4)
            lengths.append(np.frombuffer(got, "<i4"))
            size = int(lengths[-1].sum())
            blobs.append(self.names.read_at(int(self.at[c]), size))
            self.at[c] += size
        self.done = upto.copy()
        length = np.concatenate(lengths)
        if len(length) and length.min() < 0:
            raise SourceError("a temporary file of the tree's listing was changed while it was read")
        starts = np.cumsum(length, dtype=np.int64) - length
        return np.concatenate(keys), np.concatenate(folders), length, starts, b"".join(blobs)


def _below(counts: np.ndarray, cut: float) -> np.ndarray:
    """For each folder of ``counts`` files, how many of its keys ``(i + 0.5) / n`` lie below ``cut``,
    each key computed in float64 as :func:`.file_names.stratified_permutation` computes it."""
    n = np.maximum(counts, 1).astype(np.float64)
    below = np.clip(np.ceil(cut * n - 0.5), 0, n).astype(np.int64)  # a first guess, then exact
    while True:
        fewer = (below > 0) & (((below - 1) + 0.5) / n >= cut)
        below -= fewer
        more = (below < counts) & ((below + 0.5) / n < cut)
        below += more
        if not fewer.any() and not more.any():
            return below


def _spill_write(*pieces: tuple[SpilledBytes, bytes | np.ndarray]) -> None:
    try:
        for spilled, data in pieces:
            spilled.write(data)
    except OSError as exc:
        raise SourceError(
            f"{tempfile.gettempdir()}: no room for the tree's listing ({exc.strerror or exc}); "
            "set TMPDIR to a folder with more space"
        ) from None
