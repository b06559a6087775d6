"""Readers of records stored for random access (ArrayRecord shards): each split is a list of record
indices into the splits as stored, read a batch of indices at a time by the format that wrote
them (:mod:`cifarkit.formats.arrayrecord_read` supplies the read, the parser and the record check).
A selection or a subset is a list of indices, so the records it leaves out are never read, and
``train[40000:]`` starts at its first record, not after 40,000 skipped ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .reader import AUTOTUNE, DataReader

READ_BATCH = 64  # record indices read together: one call into the library, one Python call per batch


@dataclass
class IndexedRecordReader(DataReader):
    kind: ClassVar[str] = "arrayrecord"

    # split -> [(stored split, int64 indices into it)], read one after another
    parts: dict = field(repr=False, default_factory=dict)
    # (stored split, int64 indices) -> the serialized records, in the order asked
    read: Callable | None = field(repr=False, default=None)
    # (with_coarse, size) -> (serialized record -> (uint8 image, int32 label[, int64 coarse label]))
    parser: Callable | None = field(repr=False, default=None)
    # stored split -> None, or raises: refuses a split whose records are bad before it is read
    check_split: Callable = field(repr=False, default=lambda split: None)
    # (stored split, index) -> raises the SourceError that names the record and what is wrong with it
    explain: Callable | None = field(repr=False, default=None)
    coarse: bool = False  # the records carry a coarse label

    @property
    def parses_coarse(self) -> bool:
        return self.coarse

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None):
        return self._read_parts(self.parts[split], with_coarse, size)

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        """Only the piece's records are read (the shared path reads the split and skips)."""
        if piece.split not in self.counts or (with_coarse and not self.parses_coarse):
            return super().piece_dataset(piece, image_size=image_size, with_coarse=with_coarse)
        parts = _slice(self.parts[piece.split], piece.start, piece.stop)
        ds = self._read_parts(parts, with_coarse, self.square_size(image_size))
        return ds.apply(_length(len(piece)))

    def _read_parts(self, parts: list, with_coarse: bool, size: int | None):
        import tensorflow as tf

        parse = self.parser(with_coarse, size)
        ds = None
        for stored, indices in parts or [(None, np.zeros(0, np.int64))]:
            if stored is not None:
                self.check_split(stored)
            records = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64)).batch(READ_BATCH)
            read = _batch_reader(self.read, stored)
            records = records.map(read, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
            ds = records if ds is None else ds.concatenate(records)
        parsed = ds.enumerate().map(
            lambda position, record: (position, parse(record)), num_parallel_calls=AUTOTUNE, deterministic=True
        )
        return _naming_failures(parsed, parts, self.explain)

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> IndexedRecordReader:
        parts = {
            name: [part for p in pieces for part in _slice(self.parts[p.split], p.start, p.stop)]
            for name, pieces in chosen.items()
        }
        return self._with_parts(parts, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict) -> IndexedRecordReader:
        parts = {s: p for s, p in self.parts.items() if s != base_split}
        parts.update({s: _take(self.parts[base_split], np.asarray(idx, np.int64)) for s, idx in picks.items()})
        return self._with_parts(parts, counts, extras)

    def _with_parts(self, parts: dict, counts: dict[str, int], extras: dict) -> IndexedRecordReader:
        return IndexedRecordReader(
            self.name,
            self.location,
            self.class_names,
            counts,
            self.image_shape,
            extras=extras,
            coarse_class_names=self.coarse_class_names,
            parts=parts,
            read=self.read,
            parser=self.parser,
            check_split=self.check_split,
            explain=self.explain,
            coarse=self.coarse,
        )


def _batch_reader(read: Callable, stored: str | None):
    """``int64 indices -> their serialized records``, one Python call per batch of indices."""
    import tensorflow as tf

    def records(indices):
        return np.asarray(read(stored, indices), dtype=object)

    def fn(indices):
        out = tf.numpy_function(records, [indices], tf.string, stateful=False)
        return tf.ensure_shape(out, [None])

    return fn


def _naming_failures(parsed, parts: list, explain: Callable):
    """``parsed`` (position, element) as elements, failing with the name of the first record that
    did not parse or decode (TensorFlow says only "Invalid PNG data", or names an assertion).

    As for image trees (:func:`cifarkit.readers.image_decode._naming_failures`): failed elements
    are dropped, so the first whose position in the stream differs from its own follows a
    failure, and a sentinel after the last catches one at the end; ``explain`` then reads that
    record again and raises the :class:`~cifarkit.errors.SourceError` naming it."""
    import tensorflow as tf

    count = sum(len(indices) for _, indices in parts)
    starts = np.cumsum([0] + [len(indices) for _, indices in parts])

    def name(position):
        part = int(np.searchsorted(starts, position, side="right")) - 1
        stored, indices = parts[part]
        explain(stored, int(indices[int(position) - starts[part]]))
        return True

    def check(position, element):
        at, values = element
        ok = tf.cond(
            tf.equal(at, position), lambda: tf.constant(True), lambda: tf.numpy_function(name, [position], tf.bool)
        )
        with tf.control_dependencies([ok]):
            return tuple(tf.ensure_shape(tf.identity(v), s.shape) for v, s in zip(values, spec))

    spec = parsed.element_spec[1]
    blank = tuple(tf.zeros([d or 1 for d in s.shape], s.dtype) for s in spec)
    sentinel = tf.data.Dataset.from_tensors((tf.constant(count, tf.int64), blank))
    stream = parsed.ignore_errors().concatenate(sentinel).enumerate()
    # take(count): without failures the sentinel is never reached; after one it is checked.
    return stream.map(check, num_parallel_calls=AUTOTUNE, deterministic=True).take(count)


def _length(count: int):
    import tensorflow as tf

    return tf.data.experimental.assert_cardinality(count)


def _slice(parts: list, start: int, stop: int) -> list:
    """The parts that hold elements ``start:stop`` of the split the parts make, in order."""
    out, offset = [], 0
    for stored, indices in parts:
        low, high = max(start, offset), min(stop, offset + len(indices))
        if high > low:
            out.append((stored, indices[low - offset : high - offset]))
        offset += len(indices)
    return out


def _take(parts: list, picks: np.ndarray) -> list:
    """The parts that hold elements ``picks`` (sorted) of the split the parts make, in order."""
    out, offset = [], 0
    for stored, indices in parts:
        mine = picks[(picks >= offset) & (picks < offset + len(indices))] - offset
        if len(mine):
            out.append((stored, indices[mine]))
        offset += len(indices)
    return out
