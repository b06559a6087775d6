"""ArrayRecord shards: ``OUT/<dataset>-<split>.array_record-NNNNN-of-NNNNN``, a TFDS dataset
folder that ``tfds.data_source`` opens for random access, and Grain with it.

TFDS's ``array_record`` file format (core/file_adapters.py ``ArrayRecordFileAdapter``): Riegeli
files of one record per chunk (the writer's ``group_size:1``), so any record is read without its
neighbours. The records are the TFRecord export's ``tf.train.Example`` bytes, with TFDS's keys
(:func:`.tfrecord.example_batches`), and the folder carries the same TFDS metadata with
``fileFormat: array_record`` (:mod:`.tfds_info`), so everything but the shards' framing is the
TFRecord adapter's, which this one extends. TFDS reads such a folder as a data source only: its
``tfds.load`` refuses the format (``.as_dataset()`` is not implemented for ArrayRecord files).

A shard is written under a temporary name and renamed, so a re-run skips the shards that exist;
the writer's options and the library's version are part of the export's fingerprint (another
zstd may compress the same records into other bytes). Reading: :mod:`.arrayrecord_read`.
"""

from __future__ import annotations

import contextlib
import os
from importlib import metadata
from pathlib import Path

from ..errors import OutputError
from ..writers.atomic import output_error, partial_path
from . import tfds_info
from .arrayrecord_read import array_record_module
from .base import TfdsFound, WriteOptions
from .tfrecord import TFRecord, example_batches

# TFDS's own writer options (ArrayRecordFileAdapter.write_examples): one record per chunk, the
# library's default compression (zstd level 3), which random access needs and Grain expects.
WRITER_OPTIONS = "group_size:1"


def library_version() -> str:
    try:
        return metadata.version("array_record")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_array_shard(
    path: str, split: str, start: int, width: int, images, labels, coarse_labels, encoding: str, quality: int
) -> tuple[int, int]:
    """Write one complete shard (runs in a worker); skip it if it already exists. Returns
    (written, skipped) image counts."""
    target = Path(path)
    if target.exists():
        return 0, len(labels)
    module = array_record_module()
    tmp = partial_path(target)
    try:
        writer = module.ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
        try:
            for examples in example_batches(split, start, width, images, labels, coarse_labels, encoding, quality):
                for example in examples:
                    writer.write(example)
        finally:
            writer.close()
        os.replace(tmp, target)
    except OSError as exc:
        _discard(tmp)
        raise output_error(target, exc) from None
    except RuntimeError as exc:  # the library's I/O errors (a full disk, a folder gone)
        _discard(tmp)
        raise OutputError(f"cannot write {target}: {str(exc).splitlines()[0][:200]}") from None
    except BaseException:
        _discard(tmp)
        raise
    return len(labels), 0


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _write_array_shard(dataset, shard, path: str, width: int, encoding: str, quality: int) -> tuple[int, int]:
    """Worker: one ArrayRecord shard; returns (written, skipped)."""
    part = dataset.take(shard.split, shard.start, shard.stop)
    return write_array_shard(
        path, shard.split, shard.start, width, part.images, part.labels, part.coarse_labels, encoding, quality
    )


class ArrayRecord(TFRecord):
    """``--format arrayrecord``: the TFRecord export's records and TFDS metadata in ArrayRecord
    shards, read at random by ``tfds.data_source``, Grain and cifarkit."""

    name = "arrayrecord"
    tfds_file_format = "array_record"
    shard_worker = staticmethod(_write_array_shard)

    def check_options(self, options: WriteOptions) -> None:
        super().check_options(options)
        array_record_module()  # before any data is read

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        fp = super().fingerprint(dataset, splits, options)
        fp["array_record"] = {"writer": WRITER_OPTIONS, "version": library_version()}
        return fp

    def usage(self, out: Path) -> list[str]:
        name, version = out.parent.name, out.name  # OUT/<name>/<version> under --tfds-layout
        if version == tfds_info.tfds_version(name) and name == tfds_info.tfds_name(name):
            opened = f"tfds.data_source({name!r}, data_dir={str(out.parent.parent)!r}, download=False)"
        else:
            opened = f"tfds.builder_from_directory({str(out)!r}).as_data_source()"
        return ["ArrayRecord shards, any record at once (a Grain data source as it is):", f"  {opened}"]

    def open(self, root: Path, info, *, verify: bool = True):
        from .arrayrecord_read import open_array_records

        if isinstance(info, TfdsFound):  # a folder TFDS prepared, or an export under --tfds-layout
            return open_array_records(info.root, info.own)
        return open_array_records(root, info)
