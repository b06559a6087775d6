"""Any cifarkit source or export as a ``tf.data.Dataset`` of (uint8 image, int32 label).

- an export: the format adapter that wrote it (named in its ``dataset_info.json``) reads it: a
  TFRecord export through its shards, parsed with the feature spec that wrote them; a JPEG/PNG
  tree through its manifest, images decoded in the pipeline;
- a CIFAR archive or extracted folder, or any ``<split>/<class>/*`` image tree: read by
  :mod:`cifarkit.sources`, then held in memory as uint8 arrays or decoded from the files.

Images that do not all share one size (generic folder trees) are brought to one square size per
image (shorter side, then the centre) so that they can be batched; CIFAR stays 32x32.
"""

from __future__ import annotations

from pathlib import Path

from .formats import adapter_for_export
from .formats.tfrecord import name_corrupt_shard
from .image_decode import source_error_in
from .reader import AUTOTUNE, CIFAR_NAMES, CIFAR_SHAPE, DataReader, from_labelled, shard_policy, to_numpy
from .reader import without_autotune

DataSource = DataReader  # the earlier name, for code written against it

__all__ = [
    "AUTOTUNE", "CIFAR_NAMES", "CIFAR_SHAPE", "DataReader", "DataSource", "from_labelled", "load",
    "name_corrupt_shard", "open_data", "shard_policy", "source_error_in", "to_numpy", "without_autotune",
]  # fmt: skip


def open_data(path: str | Path, *, verify: bool = True) -> DataReader:
    """Find out what ``path`` holds and return a :class:`DataReader` for it."""
    path = Path(path).expanduser()
    found = adapter_for_export(path) if path.is_dir() else None
    if found is not None:
        adapter, info = found
        return adapter.open(path, info, verify=verify)
    from .sources import open_source

    return from_labelled(open_source(path, verify=verify))


def load(path: str | Path, split: str, *, image_size: int | None = None, verify: bool = True):
    """The one-call reader: ``tf.data.Dataset`` of (uint8 (H, W, 3) image, int32 label)."""
    return open_data(path, verify=verify).dataset(split, image_size=image_size)
