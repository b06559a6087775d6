"""Readers: any cifarkit source or export as a ``tf.data.Dataset`` of (uint8 image, int32 label).

- a TFRecord export: its shards, parsed with the feature spec that wrote them;
- a JPEG/PNG folder tree (a cifarkit export or any ``<split>/<class>/*`` tree): file names and
  labels in memory, images decoded in the pipeline;
- a CIFAR archive or extracted folder: the pixels held in memory as uint8 (all of CIFAR-10 is
  180 MB) and sliced by tf.data.

Images that do not all share one size (generic folder trees) are brought to one square size per
image (shorter side, then the centre) so that they can be batched; CIFAR stays 32x32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import SourceError, UsageError
from .sources.records import Dataset, LazyImages, paths_inside
from .writers import tfrecord

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import
CIFAR_SHAPE = (32, 32, 3)
# Exports of these datasets hold 32x32 images only, so their readers can promise a static shape.
CIFAR_NAMES = ("cifar10", "cifar100")


@dataclass
class DataSource:
    """What a reader knows about a source before building any pipeline."""

    name: str
    kind: str  # "tfrecord", "image files" or "arrays"
    location: Path
    class_names: tuple[str, ...]
    counts: dict[str, int]
    image_shape: tuple[int, int, int] | None  # None: images of different sizes
    _build: Callable = field(repr=False, default=None)
    arrays: dict = field(repr=False, default_factory=dict)  # split -> (images, labels) for "arrays"
    files: dict = field(repr=False, default_factory=dict)  # split -> shard paths for "tfrecord"

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def dataset(self, split: str, *, image_size: int | None = None, num_workers: int = 1):
        """(uint8 image, int32 label) pairs in dataset order.

        ``image_size`` squares images of mixed sizes; sources of one shape (CIFAR) ignore it.
        """
        if split not in self.counts:
            raise UsageError(f"{self.location}: no split {split!r}; it has {', '.join(self.counts)}")
        ds = self._build(split)
        if num_workers <= 1:
            # A TFRecord reader cannot know its length; stating it lets ``len(ds)`` work, Keras end
            # epochs without a "ran out of data" warning, and a shard that holds fewer or more
            # records than dataset_info.json says fail loudly. Not under multi-worker sharding,
            # where each worker reads only its share.
            ds = _with_length(ds, self.counts[split])
        if self.image_shape is None:
            if image_size is None:
                raise UsageError(f"{self.location}: images differ in size; give an image size to bring them to")
            ds = ds.map(_squarer(image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
        return shard_policy(ds, len(self.files.get(split, ())) >= max(num_workers, 2))


def _with_length(ds, count: int):
    import tensorflow as tf

    if ds.cardinality() != tf.data.UNKNOWN_CARDINALITY:
        return ds
    return ds.apply(tf.data.experimental.assert_cardinality(count))


def _squarer(size: int):
    from .augment import resize_shorter_centre

    def fn(image, label):
        return resize_shorter_centre(image, size), label

    return fn


def shard_policy(ds, by_file: bool):
    """Shard by file where there are enough files (each worker reads its own shards), otherwise
    by element (every worker reads everything and keeps its share): never silently AUTO."""
    import tensorflow as tf

    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.FILE if by_file else policy.DATA
    return ds.with_options(options)


def without_autotune(ds):
    """Switch tf.data's autotuning off for a pipeline that cifarkit itself iterates.

    In TensorFlow 2.21 deleting an iterator of an autotuned pipeline blocks until the autotuning
    thread's next wake-up, and those come at 10 ms, 30 ms, ... 5.11 s, 10.23 s, 20.47 s, 40.95 s,
    81.91 s after the iterator was made, then every 60 s. Keras makes a new iterator every epoch
    and every validation pass, so each of them could stall for up to a minute (a plain
    ``model.fit`` lost 0-8 s of each 12-s epoch in scripts/bench_train.py). Without autotuning
    there is no such thread; AUTOTUNE parallelism then stays at its starting value (the number of
    cores, at most 16). Datasets handed to users (:func:`load`) keep TensorFlow's default.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def open_data(path: str | Path, *, verify: bool = True) -> DataSource:
    """Find out what ``path`` holds and return a :class:`DataSource` for it."""
    path = Path(path).expanduser()
    info_file = path / "dataset_info.json" if path.is_dir() else None
    if info_file is not None and info_file.is_file():
        info = _read_info(info_file)
        if info.get("format") == "tfrecord":
            return _tfrecord_source(path, info)
    from .sources import open_source

    return from_dataset(open_source(path, verify=verify))


def load(path: str | Path, split: str, *, image_size: int | None = None, verify: bool = True):
    """The one-call reader: ``tf.data.Dataset`` of (uint8 (H, W, 3) image, int32 label)."""
    return open_data(path, verify=verify).dataset(split, image_size=image_size)


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: unreadable dataset_info.json ({exc})") from None
    if not isinstance(info, dict):
        raise SourceError(f"{path}: malformed (a JSON object is expected, not {type(info).__name__})")
    return info


@dataclass
class _TFRecordInfo:
    """What a TFRecord export's dataset_info.json says, checked."""

    name: str
    class_names: tuple[str, ...]
    encoding: str
    coarse: bool
    counts: dict[str, int]
    files: dict[str, list[str]]  # split -> shard paths, each inside the export folder


def _tfrecord_info(root: Path, info: dict) -> _TFRecordInfo:
    """Check the fields a reader relies on; one line naming the first that is wrong."""
    path = root / "dataset_info.json"

    def bad(what: str, value) -> SourceError:
        return SourceError(f"{path}: malformed ({what}, found {json.dumps(value)[:80]})")

    names, splits, encoding = info.get("class_names"), info.get("splits"), info.get("encoding", "png")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("'class_names' must be a list of strings", names)
    if encoding not in tfrecord.ENCODINGS:
        raise bad(f"'encoding' must be one of {', '.join(tfrecord.ENCODINGS)}", encoding)
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
    return _TFRecordInfo(str(info.get("name", root.name)), tuple(names), encoding, "label_coarse" in features,
                         counts, files)  # fmt: skip


def _tfrecord_source(root: Path, info: dict) -> DataSource:
    import tensorflow as tf

    checked = _tfrecord_info(root, info)
    encoding, files = checked.encoding, checked.files
    for shards in files.values():
        missing = [n for n in shards if not Path(n).is_file()]
        if missing:
            raise SourceError(f"{root}: TFRecord shard {Path(missing[0]).name} is missing")
        _OPENED_SHARDS.update(dict.fromkeys(shards))
    coarse = checked.coarse
    features = tfrecord.parse_spec(tfrecord.feature_specs(coarse=coarse, encoding=encoding))
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

    return DataSource(
        name=checked.name, kind="tfrecord", location=root, class_names=checked.class_names,
        counts=checked.counts, image_shape=shape, _build=build, files=files,
    )  # fmt: skip


# Every TFRecord shard a reader opened in this process (insertion-ordered), so that a corrupt
# record, which TensorFlow reports only by its offset, can be traced to its file.
_OPENED_SHARDS: dict[str, None] = {}


def name_corrupt_shard(message: str) -> str:
    """``message`` (TensorFlow's "corrupted record at N") with the shard that fails its checks
    put in front; unchanged when no opened shard does. Runs only after such an error: it reads
    the shards' framing and CRCs, which the normal path leaves to TensorFlow."""
    for shard in list(_OPENED_SHARDS):
        offset = tfrecord.first_bad_record(shard)
        if offset is not None:
            # TensorFlow counts from the record's data, after its 12-byte header; we from the header.
            told = any(f" {at}" in message for at in (offset, offset + 12))
            return f"{shard}: {message}" if told else f"{shard}: bad record at {offset} ({message})"
    return message


def from_dataset(dataset: Dataset) -> DataSource:
    """A source already read by :mod:`cifarkit.sources`: arrays in memory, or image file names."""
    import tensorflow as tf

    counts = {s: dataset.count(s) for s in dataset.splits}
    lazy = any(isinstance(b.images, LazyImages) for bs in dataset.batches.values() for b in bs)
    if not lazy:
        arrays = {}
        for split, batches in dataset.batches.items():
            images = np.concatenate([b.images for b in batches]) if len(batches) > 1 else batches[0].images
            labels = np.concatenate([b.labels for b in batches]).astype(np.int32)
            arrays[split] = (images, labels)

        def build(split: str):
            images, labels = arrays[split]
            return tf.data.Dataset.from_tensor_slices((images, labels))

        shapes = {a[0].shape[1:] for a in arrays.values()}
        shape = tuple(shapes.pop()) if len(shapes) == 1 else None
        return DataSource(dataset.name, "arrays", dataset.location, dataset.class_names, counts, shape,
                          _build=build, arrays=arrays)  # fmt: skip

    paths = {s: [str(p) for b in bs for p in b.images.paths] for s, bs in dataset.batches.items()}
    labels = {s: np.concatenate([b.labels for b in bs]).astype(np.int32) for s, bs in dataset.batches.items()}
    shape = CIFAR_SHAPE if dataset.format == "cifarkit image export" and _exported_from_cifar(dataset) else None

    decode = _tree_decoder(shape)

    def build(split: str):
        count = len(paths[split])
        files = tf.data.Dataset.from_tensor_slices((tf.range(count, dtype=tf.int64), paths[split], labels[split]))
        # deterministic=True wins over a pipeline's Options(deterministic=False): the failure
        # check relies on the order.
        decoded = files.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
        return _naming_failures(decoded, paths[split], shape)

    return DataSource(dataset.name, "image files", dataset.location, dataset.class_names, counts, shape, _build=build)


# Image files TensorFlow decodes in the pipeline itself, known by their first bytes: PNG and JPEG
# (nearly every tree), whose headers give their size cheaply. Any other file (GIF, BMP, TIFF, PPM,
# WebP, a misnamed or broken one) is decoded by Pillow, exactly as the exporter reads it.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SIZE_AT = 16  # after the signature (8 bytes), IHDR's length and type (4 + 4): width, height
_JPEG_SIGNATURE = b"\xff\xd8\xff"  # start of image, then the first marker


def _header_pixels(contents):
    """Width x height from a PNG or JPEG header (a tensor); 0 for any other file."""
    import tensorflow as tf

    from .sources.folder import MAX_PIXELS

    def png():
        size = tf.io.decode_raw(tf.strings.substr(contents, _PNG_SIZE_AT, 8), tf.int32, little_endian=False)
        return _pixels(tf.cast(size, tf.int64) & 0xFFFFFFFF)  # unsigned 32-bit in the file

    def jpeg():
        return _pixels(tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64))

    def _pixels(size):  # capped per side first, so the product cannot overflow
        return tf.where(tf.reduce_any(size > MAX_PIXELS), tf.constant(MAX_PIXELS + 1, tf.int64), size[0] * size[1])

    is_png = tf.logical_and(tf.strings.length(contents) >= _PNG_SIZE_AT + 8,
                            tf.equal(tf.strings.substr(contents, 0, 8), _PNG_SIGNATURE))  # fmt: skip
    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), _JPEG_SIGNATURE)
    return tf.case([(is_png, png), (is_jpeg, jpeg)], default=lambda: tf.constant(0, tf.int64))


def _tree_decoder(shape):
    """(index, path, label) -> (index, uint8 image, label); a file that fails raises inside tf.data."""
    import tensorflow as tf

    from .sources.folder import MAX_PIXELS, read_image

    def pillow(path):
        return read_image(Path(path.decode()))

    def decode(index, path, label):
        contents = tf.io.read_file(path)
        pixels = _header_pixels(contents)
        image = tf.cond(
            tf.logical_and(pixels > 0, pixels <= MAX_PIXELS),  # a bigger header: Pillow refuses it by name
            lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
            lambda: tf.numpy_function(pillow, [path], tf.uint8, stateful=False),
        )
        return index, tf.ensure_shape(image, shape or (None, None, 3)), label

    return decode


def _naming_failures(decoded, paths: list[str], shape):
    """``decoded`` without its indices, failing with the name of the first file that failed.

    TensorFlow's decoders say only "Invalid PNG data". Failed elements are dropped instead, so the
    first one whose position in the stream differs from its index follows the first failure; a
    sentinel after the last element catches failures at the end. :func:`read_image` explains the
    failed file with a :class:`SourceError` that names it.
    """
    import tensorflow as tf

    from .sources.folder import read_image

    count = len(paths)

    def explain(index):
        path = Path(paths[int(index)])
        read_image(path)  # raises with the reason; if Pillow reads it, TensorFlow's decoder did not:
        raise SourceError(f"{path}: cannot decode image (TensorFlow's decoder refuses it)")

    def check(position, element):
        index, image, label = element
        ok = tf.cond(tf.equal(index, position), lambda: tf.constant(True),
                     lambda: tf.numpy_function(explain, [position], tf.bool))  # fmt: skip
        with tf.control_dependencies([ok]):
            return tf.identity(image), tf.identity(label)

    sentinel = (tf.constant(count, tf.int64), tf.zeros(shape or (1, 1, 3), tf.uint8), tf.constant(0, tf.int32))
    stream = decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(sentinel)).enumerate()
    # take(count): without failures the sentinel is never reached; after one it is checked.
    return stream.map(check, num_parallel_calls=AUTOTUNE, deterministic=True).take(count)


def source_error_in(exc: Exception) -> SourceError | None:
    """The :class:`SourceError` an image-tree reader raised inside tf.data, which TensorFlow passes
    on wrapped in its own error (with a traceback); None if ``exc`` carries none."""
    import re

    match = re.search(r"\bSourceError: ([^\n]+)", getattr(exc, "message", None) or "")
    return SourceError(match.group(1).strip()) if match else None


def _exported_from_cifar(dataset: Dataset) -> bool:
    info = dataset.location / "dataset_info.json"
    if not info.is_file():
        return False
    return _read_info(info).get("name") in CIFAR_NAMES


def to_numpy(ds, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Materialise (images, labels) of a reader's dataset; for tests, statistics and previews."""
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in without_autotune(ds.batch(1024)).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        return np.zeros((0, *CIFAR_SHAPE), np.uint8), np.zeros((0,), np.int32)
    return np.concatenate(images), np.concatenate(labels)
