"""Readers of storage that only Python reads, one element after another (WebDataset's tar shards):
each split is a generator the format supplies, fed to tf.data (``Dataset.from_generator``), and
checked by the format before its pipeline is built. A piece of a split (``train[80%:]``) asks the
generator for its range only, so images outside it are never decoded; other selections and
subsets are composed (:mod:`.composed`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

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
        return self._range(split, 0, self.counts[split], with_coarse, size)

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        if (piece.start, piece.stop) == (0, self.counts[piece.split]):
            return self.dataset(piece.split, image_size=image_size, with_coarse=with_coarse)
        if with_coarse and not self.parses_coarse:
            raise UsageError(f"{self.location}: its records carry no coarse labels")
        import tensorflow as tf

        ds = self._range(piece.split, piece.start, piece.stop, with_coarse, self.square_size(image_size))
        return shard_policy(ds.apply(tf.data.experimental.assert_cardinality(len(piece))), False)

    def _range(self, split: str, start: int, stop: int, with_coarse: bool, size: int | None):
        import tensorflow as tf

        self.check_split(split)  # in Python, before TensorFlow meets a sample
        shape = self.image_shape or (None, None, self.channels)
        signature = (tf.TensorSpec(shape, tf.uint8), tf.TensorSpec((), tf.int32))
        if with_coarse:
            signature += (tf.TensorSpec((), tf.int64),)
        ds = tf.data.Dataset.from_generator(
            lambda: self.stream(split, with_coarse, start, stop), output_signature=signature
        )
        return ds.map(squarer(size), num_parallel_calls=AUTOTUNE, deterministic=True) if size else ds

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict):
        return pieces_of(self, chosen, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict):
        return subset_of(self, base_split, picks, counts, extras)
