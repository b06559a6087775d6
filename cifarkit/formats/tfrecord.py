"""TFRecord shards: ``OUT/<dataset>-<split>.tfrecord-NNNNN-of-NNNNN``, a TFDS dataset folder.

The records have TFDS's keys (``image``, ``label``, ``id``, ``coarse_label``) and the folder
TFDS's metadata (:mod:`.tfds_info`: dataset_info.json, features.json, label files), so
``tfds.builder_from_directory(OUT)`` reads it, and with ``--tfds-layout``
``tfds.load(name, data_dir=...)`` too; cifarkit's own metadata is in cifarkit_info.json.
Writing needs no TensorFlow (:mod:`.codecs.example` encodes and frames the records), so worker
processes stay small; reading (:mod:`.tfrecord_read`) parses with ``tf.io`` from features.json,
and the tests read both ways with TFDS itself. A shard is written under a temporary name and
renamed, so a re-run skips the shards that exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..metadata.export_state import ExportState
from ..metadata.names import path_component
from ..sources.image_file import read_image
from ..sources.labelled import LazyImages
from ..writers.atomic import is_partial, open_atomic
from . import sharding, tfds_info
from .base import DEFAULT_QUALITY, FormatAdapter, Owns, Piece, TfdsFound, WriteOptions, index_width
from .codecs import encode_images, png
from .codecs.example import example_bytes, frame_record
from .parallel import run_tasks
from .photos import stored_bytes
from .tfrecord_read import OPENED_SHARDS, name_corrupt_shard, parse_spec  # noqa: F401  (the reading side)

IMAGES_PER_SHARD = 5000  # default shard size: 12 CIFAR-10 shards, enough to shard across workers


# The keys of a record, as TFDS's own cifar10/cifar100 builders name them
# (image_classification/cifar.py), so readers written for TFDS read these records and TFDS reads
# them through the features.json beside them (:mod:`.tfds_info`).
IMAGE, LABEL, ID, COARSE = "image", "label", "id", "coarse_label"
HEIGHT, WIDTH = "height", "width"  # image-file sources: the stored image's size
RAW_VALUE, RAW_SHAPE = "image/value", "image/shape"  # raw images of mixed sizes, as TFDS stores a Tensor

ENCODINGS = ("auto", "png", "jpeg", "raw")  # --encoding, in --help's order


def shard_name(dataset: str, split: str, shard: int, shards: int, suffix: str = "tfrecord") -> str:
    """A shard's file name, TFDS's default (``suffix``: its file format's, core/file_adapters.py);
    ``split`` must be a path component (the dataset name is one: :func:`.tfds_info.tfds_name` keeps
    letters, digits and _ only)."""
    return f"{dataset}-{path_component(split, 'split', 'the export')}.{suffix}-{shard:05d}-of-{shards:05d}"


def _image_record(image, encoding: str, quality: int, sized: bool) -> dict:
    if encoding == "raw":
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if sized:  # mixed sizes: TFDS's dynamic Tensor layout
            return {RAW_VALUE: image.tobytes(), RAW_SHAPE: tuple(int(d) for d in image.shape)}
        return {IMAGE: image.tobytes()}
    data = next(encode_images([image], "jpg" if encoding == "jpeg" else "png", quality))
    return {IMAGE: data, HEIGHT: int(image.shape[0]), WIDTH: int(image.shape[1])} if sized else {IMAGE: data}


def image_features(images, encoding: str, quality: int) -> Iterator[dict]:
    """The image part of each record, a shard's arrays encoded in one pass. Image files (a
    photo tree) carry their height and width; under ``auto`` a JPEG or PNG keeps its own bytes."""
    if isinstance(images, list):  # arrays of mixed sizes (a re-exported photo tree): each carries its size
        for image in images:
            yield _image_record(image, "png" if encoding == "auto" else encoding, quality, True)
        return
    if isinstance(images, LazyImages):
        for path in images.paths:
            stored = stored_bytes(path) if encoding == "auto" else None
            if stored is not None:
                data, height, width = stored
                yield {IMAGE: data, HEIGHT: height, WIDTH: width}
            else:
                yield _image_record(read_image(path), "png" if encoding == "auto" else encoding, quality, True)
        return
    if encoding == "raw":
        yield from ({IMAGE: np.ascontiguousarray(image, dtype=np.uint8).tobytes()} for image in images)
        return
    codec = "jpg" if encoding == "jpeg" else "png"  # auto: an array source is stored as PNG
    yield from ({IMAGE: data} for data in encode_images(images, codec, quality))


RECORDS_PER_WRITE = 1000  # encoded, framed and written together: ~2.6 MB of CIFAR records
BYTES_PER_WRITE = 8 << 20  # and at most about this many bytes of records: a worker holds a few copies


def write_shard(
    path: str, split: str, start: int, width: int, images, labels, coarse_labels, encoding: str, quality: int
) -> tuple[int, int]:
    """Write one complete shard atomically (runs in a worker); skip it if it already exists.

    Records are encoded and framed a thousand (at most about 8 MB) at a time and written with one
    call each: about a fifth less CPU than interleaving encoding with small writes, and a worker
    holds a few copies of 8 MB, not a whole shard's worth. Returns (written, skipped) image counts."""
    target = Path(path)
    if target.exists():
        return 0, len(labels)
    with open_atomic(target) as handle:
        for examples in example_batches(split, start, width, images, labels, coarse_labels, encoding, quality):
            handle.write(b"".join(frame_record(example) for example in examples))
    return len(labels), 0


def example_batches(
    split: str, start: int, width: int, images, labels, coarse_labels, encoding: str, quality: int
) -> Iterator[list[bytes]]:
    """The serialized ``tf.train.Example`` of each image, with TFDS's keys, a thousand at a time
    or fewer where they pass BYTES_PER_WRITE (photos of 200 KB: 200 MB a thousand); every format
    that stores Examples writes these same bytes."""
    labels = np.asarray(labels).tolist()
    coarse = None if coarse_labels is None else np.asarray(coarse_labels).tolist()
    for first in range(0, len(labels), RECORDS_PER_WRITE):
        examples, size = [], 0
        piece = images[first : first + RECORDS_PER_WRITE]
        for offset, features in enumerate(image_features(piece, encoding, quality), first):
            features[LABEL] = labels[offset]
            features[ID] = f"{split}_{start + offset:0{width}d}".encode()
            if coarse is not None:
                features[COARSE] = coarse[offset]
            examples.append(example_bytes(features))
            size += len(examples[-1])
            if size >= BYTES_PER_WRITE:
                yield examples
                examples, size = [], 0
        if examples:
            yield examples


def features_of(dataset, encoding: str) -> dict[str, dict]:
    """features.json's entries for what :func:`write_shard` writes from ``dataset``."""
    batches = [b for bs in dataset.batches.values() for b in bs]
    # Image files, or arrays of mixed sizes (a list), are written with each image's own size.
    files = any(isinstance(b.images, (LazyImages, list)) for b in batches)
    shape = (None, None, 3)
    if not files:
        shapes = {b.images.shape[1:] for b in batches if len(b)}
        shape = shapes.pop() if len(shapes) == 1 else shape
    if encoding == "raw":
        image = tfds_info.tensor_feature(shape, "uint8", "bytes")
    else:
        image = tfds_info.image_feature(shape, "jpeg" if encoding == "jpeg" else None)
    features = {IMAGE: image, LABEL: tfds_info.label_feature(len(dataset.class_names)), ID: tfds_info.text_feature()}
    if dataset.coarse_class_names is not None:
        features[COARSE] = tfds_info.label_feature(len(dataset.coarse_class_names))
    if files and encoding != "raw":
        features[HEIGHT] = features[WIDTH] = tfds_info.tensor_feature((), "int64", scalar=True)
    return features


@dataclass(frozen=True)
class Shard(Piece):
    """One shard file: images ``start:stop`` of the split, in order."""

    index: int = 0
    count: int = 1  # shards in the split
    dataset: str = ""  # the dataset's name, the first part of the file name
    suffix: str = "tfrecord"  # the file format's, after the split in the name

    @property
    def file_name(self) -> str:
        return shard_name(self.dataset, self.split, self.index, self.count, self.suffix)

    def manifest_paths(self) -> list[str]:
        return [self.file_name] * (self.stop - self.start)


def _write_shard(dataset, shard: Shard, path: str, width: int, encoding: str, quality: int) -> tuple[int, int]:
    """Worker: one TFRecord shard; returns (written, skipped)."""
    part = dataset.take(shard.split, shard.start, shard.stop)
    return write_shard(
        path, shard.split, shard.start, width, part.images, part.labels, part.coarse_labels, encoding, quality
    )


def _encoded_sizes(encoding: str, quality: int):
    """The bytes of each image as a record stores it (``sharding`` measures a few)."""

    def sizes(images) -> list[int]:
        return [len(f[IMAGE] if IMAGE in f else f[RAW_VALUE]) for f in image_features(images, encoding, quality)]

    return sizes


class TFRecord(FormatAdapter):
    """``--format tfrecord``: sharded ``tf.train.Example`` records with TFDS's metadata, so TFDS
    opens the folder (``tfds.builder_from_directory``) and cifarkit reads TFDS's folders."""

    name = "tfrecord"
    options = ("shards", "shard_size", "encoding", "quality", "tfds_layout")
    tfds_file_format = "tfrecord"  # TFDS's name of the format (dataset_info.json's fileFormat, file names)
    shard_worker = staticmethod(_write_shard)  # writes one shard (in a worker process)
    _plans = sharding.ShardPlans(IMAGES_PER_SHARD, _encoded_sizes, sharding.RECORD_OVERHEAD, capped=True)

    def check_options(self, options: WriteOptions) -> None:
        if options.encoding not in ENCODINGS:
            raise UsageError(f"unknown encoding '{options.encoding}'; choose one of {', '.join(ENCODINGS)}")
        if options.quality != DEFAULT_QUALITY and options.encoding != "jpeg":
            raise UsageError(
                f"--quality is for JPEG records (--encoding jpeg); --encoding {options.encoding} does "
                f"not use it. Received: quality={options.quality}"
            )

    def folder(self, dataset, options: WriteOptions) -> tuple[str, ...]:
        """Under ``--tfds-layout``, the export goes to OUT/<name>/<version>/, where
        ``tfds.load(name, data_dir=OUT)`` looks for it."""
        name = tfds_info.tfds_name(dataset.name)
        return (name, tfds_info.tfds_version(name)) if options.tfds_layout else ()

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        fp: dict = {}
        if options.encoding == "jpeg":
            fp["quality"] = options.quality
        if options.encoding in ("png", "auto"):
            fp["png_deflate"] = png.COMPRESSOR  # another deflate writes other (equally valid) bytes
        fp["encoding"] = options.encoding
        fp.update(self._plans.fingerprint(dataset, splits, options))  # shards; their size and bounds if by bytes
        fp["records"] = "tfds keys"  # coarse_label, image/shape: never resumes a pre-TFDS export
        return fp

    def shard_plan(self, dataset, split: str, options: WriteOptions) -> sharding.ShardPlan:
        """:func:`.sharding.plan_shards` for this format's records, made once per export and split."""
        return self._plans.get(dataset, split, options)

    def plan(self, dataset, split: str, options: WriteOptions) -> list[Shard]:
        bounds = self.shard_plan(dataset, split, options).bounds
        count = len(bounds)
        name = tfds_info.tfds_name(dataset.name)
        suffix = self.tfds_file_format
        return [Shard(split, start, stop, i, count, name, suffix) for i, (start, stop) in enumerate(bounds)]

    def write_split(self, dataset, split: str, out: Path, pieces: list[Shard], options: WriteOptions, progress) -> int:
        width = index_width(dataset.count(split))
        tasks = [(shard, str(out / shard.file_name), width, options.encoding, options.quality) for shard in pieces]
        skipped = 0
        for written, already in run_tasks(self.shard_worker, tasks, options.workers, shared=dataset):
            progress.update(written + already)
            skipped += already
        return skipped

    def describe_split(self, pieces: list[Shard]) -> dict:
        return {"shards": len(pieces), "files": [shard.file_name for shard in pieces]}

    def describe(self, dataset, options: WriteOptions) -> dict:
        name = tfds_info.tfds_name(dataset.name)
        return {"encoding": options.encoding, "tfds": {"name": name, "version": tfds_info.tfds_version(name)}}

    def finish(self, out: Path, dataset, plans: dict[str, list[Shard]], options: WriteOptions) -> None:
        """TFDS's dataset_info.json, features.json and label files, after the shards."""
        name = tfds_info.tfds_name(dataset.name)
        splits = {
            split: ([s.stop - s.start for s in shards], sum((out / s.file_name).stat().st_size for s in shards))
            for split, shards in plans.items()
        }
        description = f"{dataset.name}, exported by cifarkit from {dataset.location.name} ({dataset.format})."
        labels = {LABEL: dataset.class_names}
        if dataset.coarse_class_names is not None:
            labels[COARSE] = dataset.coarse_class_names
        version = tfds_info.tfds_version(name)
        info = tfds_info.dataset_info_json(name, version, description, splits, self.tfds_file_format)
        tfds_info.write_metadata(out, info, tfds_info.features_json(features_of(dataset, options.encoding)), labels)

    def owns(self, state: ExportState) -> Owns:
        """Its shards (the dataset's name, a split the state counts, the shard count the state
        records for it) and TFDS's metadata beside them, all at the top of OUT."""
        shards = state.shards or {}
        dataset = re.escape(tfds_info.tfds_name(state.dataset))
        suffix = re.escape(self.tfds_file_format)
        shard_file = re.compile(dataset + r"-(.+)\." + suffix + r"-([0-9]{5,})-of-([0-9]{5,})")
        metadata = {tfds_info.INFO_FILE, tfds_info.FEATURES_FILE, f"{LABEL}.labels.txt", f"{COARSE}.labels.txt"}

        def owns(path: str, is_dir: bool) -> bool:
            if is_dir or "/" in path:
                return False
            shard = shard_file.fullmatch(path)
            if shard is None:
                return path in metadata or is_partial(path)
            split, index, count = shard.groups()
            return int(count) == shards.get(split, -1) and int(index) < int(count)

        return owns

    def open(self, root: Path, info, *, verify: bool = True):
        from .tfrecord_read import open_records

        if isinstance(info, TfdsFound):  # a folder TFDS prepared, or an export under --tfds-layout
            return open_records(info.root, info.own)
        return open_records(root, info)
