"""Readers of TFRecord shards: each split is its list of shards, read in order (so an unshuffled
pass gives dataset order), every record parsed by the format that wrote it
(:mod:`cifarkit.formats.tfrecord_read` supplies the parser and the shard check). Where the shard
lengths are known, a slice of a split can also be read shard by shard in a shuffled order
(:mod:`cifarkit.readers.file_shuffle`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from ..runtime.lazy import tf
from .composed import pieces_of, subset_of
from .reader import AUTOTUNE, RECORD_READ_BUFFER, DataReader, shard_policy


@dataclass
class RecordReader(DataReader):
    kind: ClassVar[str] = "tfrecord"

    files: dict = field(repr=False, default_factory=dict)  # split -> shard paths, in order
    shard_lengths: dict = field(repr=False, default_factory=dict)  # split -> records in each shard, where listed
    # (with_coarse, size, crop) -> (serialized record[, crop seed] -> (uint8 image, int32 label[, int64 coarse label]))
    parser: Callable | None = field(repr=False, default=None)
    check_split: Callable = field(repr=False, default=lambda split: None)  # refuses a split whose records are bad
    # (with_coarse, size) -> (batch of serialized records -> (uint8 images, int64 labels[, ...])), or None
    batch_parser: Callable | None = field(repr=False, default=None)
    coarse: bool = False  # the records carry a coarse label

    @property
    def parses_coarse(self) -> bool:
        return self.coarse

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None, crop=None):
        self.check_split(split)
        data = tf.data.TFRecordDataset(self.files[split], buffer_size=RECORD_READ_BUFFER, num_parallel_reads=None)
        if crop is not None:
            from .image_decode import crop_seeds

            # Each record's seed is zipped on in dataset order, before any shuffle.
            data = tf.data.Dataset.zip(data, crop_seeds(crop))
        return data.map(self.parser(with_coarse, size, crop), num_parallel_calls=AUTOTUNE, deterministic=True)

    @property
    def can_crop_at_decode(self) -> bool:
        # Photos of mixed sizes, which would otherwise be squared first; records of one shape
        # (CIFAR, MNIST) keep the recipe's batched crop.
        return self.image_shape is None

    def batches(self, pieces: list, batch_size: int, *, size: int | None = None):
        """Batches of (uint8 images, int64 labels) of ``pieces`` in order, as :meth:`dataset`'s
        elements batched, but each batch's records parsed together; None where the images' shapes
        vary. Pieces are cut from the records, before anything is parsed."""
        parse = self.batch_parser(False, size) if self.batch_parser is not None else None
        if parse is None or not pieces:
            return None
        records = None
        for piece in pieces:
            self.check_split(piece.split)
            part = tf.data.TFRecordDataset(self.files[piece.split], buffer_size=RECORD_READ_BUFFER)
            part = part.apply(tf.data.experimental.assert_cardinality(self.counts[piece.split]))
            if (piece.start, piece.stop) != (0, self.counts[piece.split]):
                part = part.skip(piece.start).take(len(piece))
            records = part if records is None else records.concatenate(part)
        ds = records.batch(batch_size).map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
        return shard_policy(ds, all(len(self.files[p.split]) >= 2 for p in pieces))

    def checked_parser(self, with_coarse: bool, size: int | None = None) -> Callable:
        """The record parser, once every split's records are checked (shuffled files mix splits)."""
        for split in self.files:
            self.check_split(split)
        return self.parser(with_coarse, size)

    def shard_files(self, split: str) -> list[str]:
        return list(self.files.get(split, ()))

    def shuffled_split(self, split: str, seed: int | None, *, with_coarse: bool = False, size=None, crop=None):
        from .file_shuffle import shuffled_split

        return shuffled_split(self, split, seed, with_coarse=with_coarse, size=size, crop=crop)

    def can_shuffle_files(self, pieces: list) -> bool:
        return all(p.split in self.files and p.split in self.shard_lengths for p in pieces)

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict):
        return pieces_of(self, chosen, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict):
        return subset_of(self, base_split, picks, counts, extras)
