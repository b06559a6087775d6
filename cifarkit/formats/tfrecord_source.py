"""TFRecord datasets as a source: a folder TFDS prepared (``~/tensorflow_datasets/cifar10/3.0.2/``,
cifar100, mnist, fashion_mnist ...) or a cifarkit TFRecord export, TFDS-keyed or pre-TFDS.

``info`` and ``export`` read sources as :class:`~.labelled.LabelledImages`, so the records are
parsed and decoded here by TensorFlow, in dataset order, into uint8 arrays (all of CIFAR-10 is
180 MB); a TFRecord export re-exported as a PNG tree is pixel-exact. Training and statistics
read the same folders through :func:`cifarkit.data.open_data`, as a tf.data pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import SourceError
from ..metadata.export_info import ExportInfo, read_export_info
from ..sources.labelled import Batch, LabelledImages
from . import FORMATS, tfds_info
from .tfrecord_read import Records, describe, name_undecodable_image, reader_for


def find_records(path: Path) -> tuple[Path, ExportInfo | None] | None:
    """The TFRecord dataset folder at ``path`` (or below it, as TFDS lays out ``<name>/<version>``)
    and its cifarkit metadata (None for a folder TFDS wrote); None where there is none."""
    own = _cifarkit_info(path)
    if own is not None:
        return path, own
    root = tfds_info.locate(path)
    if root is None:
        return None
    return root, _cifarkit_info(root)


def _cifarkit_info(folder: Path) -> ExportInfo | None:
    """The folder's cifarkit metadata if it describes a TFRecord export (an image export's is
    read by the image-tree source)."""
    info = read_export_info(folder, FORMATS)
    return info if info is not None and info.format == "tfrecord" else None


def read_records_folder(path: Path) -> LabelledImages:
    found = find_records(path)
    if found is None:
        raise SourceError(f"{path}: no TFRecord dataset found (no cifarkit_info.json or TFDS dataset_info.json)")
    root, info = found
    records = describe(root, info)
    batches = {split: [_read_split(records, split)] for split in records.counts}
    wrote = "cifarkit TFRecord export" if info is not None else f"TFDS-prepared folder (version {root.name})"
    return LabelledImages(
        name=records.name,
        format=wrote,
        location=root,
        class_names=records.class_names,
        batches=batches,
        coarse_class_names=records.coarse_class_names,
        verification="not applicable (TFRecord CRCs checked on read)",
    )


def _read_split(records: Records, split: str) -> Batch:
    from ..readers.reader import without_autotune

    # A corrupt record raises TensorFlow's error, which the CLI turns into one line naming the shard.
    reader = reader_for(records)
    ds = reader.stored(split, with_coarse=records.coarse_key is not None)
    images, labels, coarse = [], [], []
    try:
        for element in without_autotune(ds).as_numpy_iterator():
            images.append(element[0])
            labels.append(element[1])
            if len(element) > 2:
                coarse.append(element[2])
    except Exception as exc:  # TensorFlow's InvalidArgumentError, from its decoders
        named = name_undecodable_image(getattr(exc, "message", None) or "")
        if named is None:
            raise
        raise SourceError(named) from None
    shapes = {image.shape for image in images}
    stacked = np.stack(images) if len(shapes) == 1 else images  # mixed sizes: a list of arrays
    if not images:
        stacked = np.zeros((0, *(records.static_shape or CIFAR_SHAPE)), np.uint8)
    # The manifest's source column: the split's shards (a record's own shard is not tracked).
    shards = (
        f"{records.name}-{split}.tfrecord-*" if len(records.files[split]) > 1 else Path(records.files[split][0]).name
    )
    return Batch(
        split,
        stacked,
        np.asarray(labels, np.int64),
        [shards] * len(labels),
        np.asarray(coarse, np.int64) if records.coarse_key else None,
    )
