"""ArrayRecord datasets as a source: a cifarkit ArrayRecord export, or a folder TFDS prepared in its
``array_record`` format (``tfds.data_source``'s), read into :class:`~cifarkit.sources.labelled.LabelledImages`
for ``info`` and ``export``, in dataset order, through the format's own reader
(:mod:`.arrayrecord_read`). Training and statistics read the same folders through
:func:`cifarkit.data.open_data`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import SourceError
from ..metadata.export_info import ExportInfo, read_export_info
from ..sources.labelled import Batch, LabelledImages
from . import FORMATS, tfds_info
from .arrayrecord import ArrayRecord

FORMAT = ArrayRecord.name


def find_array_records(path: Path) -> tuple[Path, ExportInfo | None] | None:
    """The ArrayRecord dataset folder at ``path`` (or below it, as TFDS lays out ``<name>/<version>``)
    and its cifarkit metadata (None for a folder TFDS wrote); None where there is none."""
    own = read_export_info(path, FORMATS)
    if own is not None:
        return (path, own) if own.format == FORMAT else None
    root = tfds_info.locate(path)
    if root is None:
        return None
    own = read_export_info(root, FORMATS)
    if own is not None:
        return (root, own) if own.format == FORMAT else None
    return (root, None) if tfds_info.folder_file_format(root) == ArrayRecord.tfds_file_format else None


def read_array_records_folder(path: Path) -> LabelledImages:
    from .arrayrecord_read import open_array_records

    found = find_array_records(path)
    if found is None:
        raise SourceError(f"{path}: no ArrayRecord dataset found (no cifarkit_info.json or TFDS dataset_info.json)")
    root, info = found
    reader = open_array_records(root, info)
    batches = {split: [_read_split(reader, split)] for split in reader.counts}
    wrote = (
        "cifarkit ArrayRecord export" if info is not None else f"TFDS-prepared ArrayRecord folder (version {root.name})"
    )
    return LabelledImages(
        name=reader.name,
        format=wrote,
        location=root,
        class_names=reader.class_names,
        batches=batches,
        coarse_class_names=reader.coarse_class_names,
        verification="not applicable (Riegeli hashes and every record checked on read)",
    )


def _read_split(reader, split: str) -> Batch:
    from ..readers.image_decode import source_error_in
    from ..readers.reader import without_autotune

    coarse = reader.parses_coarse
    images, labels, coarse_labels = [], [], []
    try:
        for element in without_autotune(reader.stored(split, with_coarse=coarse)).as_numpy_iterator():
            images.append(element[0])
            labels.append(element[1])
            if coarse:
                coarse_labels.append(element[2])
    except Exception as exc:  # TensorFlow's error, carrying the record the reader named
        named = source_error_in(exc)
        if named is None:
            raise
        raise named from None
    shapes = {image.shape for image in images}
    stacked = np.stack(images) if len(shapes) == 1 else images  # mixed sizes: a list of arrays
    if not images:
        stacked = np.zeros((0, *(reader.image_shape or CIFAR_SHAPE)), np.uint8)
    # The manifest's source column: the split's shards (a record's own shard is not tracked).
    source = f"{reader.name}-{split}.{ArrayRecord.tfds_file_format}-*"
    return Batch(
        split,
        stacked,
        np.asarray(labels, np.int64),
        [source] * len(labels),
        np.asarray(coarse_labels, np.int64) if coarse else None,
    )
