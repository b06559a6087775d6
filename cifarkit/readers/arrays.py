"""Readers of arrays in memory: the uint8 images and int32 labels of each split, sliced by tf.data
(CIFAR and MNIST as their sources read them). Selections and subsets index the arrays: a single
piece is a view, no copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..runtime.lazy import tf
from .reader import DataReader, squarer


@dataclass
class ArrayReader(DataReader):
    kind: ClassVar[str] = "arrays"

    arrays: dict = field(repr=False, default_factory=dict)  # split -> (uint8 images, int32 labels)

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None):
        return _slices(self.arrays[split], size)

    def in_memory(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.arrays[split]

    def known_labels(self, split: str) -> np.ndarray:
        return self.arrays[split][1]

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        if with_coarse:  # refused in one line by the shared path
            return super().piece_dataset(piece, image_size=image_size, with_coarse=with_coarse)
        images, labels = self.arrays[piece.split]
        part = images[piece.start : piece.stop], labels[piece.start : piece.stop]
        return _slices(part, self.square_size(image_size))

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> ArrayReader:
        arrays = {name: _concat_pieces(self.arrays, pieces) for name, pieces in chosen.items()}
        return _with_arrays(self, arrays, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict) -> ArrayReader:
        images, labels = self.arrays[base_split]
        arrays = {s: a for s, a in self.arrays.items() if s != base_split}
        arrays.update({s: (images[idx], labels[idx]) for s, idx in picks.items()})
        return _with_arrays(self, arrays, counts, extras)


def _with_arrays(reader: ArrayReader, arrays: dict, counts: dict[str, int], extras: dict) -> ArrayReader:
    return ArrayReader(
        reader.name,
        reader.location,
        reader.class_names,
        counts,
        reader.image_shape,
        extras=extras,
        coarse_class_names=reader.coarse_class_names,
        arrays=arrays,
    )


def _slices(arrays: tuple[np.ndarray, np.ndarray], size: int | None):
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    return ds if size is None else ds.map(squarer(size), num_parallel_calls=-1, deterministic=True)


def _concat_pieces(arrays: dict, pieces: list) -> tuple[np.ndarray, np.ndarray]:
    if len(pieces) == 1:  # a view, no copy
        images, labels = arrays[pieces[0].split]
        return images[pieces[0].start : pieces[0].stop], labels[pieces[0].start : pieces[0].stop]
    return tuple(np.concatenate([arrays[p.split][i][p.start : p.stop] for p in pieces]) for i in (0, 1))
