"""Readers made of another reader's splits: pieces of them (``train[:80%]+test``) or index subsets
(``--holdout``), for storage that cannot be sliced in place (TFRecord shards are read in order,
then skipped, taken or filtered)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..runtime.lazy import tf
from .reader import DataReader, decode_options


@dataclass
class ComposedReader(DataReader):
    base: DataReader | None = field(repr=False, default=None)
    # split -> (with_coarse, size, crop) -> tf.data.Dataset of the split
    parts: dict[str, Callable] = field(repr=False, default_factory=dict)

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def parses_coarse(self) -> bool:
        return self.base.parses_coarse

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None, crop=None):
        return self.parts[split](with_coarse, size, crop)

    @property
    def can_crop_at_decode(self) -> bool:
        return self.base.can_crop_at_decode

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> ComposedReader:
        return pieces_of(self, chosen, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict) -> ComposedReader:
        return subset_of(self, base_split, picks, counts, extras)


def pieces_of(reader: DataReader, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> ComposedReader:
    """Split ``name`` is the pieces ``chosen[name]`` of ``reader``'s splits, one after another."""

    def part(pieces: list) -> Callable:
        def build(with_coarse: bool, size: int | None, crop):
            datasets = [_piece(reader, p, decode_options(with_coarse, size, crop)) for p in pieces]
            ds = datasets[0]
            for more in datasets[1:]:
                ds = ds.concatenate(more)
            return ds

        return build

    return _composed(reader, {name: part(pieces) for name, pieces in chosen.items()}, counts, extras)


def subset_of(
    reader: DataReader, base_split: str, picks: dict[str, np.ndarray], counts: dict[str, int], extras: dict
) -> ComposedReader:
    """Splits ``picks`` are the indices they list of ``base_split``; the other splits stay."""

    def whole(split: str) -> Callable:
        return lambda with_coarse, size, crop: reader.split_dataset(split, **decode_options(with_coarse, size, crop))

    def part(indices: np.ndarray) -> Callable:
        mask = np.zeros(reader.counts[base_split], bool)
        mask[indices] = True

        def build(with_coarse: bool, size: int | None, crop):
            keep = tf.constant(mask)

            def kept(index, example):
                return tf.gather(keep, index)

            def example_of(index, example):
                return example

            ds = reader.split_dataset(base_split, **decode_options(with_coarse, size, crop)).enumerate()
            return ds.filter(kept).map(example_of)

        return build

    parts = {split: whole(split) for split in reader.counts if split != base_split}
    parts.update({split: part(indices) for split, indices in picks.items()})
    return _composed(reader, parts, counts, extras)


def _piece(reader: DataReader, piece, options: dict):
    """A piece as the reader's own range of it, with no options of its own (the composed
    reader's :meth:`~DataReader.dataset` sets the shard policy once)."""
    return reader.range_dataset(piece.split, piece.start, piece.stop, **options)


def _composed(reader: DataReader, parts: dict, counts: dict[str, int], extras: dict) -> ComposedReader:
    return ComposedReader(
        reader.name,
        reader.location,
        reader.class_names,
        counts,
        reader.image_shape,
        extras=extras,
        coarse_class_names=reader.coarse_class_names,
        base=reader,
        parts=parts,
    )
