"""Parquet files in Hugging Face's layout: ``OUT/data/<split>-NNNNN-of-NNNNN.parquet``
(:mod:`.parquet_layout` says what they hold), for ``datasets.load_dataset``, pandas and pyarrow.

Written with pyarrow, a file per planned shard, in row groups of at most a thousand images
(:data:`~.parquet_layout.ROWS_PER_GROUP`); images are encoded as the TFRecord format encodes them
(``--encoding auto`` keeps a JPEG or PNG file's own bytes and writes arrays as PNG; ``png``;
``jpeg`` with ``--quality``). A file is written under a temporary name and renamed, so a re-run
skips the files that exist; the bytes depend on the rows and pyarrow's version only (no time, no
host), which the export's fingerprint records. cifarkit reads the files back through
:mod:`.parquet_read`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..metadata.export_state import ExportState
from ..metadata.names import path_component
from ..sources.labelled import LazyImages
from ..writers.atomic import is_partial, open_atomic
from . import parquet_layout as layout
from . import sharding
from .base import DEFAULT_QUALITY, FormatAdapter, Owns, Piece, TfdsFound, WriteOptions, index_width
from .codecs import png
from .parallel import run_tasks
from .tfrecord import IMAGE, image_features

ENCODINGS = ("auto", "png", "jpeg")  # Hugging Face's Image holds encoded images: no raw pixels
# Default shard size, from what the images take before encoding (a file's own size for image
# files): CIFAR-10's train split (154 MB of pixels) is two files, its test split one.
SHARD_BYTES = 128 << 20


def _source_bytes(dataset, split: str) -> int:
    total = 0
    for batch in dataset.batches[split]:
        if isinstance(batch.images, LazyImages):
            total += sum(os.path.getsize(p) for p in batch.images.paths)
        elif isinstance(batch.images, list):
            total += sum(image.nbytes for image in batch.images)
        else:
            total += batch.images.nbytes
    return total


def _shard_count(dataset, split: str, options: WriteOptions) -> int:
    wanted = options.shards or math.ceil(_source_bytes(dataset, split) / SHARD_BYTES)
    return max(1, min(wanted, dataset.count(split)))


def _encoded_sizes(encoding: str, quality: int):
    """The bytes of each image as the image column stores it (:mod:`.sharding`'s estimate)."""

    def sizes(images) -> list[int]:
        return [len(features[IMAGE]) for features in image_features(images, encoding, quality)]

    return sizes


ROW_OVERHEAD = 100  # a row's labels, id, the image struct's null path and its share of the pages
# --shard-size only: the default stays SHARD_BYTES of the images before encoding.
_PLANS = sharding.ShardPlans(1 << 62, _encoded_sizes, ROW_OVERHEAD, capped=False, max_shards=layout.MAX_SHARD_INDEX)


@dataclass(frozen=True)
class ParquetShard(Piece):
    """One file: images ``start:stop`` of the split, in order."""

    index: int = 0
    count: int = 1  # files in the split

    @property
    def file_name(self) -> str:
        return layout.shard_name(self.split, self.index, self.count)

    def manifest_paths(self) -> list[str]:
        return [self.file_name] * (self.stop - self.start)


def _groups(encoded: list[bytes]) -> list[tuple[int, int]]:
    """(first, stop) of each row group of ``encoded``, ended once its images reach GROUP_BYTES."""
    bounds, first, held = [], 0, 0
    for row, data in enumerate(encoded):
        held += len(data)
        if held >= layout.GROUP_BYTES:
            bounds.append((first, row + 1))
            first, held = row + 1, 0
    if first < len(encoded):
        bounds.append((first, len(encoded)))
    return bounds


def write_file(dataset, shard: ParquetShard, path: str, width: int, encoding: str, quality: int) -> tuple[int, int]:
    """Write one shard's file atomically (runs in a worker); skip it if it exists. The images are
    taken from ``dataset`` and encoded a row group's worth (ROWS_PER_GROUP) at a time, so a worker
    holds a few MB, not a whole file's worth of copies. Returns (written, skipped) image counts."""
    if "pyarrow" not in sys.modules and multiprocessing.parent_process() is not None:
        # An export worker, pyarrow not yet loaded: the system's allocator, since pyarrow's default
        # (mimalloc) keeps 50-60 MB of a file's freed buffers, in each worker.
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    pa, pq = layout.pyarrow()
    target = Path(path)
    count = shard.stop - shard.start
    if target.exists():
        return 0, count
    schema = layout.schema(dataset.class_names, dataset.coarse_class_names)
    pool = pa.system_memory_pool()
    with open_atomic(target) as handle:
        _write_rows(pa, pq, pool, handle, schema, dataset, shard, width, encoding, quality)
    return count, 0


def _write_rows(pa, pq, pool, handle, schema, dataset, shard, width: int, encoding: str, quality: int) -> None:
    with pq.ParquetWriter(handle, schema, memory_pool=pool, **layout.writer_options()) as writer:
        for first in range(shard.start, shard.stop, layout.ROWS_PER_GROUP):
            part = dataset.take(shard.split, first, min(first + layout.ROWS_PER_GROUP, shard.stop))
            encoded = [features[IMAGE] for features in image_features(part.images, encoding, quality)]
            for a, b in _groups(encoded):
                ids = [f"{shard.split}_{first + i:0{width}d}" for i in range(a, b)]
                _write_group(pa, pool, writer, schema, part, (a, b), encoded[a:b], ids)
        if shard.stop == shard.start:
            writer.write_table(schema.empty_table())


def _write_group(pa, pool, writer, schema, part, rows: tuple[int, int], encoded: list[bytes], ids: list[str]):
    """Rows ``rows`` of ``part``, their images ``encoded``, as one row group."""
    a, b = rows
    columns = {
        layout.IMAGE: pa.StructArray.from_arrays(
            [pa.array(encoded, pa.binary(), memory_pool=pool), pa.nulls(b - a, pa.string(), memory_pool=pool)],
            [layout.BYTES, layout.PATH],
            memory_pool=pool,
        ),
        layout.LABEL: pa.array(np.asarray(part.labels[a:b], np.int64), memory_pool=pool),
    }
    if layout.COARSE in schema.names:
        columns[layout.COARSE] = pa.array(np.asarray(part.coarse_labels[a:b], np.int64), memory_pool=pool)
    columns[layout.ID] = pa.array(ids, pa.string(), memory_pool=pool)
    writer.write_table(pa.table(columns, schema=schema), row_group_size=b - a)


class Parquet(FormatAdapter):
    """``--format parquet``: Hugging Face's Parquet layout, images and labels in named columns."""

    name = "parquet"
    options = ("shards", "shard_size", "encoding", "quality")

    def check_options(self, options: WriteOptions) -> None:
        layout.require_pyarrow()  # a missing extra is named before any data is read
        if options.encoding not in ENCODINGS:
            raise UsageError(
                f"--format parquet stores encoded images: choose --encoding {', '.join(ENCODINGS)}. "
                f"Received: encoding={options.encoding}"
            )
        if options.quality != DEFAULT_QUALITY and options.encoding != "jpeg":
            raise UsageError(
                f"--quality is for JPEG images (--encoding jpeg); --encoding {options.encoding} does "
                f"not use it. Received: quality={options.quality}"
            )
        if options.shards is not None and options.shards > layout.MAX_SHARD_INDEX:
            raise UsageError(
                f"--shards must be at most {layout.MAX_SHARD_INDEX:,} for Parquet (file names number "
                f"them in five digits). Received: shards={options.shards}"
            )

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        fp: dict = {"encoding": options.encoding}
        if options.encoding == "jpeg":
            fp["quality"] = options.quality
        else:
            fp["png_deflate"] = png.COMPRESSOR  # another deflate writes other (equally valid) bytes
        fp["shards"] = {s: _shard_count(dataset, s, options) for s in splits}
        if getattr(options, "shard_size", None) is not None:  # files even in bytes, under the size
            fp.update(_PLANS.fingerprint(dataset, splits, options))
        fp["parquet"] = layout.writer_version()
        return fp

    def plan(self, dataset, split: str, options: WriteOptions) -> list[ParquetShard]:
        split = path_component(split, "split", dataset.location)
        n = dataset.count(split)
        if getattr(options, "shard_size", None) is not None:
            bounds = _PLANS.get(dataset, split, options).bounds
        else:
            count = _shard_count(dataset, split, options)
            bounds = tuple((i * n // count, (i + 1) * n // count) for i in range(count))
        return [ParquetShard(split, start, stop, i, len(bounds)) for i, (start, stop) in enumerate(bounds)]

    def write_split(self, dataset, split: str, out: Path, pieces: list, options: WriteOptions, progress) -> int:
        (out / layout.FOLDER).mkdir(parents=True, exist_ok=True)
        width = index_width(dataset.count(split))
        tasks = [(shard, str(out / shard.file_name), width, options.encoding, options.quality) for shard in pieces]
        skipped = 0
        for written, already in run_tasks(write_file, tasks, options.workers, shared=dataset):
            progress.update(written + already)
            skipped += already
        return skipped

    def describe_split(self, pieces: list) -> dict:
        return {"shards": len(pieces), "files": [shard.file_name for shard in pieces]}

    def describe(self, dataset, options: WriteOptions) -> dict:
        return {"encoding": options.encoding, "layout": f"{layout.FOLDER}/<split>-NNNNN-of-NNNNN.parquet"}

    def owns(self, state: ExportState) -> Owns:
        """``data/`` and in it the files of each split the state records, with the file count it
        records, and temporary files of an interrupted write."""
        shards = state.shards or {}
        shard_file = re.compile(r"(.+)-([0-9]{5})-of-([0-9]{5})\.parquet")

        def owns(path: str, is_dir: bool) -> bool:
            if path == layout.FOLDER:
                return is_dir
            folder, _, name = path.partition("/")
            if folder != layout.FOLDER or is_dir or "/" in name:
                return False
            found = shard_file.fullmatch(name)
            if found is None:
                return is_partial(name)
            split, index, count = found.groups()
            return int(count) == shards.get(split, -1) and int(index) < int(count)

        return owns

    def usage(self, out: Path) -> list[str]:
        return [f"Hugging Face: datasets.load_dataset({str(out)!r}), or load_dataset('parquet', data_dir={str(out)!r})"]

    def open(self, root: Path, info, *, verify: bool = True):
        from .parquet_read import open_parquet

        if isinstance(info, TfdsFound):  # only TFRecord folders are found that way
            raise UsageError(f"{root}: not a Parquet export")
        return open_parquet(root, info)
