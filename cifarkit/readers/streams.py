"""Readers of storage that only Python reads, one element after another (WebDataset's tar shards):
each split is a generator the format supplies, fed to tf.data (``Dataset.from_generator``), and
checked by the format before its pipeline is built. A piece of a split (``train[80%:]``) asks the
generator for its range only, so images outside it are never decoded; other selections and
subsets are composed (:mod:`.composed`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import UsageError
from .composed import pieces_of, subset_of
from .reader import AUTOTUNE, DataReader, shard_policy, squarer


@dataclass
class StreamReader(DataReader):
    kind: ClassVar[str] = "tar shards"

    # (split, with_coarse, start, stop) -> iterator of (uint8 image, label[, coarse label]) of
    # samples start:stop, in order
    stream: Callable | None = field(repr=False, default=None)
    check_split: Callable = field(repr=False, default=lambda split: None)  # refuses a split whose samples are bad
    channels: int = 3  # of images of mixed sizes, where image_shape is None
    coarse: bool = False  # the samples carry a coarse label
    files: dict = field(repr=False, default_factory=dict)  # split -> its shard files, for messages

    @property
    def parses_coarse(self) -> bool:
        return self.coarse

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None):
        return self.range_dataset(split, 0, self.counts[split], with_coarse=with_coarse, size=size)

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        if (piece.start, piece.stop) == (0, self.counts[piece.split]):
            return self.dataset(piece.split, image_size=image_size, with_coarse=with_coarse)
        if with_coarse and not self.parses_coarse:
            raise UsageError(f"{self.location}: its records carry no coarse labels")
        import tensorflow as tf

        ds = self.range_dataset(
            piece.split, piece.start, piece.stop, with_coarse=with_coarse, size=self.square_size(image_size)
        )
        return shard_policy(ds.apply(tf.data.experimental.assert_cardinality(len(piece))), False)

    def range_dataset(self, split: str, start: int, stop: int, *, with_coarse: bool = False, size: int | None = None):
        import tensorflow as tf

        self.check_split(split)  # in Python, before TensorFlow meets a sample
        # Images of one shape cross into TensorFlow a chunk at a time: from_generator costs about
        # a millisecond per element it hands over, more than decoding a CIFAR image.
        chunked = self.image_shape is not None
        lead = (None,) if chunked else ()
        shape = self.image_shape or (None, None, self.channels)
        signature = (tf.TensorSpec(lead + tuple(shape), tf.uint8), tf.TensorSpec(lead, tf.int32))
        if with_coarse:
            signature += (tf.TensorSpec(lead, tf.int64),)

        def elements():
            stream = self.stream(split, with_coarse, start, stop)
            return _chunks(stream) if chunked else stream

        ds = tf.data.Dataset.from_generator(elements, output_signature=signature)
        if chunked:
            ds = ds.unbatch()
        return ds.map(squarer(size), num_parallel_calls=AUTOTUNE, deterministic=True) if size else ds

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict):
        return pieces_of(self, chosen, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict):
        return subset_of(self, base_split, picks, counts, extras)


CHUNK = 256  # elements a generator hands to tf.data at once: ~0.8 MB of CIFAR images


def _chunks(stream):
    """Each run of :data:`CHUNK` elements of ``stream`` as one element of stacked arrays."""
    chunk = []
    for element in stream:
        chunk.append(element)
        if len(chunk) == CHUNK:
            yield tuple(np.stack(column) for column in zip(*chunk))
            chunk = []
    if chunk:
        yield tuple(np.stack(column) for column in zip(*chunk))
