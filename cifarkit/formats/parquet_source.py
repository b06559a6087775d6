"""A Parquet export as a source (``info``, and ``export`` into another format): the images decoded
by the reader's pipeline (:mod:`.parquet_read`), a row group at a time, into uint8 arrays (a list
of arrays where their sizes differ), as the TFRecord source reads shards. The split's images
together may decode to no more than
:func:`~cifarkit.sources.image_file.split_pixel_budget` allows for its files' bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import SourceError
from ..metadata.export_info import ExportInfo, read_export_info
from ..sources.image_file import SPLIT_PIXELS_PER_BYTE, split_pixel_budget
from ..sources.labelled import Batch, LabelledImages

FORMAT = "parquet"


def export_info(path: Path) -> ExportInfo | None:
    """The cifarkit_info.json of a Parquet export at ``path``; None for any other folder (an export
    of a format this cifarkit lacks is refused by :func:`cifarkit.formats.adapter_for_export`)."""
    info = read_export_info(path)
    return info if info is not None and info.format == FORMAT else None


def is_parquet_export(path: Path) -> bool:
    return export_info(path) is not None


def read_parquet_export(path: Path) -> LabelledImages:
    from .parquet_read import describe, reader_for

    info = export_info(path)
    if info is None:
        raise SourceError(f"{path}: no Parquet export found (no cifarkit_info.json of format parquet)")
    export = describe(path, info)
    reader = reader_for(export)
    batches = {split: [_read_split(reader, export, split)] for split in reader.counts}
    return LabelledImages(
        name=reader.name,
        format="cifarkit Parquet export",
        location=path,
        class_names=reader.class_names,
        batches=batches,
        coarse_class_names=info.coarse_class_names,
        verification="not applicable (Parquet page checksums and image headers checked on read)",
    )


def _read_split(reader, export, split: str) -> Batch:
    from ..readers.image_decode import source_error_in
    from ..readers.reader import without_autotune

    files = export.files[split]
    budget = split_pixel_budget(sum(f.path.stat().st_size for f in files))
    images, pixels = [], 0
    try:
        for image, _ in without_autotune(reader.stored(split)).as_numpy_iterator():
            pixels += image.shape[0] * image.shape[1]
            if pixels > budget:
                raise SourceError(
                    f"{export.root}: the {split} split's images decode to more than {budget:,} pixels, "
                    f"{SPLIT_PIXELS_PER_BYTE} per byte of its Parquet files: a decompression bomb?"
                )
            images.append(image)
    except SourceError:
        raise
    except Exception as exc:  # TensorFlow's error, carrying the row the reader named
        named = source_error_in(exc)
        if named is None:
            raise
        raise named from None
    shapes = {image.shape for image in images}
    stacked = np.stack(images) if len(shapes) == 1 else images  # mixed sizes: a list of arrays
    if not images:
        stacked = np.zeros((0, *(export.shape or CIFAR_SHAPE)), np.uint8)
    sources = [f.name for f in files for _ in range(sum(f.groups))]
    return Batch(split, stacked, export.labels[split], sources, export.coarse.get(split))
