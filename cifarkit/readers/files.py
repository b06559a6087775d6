"""Readers of image files (a JPEG/PNG tree, an image-folder export): each split is a list of file
names and their labels, decoded in the pipeline (:mod:`cifarkit.readers.image_decode`), a JPEG only
around the square it is brought to (or within inception's random crop, taken as it is decoded).
Selections and subsets slice the lists, so files left out are never read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .reader import DataReader


@dataclass
class FileReader(DataReader):
    kind: ClassVar[str] = "image files"

    paths: dict = field(repr=False, default_factory=dict)  # split -> list of file names
    labels: dict = field(repr=False, default_factory=dict)  # split -> int32 labels

    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None, crop=None):
        from .image_decode import decode_files

        return decode_files(self.paths[split], self.labels[split], self.image_shape, size, crop)

    def shuffled_split(self, split: str, seed: int | None, *, with_coarse: bool = False, size=None, crop=None):
        from .image_decode import decode_files

        paths, labels = self.paths[split], self.labels[split]
        return decode_files(paths, labels, self.image_shape, size, crop, shuffle=True, seed=seed)

    @property
    def can_crop_at_decode(self) -> bool:
        return True

    def known_labels(self, split: str) -> np.ndarray:
        return self.labels[split]

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> FileReader:
        paths = {
            name: [f for p in pieces for f in self.paths[p.split][p.start : p.stop]] for name, pieces in chosen.items()
        }
        labels = {
            name: np.concatenate([self.labels[p.split][p.start : p.stop] for p in pieces])
            for name, pieces in chosen.items()
        }
        return _with_files(self, paths, labels, counts, extras)

    def _subset(self, base_split: str, picks: dict, counts: dict[str, int], extras: dict) -> FileReader:
        paths = {s: f for s, f in self.paths.items() if s != base_split}
        labels = {s: y for s, y in self.labels.items() if s != base_split}
        for split, idx in picks.items():
            paths[split] = [self.paths[base_split][i] for i in idx]
            labels[split] = self.labels[base_split][idx]
        return _with_files(self, paths, labels, counts, extras)


def _with_files(reader: FileReader, paths: dict, labels: dict, counts: dict[str, int], extras: dict) -> FileReader:
    return FileReader(
        reader.name,
        reader.location,
        reader.class_names,
        counts,
        reader.image_shape,
        extras=extras,
        coarse_class_names=reader.coarse_class_names,
        paths=paths,
        labels=labels,
    )
