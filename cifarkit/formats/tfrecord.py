"""TFRecord shards: ``OUT/<dataset>-<split>.tfrecord-NNNNN-of-NNNNN``, one feature spec used both
to write and to parse.

Writing needs no TensorFlow (:mod:`.codecs.example` encodes and frames the records), so worker
processes stay small; reading parses with ``tf.io`` and the same spec (:func:`parse_spec`), and
the tests check both directions against TensorFlow. A shard is written under a temporary name
and renamed, so a re-run skips the shards that exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import SourceError, UsageError
from ..parallel import run_tasks
from ..sources.labelled import paths_inside
from ..writers.atomic import open_atomic
from .base import FormatAdapter, Piece, WriteOptions, index_width
from .codecs import encode_images
from .codecs.example import example_bytes, first_bad_record, frame_record
from .codecs import png

IMAGES_PER_SHARD = 5000  # default shard size: 12 CIFAR-10 shards, enough to shard across workers


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # "bytes" or "int64"
    description: str


# The single definition of what a cifarkit TFRecord holds. `image`, `label` and `id` are the
# keys TFDS uses for CIFAR, so readers written for TFDS records read these too.
IMAGE = FeatureSpec("image", "bytes", "encoded image (see 'encoding'): PNG by default")
LABEL = FeatureSpec("label", "int64", "class index into class_names (CIFAR-100: the fine label)")
ID = FeatureSpec("id", "bytes", "'<split>_<index>', index zero-padded, unique in the dataset")
LABEL_FINE = FeatureSpec("label_fine", "int64", "CIFAR-100 fine label (same as label)")
LABEL_COARSE = FeatureSpec("label_coarse", "int64", "CIFAR-100 coarse label (superclass)")
HEIGHT = FeatureSpec("height", "int64", "image height (raw encoding only)")
WIDTH = FeatureSpec("width", "int64", "image width (raw encoding only)")

ENCODINGS = ("png", "jpeg", "raw")


def feature_specs(*, coarse: bool, encoding: str) -> tuple[FeatureSpec, ...]:
    specs = [IMAGE, LABEL, ID]
    if coarse:
        specs += [LABEL_FINE, LABEL_COARSE]
    if encoding == "raw":
        specs += [HEIGHT, WIDTH]
    return tuple(specs)


def parse_spec(specs: tuple[FeatureSpec, ...]) -> dict:
    """The ``tf.io.parse_example`` feature dict for records written with ``specs``."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "int64": tf.int64}
    return {s.name: tf.io.FixedLenFeature([], dtypes[s.kind]) for s in specs}


def shard_name(dataset: str, split: str, shard: int, shards: int) -> str:
    return f"{dataset}-{split}.tfrecord-{shard:05d}-of-{shards:05d}"


def _raw_features(images) -> Iterator[dict[str, bytes | int]]:
    for image in images:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        yield {IMAGE.name: image.tobytes(), HEIGHT.name: int(image.shape[0]), WIDTH.name: int(image.shape[1])}


def image_features(images, encoding: str, quality: int) -> Iterator[dict[str, bytes | int]]:
    """The image part of each record, encoding a whole shard's images in one pass."""
    if encoding == "raw":
        return _raw_features(images)
    encoded = encode_images(images, "jpg" if encoding == "jpeg" else "png", quality)
    return ({IMAGE.name: data} for data in encoded)


RECORDS_PER_WRITE = 1000  # encoded, framed and written together: ~2.6 MB of CIFAR records


def write_shard(path: str, split: str, start: int, width: int, images, labels, coarse_labels,
                encoding: str, quality: int) -> tuple[int, int]:  # fmt: skip
    """Write one complete shard atomically (runs in a worker); skip it if it already exists.

    Records are encoded and framed a thousand at a time and written with one call each: about a
    fifth less CPU than interleaving encoding with small writes, and a worker holds a few MB,
    not a whole shard's worth of copies. Returns (written, skipped) image counts."""
    target = Path(path)
    if target.exists():
        return 0, len(labels)
    labels = np.asarray(labels).tolist()
    coarse = None if coarse_labels is None else np.asarray(coarse_labels).tolist()
    with open_atomic(target) as handle:
        for first in range(0, len(labels), RECORDS_PER_WRITE):
            records = []
            piece = images[first : first + RECORDS_PER_WRITE]
            for offset, features in enumerate(image_features(piece, encoding, quality), first):
                features[LABEL.name] = labels[offset]
                features[ID.name] = f"{split}_{start + offset:0{width}d}".encode()
                if coarse is not None:
                    features[LABEL_FINE.name] = labels[offset]
                    features[LABEL_COARSE.name] = coarse[offset]
                records.append(frame_record(example_bytes(features)))
            handle.write(b"".join(records))
    return len(labels), 0




@dataclass(frozen=True)
class Shard(Piece):
    """One shard file: images ``start:stop`` of the split, in order."""

    index: int = 0
    count: int = 1  # shards in the split
    dataset: str = ""  # the dataset's name, the first part of the file name

    @property
    def file_name(self) -> str:
        return shard_name(self.dataset, self.split, self.index, self.count)

    def manifest_paths(self) -> list[str]:
        return [self.file_name] * (self.stop - self.start)


def _write_shard(dataset, shard: Shard, path: str, width: int, encoding: str, quality: int) -> tuple[int, int]:
    """Worker: one TFRecord shard; returns (written, skipped)."""
    part = dataset.take(shard.split, shard.start, shard.stop)
    return write_shard(path, shard.split, shard.start, width, part.images, part.labels, part.coarse_labels,
                       encoding, quality)  # fmt: skip


def _shard_count(n: int, options: WriteOptions) -> int:
    wanted = options.shards or math.ceil(n / IMAGES_PER_SHARD)
    return max(1, min(wanted, n))


class TFRecord(FormatAdapter):
    """``--format tfrecord``: sharded ``tf.train.Example`` records (TFDS's keys for CIFAR)."""

    name = "tfrecord"

    def check_options(self, options: WriteOptions) -> None:
        if options.encoding not in ENCODINGS:
            raise UsageError(f"unknown encoding '{options.encoding}'; choose one of {', '.join(ENCODINGS)}")

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        fp: dict = {}
        if options.encoding == "jpeg":
            fp["quality"] = options.quality
        if options.encoding == "png":
            fp["png_deflate"] = png.COMPRESSOR  # another deflate writes other (equally valid) bytes
        fp["encoding"] = options.encoding
        fp["shards"] = {s: _shard_count(dataset.count(s), options) for s in splits}
        return fp

    def plan(self, dataset, split: str, options: WriteOptions) -> list[Shard]:
        n = dataset.count(split)
        count = _shard_count(n, options)
        bounds = [(i * n // count, (i + 1) * n // count) for i in range(count)]
        return [Shard(split, start, stop, i, count, dataset.name) for i, (start, stop) in enumerate(bounds)]

    def write_split(self, dataset, split: str, out: Path, pieces: list[Shard], options: WriteOptions,
                    progress) -> int:  # fmt: skip
        width = index_width(dataset.count(split))
        tasks = [(shard, str(out / shard.file_name), width, options.encoding, options.quality) for shard in pieces]
        skipped = 0
        for written, already in run_tasks(_write_shard, tasks, options.workers, shared=dataset):
            progress.update(written + already)
            skipped += already
        return skipped

    def describe_split(self, pieces: list[Shard]) -> dict:
        return {"shards": len(pieces), "files": [shard.file_name for shard in pieces]}

    def describe(self, dataset, options: WriteOptions) -> dict:
        specs = feature_specs(coarse=dataset.coarse_class_names is not None, encoding=options.encoding)
        return {
            "encoding": options.encoding,
            "features": {s.name: {"dtype": s.kind, "description": s.description} for s in specs},
        }

    def clean(self, out: Path, splits: tuple[str, ...]) -> None:
        for path in out.glob("*.tfrecord-*-of-*"):
            path.unlink()

    def open(self, root: Path, info: dict, *, verify: bool = True):
        return _open_shards(root, _checked_info(root, info))


# --- reading ------------------------------------------------------------------------------------


@dataclass
class _Checked:
    """What a TFRecord export's dataset_info.json says, checked."""

    name: str
    class_names: tuple[str, ...]
    encoding: str
    coarse: bool
    counts: dict[str, int]
    files: dict[str, list[str]]  # split -> shard paths, each inside the export folder


def _checked_info(root: Path, info: dict) -> _Checked:
    """Check the fields a reader relies on; one line naming the first that is wrong."""
    path = root / "dataset_info.json"

    def bad(what: str, value) -> SourceError:
        return SourceError(f"{path}: malformed ({what}, found {json.dumps(value)[:80]})")

    names, splits, encoding = info.get("class_names"), info.get("splits"), info.get("encoding", "png")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("'class_names' must be a list of strings", names)
    if encoding not in ENCODINGS:
        raise bad(f"'encoding' must be one of {', '.join(ENCODINGS)}", encoding)
    features = info.get("features", {})
    if not isinstance(features, dict):
        raise bad("'features' must be an object", features)
    if not isinstance(splits, dict) or not splits:
        raise bad("'splits' must be an object of splits", splits)
    counts, files = {}, {}
    for split, entry in splits.items():
        count = entry.get("count") if isinstance(entry, dict) else None
        if type(count) is not int or count < 0:  # not bool, not "many"
            raise bad(f"'splits.{split}.count' must be a whole number", count)
        shards = entry.get("files")
        if not isinstance(shards, list) or not shards:
            raise SourceError(f"{path}: lists no TFRecord shards for split {split!r}")
        counts[split] = count
        files[split] = [str(p) for p in paths_inside(root, shards, path)]
    return _Checked(str(info.get("name", root.name)), tuple(names), encoding, "label_coarse" in features,
                    counts, files)  # fmt: skip


def _open_shards(root: Path, checked: _Checked):
    import tensorflow as tf

    from ..reader import AUTOTUNE, CIFAR_NAMES, CIFAR_SHAPE, DataReader

    encoding, files = checked.encoding, checked.files
    for shards in files.values():
        missing = [n for n in shards if not Path(n).is_file()]
        if missing:
            raise SourceError(f"{root}: TFRecord shard {Path(missing[0]).name} is missing")
        OPENED_SHARDS.update(dict.fromkeys(shards))
    features = parse_spec(feature_specs(coarse=checked.coarse, encoding=encoding))
    shape = CIFAR_SHAPE if checked.name in CIFAR_NAMES else None

    def decode(record):
        example = tf.io.parse_single_example(record, features)
        if encoding == "raw":
            image = tf.io.decode_raw(example["image"], tf.uint8)
            image = tf.reshape(image, tf.stack([example["height"], example["width"], 3]))
        else:
            image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        if shape is not None:
            image = tf.ensure_shape(image, shape)
        return image, tf.cast(example["label"], tf.int32)

    def build(split: str):
        # Shards are read in order, so an unshuffled pass gives the dataset order (ids 0, 1, ...).
        records = tf.data.TFRecordDataset(files[split], num_parallel_reads=None)
        return records.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)

    return DataReader(
        name=checked.name, kind="tfrecord", location=root, class_names=checked.class_names,
        counts=checked.counts, image_shape=shape, _build=build, files=files,
    )  # fmt: skip


# Every TFRecord shard a reader opened in this process (insertion-ordered), so that a corrupt
# record, which TensorFlow reports only by its offset, can be traced to its file.
OPENED_SHARDS: dict[str, None] = {}


def name_corrupt_shard(message: str) -> str:
    """``message`` (TensorFlow's "corrupted record at N") with the shard that fails its checks
    put in front; unchanged when no opened shard does. Runs only after such an error: it reads
    the shards' framing and CRCs, which the normal path leaves to TensorFlow."""
    for shard in list(OPENED_SHARDS):
        offset = first_bad_record(shard)
        if offset is not None:
            # TensorFlow counts from the record's data, after its 12-byte header; we from the header.
            told = any(f" {at}" in message for at in (offset, offset + 12))
            return f"{shard}: {message}" if told else f"{shard}: bad record at {offset} ({message})"
    return message
