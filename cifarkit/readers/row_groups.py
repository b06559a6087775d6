"""Readers of encoded images stored in row groups (a Parquet export): each split is a list of
spans, the rows it takes of one row group, read a group at a time in order and decoded in the
pipeline. The labels are held in memory (a column read when the export was opened), so
selections, subsets and stratified holdouts slice the spans and never read the groups they leave
out. The storage's format supplies how a span's images are read (each image's header checked
against the pixel budget before it is handed on) and how a failed row is explained in one line
(:mod:`cifarkit.formats.parquet_read`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .reader import AUTOTUNE, DataReader

# Row groups read at once: each is at most a few MB of CIFAR or 64 MB of photos as cifarkit
# writes them, and the pipeline's decoding, not the reading, is what needs the cores.
PARALLEL_READS = 2


@dataclass(frozen=True)
class Span:
    """Rows of one row group: ``rows`` (indices in the group) or, where None, all ``count`` of them."""

    source: Any  # the file, as the format describes it
    group: int
    count: int
    rows: np.ndarray | None = None

    def part(self, lo: int, hi: int) -> Span:
        """Rows ``lo:hi`` of this span."""
        rows = np.arange(self.count) if self.rows is None else self.rows
        if (lo, hi) == (0, self.count):
            return self
        return Span(self.source, self.group, hi - lo, rows[lo:hi])

    def pick(self, indices: np.ndarray) -> Span:
        """The rows at ``indices`` (sorted, within the span)."""
        rows = np.arange(self.count) if self.rows is None else self.rows
        return Span(self.source, self.group, len(indices), rows[indices])


@dataclass
class RowGroupReader(DataReader):
    kind: ClassVar[str] = "parquet"

    spans: dict = field(repr=False, default_factory=dict)  # split -> list of Span, in order
    labels: dict = field(repr=False, default_factory=dict)  # split -> int32 labels, one a row of the spans
    # Span -> the encoded image of each of its rows, each checked (a SourceError naming the row otherwise)
    read_span: Callable = field(repr=False, default=None)
    # (Span, row in it) -> raises the SourceError that names the row and why it does not decode
    explain: Callable = field(repr=False, default=None)

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None):
        import tensorflow as tf

        spans, labels = self.spans[split], self.labels[split]
        starts = np.concatenate([[0], np.cumsum([s.count for s in spans])]).astype(np.int64)

        def read(i):
            first, stop = starts[i], starts[i + 1]
            images = np.array(self.read_span(spans[i]), dtype=object)  # bytes, one a row
            return np.arange(first, stop, dtype=np.int64), images, labels[first:stop]

        def read_group(i):
            group = tf.numpy_function(read, [i], (tf.int64, tf.string, tf.int32), stateful=False)
            return tuple(tf.ensure_shape(column, [None]) for column in group)

        # A row group at a time, in order (deterministic), then its rows one by one.
        groups = tf.data.Dataset.range(len(spans))
        rows = groups.map(read_group, num_parallel_calls=PARALLEL_READS, deterministic=True).unbatch()
        decoded = rows.map(self._decoder(size), num_parallel_calls=AUTOTUNE, deterministic=True)
        return self._naming_failures(decoded, spans, starts, size)

    def _shape(self, size: int | None):
        channels = self.image_shape[-1] if self.image_shape else 3
        return (size, size, channels) if size else self.image_shape or (None, None, 3)

    def _decoder(self, size: int | None):
        import tensorflow as tf

        from .image_decode import decode_squared

        shape = self._shape(size)

        def decode(index, contents, label):
            if size:
                image = decode_squared(contents, size, shape[-1])
            else:
                image = tf.io.decode_image(contents, channels=shape[-1], expand_animations=False)
            return index, tf.ensure_shape(image, shape), label

        return decode

    def _naming_failures(self, decoded, spans: list, starts: np.ndarray, size: int | None):
        """``decoded`` without its indices, failing with the row that failed, in one line.

        TensorFlow says only "Invalid PNG data", and a row group that failed to read takes its
        rows with it: failed elements are dropped, so the first element whose position differs
        from its index follows the first failure, and a sentinel after the last catches one at
        the end. :attr:`explain` reads that row again and raises what is wrong with it."""
        import tensorflow as tf

        count = int(starts[-1])
        shape = self._shape(size)

        def explain(position):
            span = int(np.searchsorted(starts, position, side="right")) - 1
            self.explain(spans[span], int(position - starts[span]))
            return True

        def check(position, element):
            index, image, label = element
            ok = tf.cond(
                tf.equal(index, position),
                lambda: tf.constant(True),
                lambda: tf.numpy_function(explain, [position], tf.bool),
            )
            with tf.control_dependencies([ok]):
                return tf.identity(image), tf.identity(label)

        blank = tf.zeros([d or 1 for d in shape], tf.uint8)
        sentinel = (tf.constant(count, tf.int64), blank, tf.constant(0, tf.int32))
        stream = decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(sentinel)).enumerate()
        return stream.map(check, num_parallel_calls=AUTOTUNE, deterministic=True).take(count)

    def known_labels(self, split: str) -> np.ndarray:
        return self.labels[split]

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        """A piece reads only the row groups it takes (the shared way reads the split up to its end)."""
        if (piece.start, piece.stop) == (0, self.counts[piece.split]):
            return super().piece_dataset(piece, image_size=image_size, with_coarse=with_coarse)
        one = self._selected({piece.split: [piece]}, {piece.split: len(piece)}, {})
        return one.dataset(piece.split, image_size=image_size, with_coarse=with_coarse)

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> RowGroupReader:
        spans, labels = {}, {}
        for name, pieces in chosen.items():
            spans[name] = [s for p in pieces for s in _window(self.spans[p.split], p.start, p.stop)]
            labels[name] = np.concatenate([self.labels[p.split][p.start : p.stop] for p in pieces])
        return self._with(spans, labels, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict) -> RowGroupReader:
        spans = {s: v for s, v in self.spans.items() if s != base_split}
        labels = {s: v for s, v in self.labels.items() if s != base_split}
        for split, indices in picks.items():
            spans[split] = _picked(self.spans[base_split], np.asarray(indices, np.int64))
            labels[split] = self.labels[base_split][indices]
        return self._with(spans, labels, counts, extras)

    def _with(self, spans: dict, labels: dict, counts: dict[str, int], extras: dict) -> RowGroupReader:
        return RowGroupReader(
            self.name,
            self.location,
            self.class_names,
            counts,
            self.image_shape,
            extras=extras,
            coarse_class_names=self.coarse_class_names,
            spans=spans,
            labels=labels,
            read_span=self.read_span,
            explain=self.explain,
        )


def _window(spans: list[Span], start: int, stop: int) -> list[Span]:
    """The spans' rows ``start:stop``, trimmed at either end."""
    out, offset = [], 0
    for span in spans:
        lo, hi = max(start, offset), min(stop, offset + span.count)
        if hi > lo:
            out.append(span.part(lo - offset, hi - offset))
        offset += span.count
    return out


def _picked(spans: list[Span], indices: np.ndarray) -> list[Span]:
    """The spans' rows at the sorted ``indices``; spans left with none are left out."""
    out, offset = [], 0
    for span in spans:
        lo, hi = np.searchsorted(indices, [offset, offset + span.count])
        if hi > lo:
            out.append(span.pick(indices[lo:hi] - offset))
        offset += span.count
    return out
