"""A source read by :mod:`cifarkit.sources` as a reader: its arrays held in memory, or, where the
source only listed its image files (a photo tree), the files decoded in the pipeline."""

from __future__ import annotations

import numpy as np

from ..sources.labelled import LabelledImages, LazyImages
from .arrays import ArrayReader
from .files import FileReader
from .reader import DataReader


def from_labelled(dataset: LabelledImages, files_shape: tuple[int, int, int] | None = None) -> DataReader:
    """The reader of a source already read: arrays in memory, or image file names (decoded to
    ``files_shape`` if every image has it, as in an export of CIFAR)."""
    counts = {s: dataset.count(s) for s in dataset.splits}
    extras = {
        s: {"coarse_label": np.concatenate([b.coarse_labels for b in bs]).astype(np.int64)}
        for s, bs in dataset.batches.items()
        if bs and all(b.coarse_labels is not None for b in bs)
    }
    described = dict(extras=extras, coarse_class_names=dataset.coarse_class_names)
    lazy = any(isinstance(b.images, LazyImages) for bs in dataset.batches.values() for b in bs)
    labels = {s: np.concatenate([b.labels for b in bs]).astype(np.int32) for s, bs in dataset.batches.items()}
    if lazy:
        paths = {s: [str(p) for b in bs for p in b.images.paths] for s, bs in dataset.batches.items()}
        return FileReader(
            dataset.name,
            dataset.location,
            dataset.class_names,
            counts,
            files_shape,
            paths=paths,
            labels=labels,
            **described,
        )
    arrays = {}
    for split, batches in dataset.batches.items():
        images = np.concatenate([b.images for b in batches]) if len(batches) > 1 else batches[0].images
        arrays[split] = (images, labels[split])
    shapes = {a[0].shape[1:] for a in arrays.values()}
    shape = tuple(shapes.pop()) if len(shapes) == 1 else None
    return ArrayReader(dataset.name, dataset.location, dataset.class_names, counts, shape, arrays=arrays, **described)
