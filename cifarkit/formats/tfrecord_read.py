"""Reading TFRecord datasets: cifarkit's exports (TFDS-keyed ones, described by TFDS's
features.json, and pre-TFDS ones, described by their own dataset_info.json) and folders TFDS prepared.

Every layout is brought to one :class:`Records` description (which files, which keys, how the
image is stored), and one pipeline parses and decodes it. The keys come from the folder's
metadata, never from a guess: TFDS stores an ``Image`` feature as encoded bytes, a ``Tensor``
with ``encoding: bytes`` as its raw bytes (with ``<key>/shape`` beside them when more than one
dimension is unknown) and one without an encoding as an int64 list (core/features/
image_feature.py, tensor_feature.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..constants import CIFAR_SHAPE
from ..errors import SourceError
from ..metadata.export_info import ExportInfo
from ..metadata.tfds import Feature
from ..runtime.lazy import tf
from ..sources.labelled import paths_inside
from . import tfds_info
from .codecs.example import first_bad_record

CIFAR_NAMES = ("cifar10", "cifar100")  # exports of these hold 32x32 images only


@dataclass
class Records:
    """A TFRecord dataset, whatever wrote it."""

    root: Path
    name: str
    class_names: tuple[str, ...]
    coarse_class_names: tuple[str, ...] | None
    counts: dict[str, int]
    files: dict[str, list[str]]  # split -> shard paths in order, each inside root
    image: str  # "encoded", "bytes", "dynamic" (image/value + image/shape), "ints", "sized" (pre-TFDS raw)
    shape: tuple  # the image's shape, None where a dimension varies
    coarse_key: str | None  # "coarse_label", or a pre-TFDS export's "label_coarse"
    # split -> examples in each shard (TFDS's shardLengths), for reading a slice of a split shard by
    # shard; empty where the metadata does not say (pre-TFDS exports)
    shard_lengths: dict[str, list[int]] = field(default_factory=dict)

    @property
    def static_shape(self) -> tuple[int, int, int] | None:
        if None not in self.shape:
            return tuple(self.shape)
        return CIFAR_SHAPE if self.name in CIFAR_NAMES else None


def describe(root: Path, info: ExportInfo | None) -> Records:
    """The :class:`Records` of the folder at ``root``; ``info`` is its cifarkit_info.json (or
    a pre-TFDS export's dataset_info.json), None for a folder TFDS wrote."""
    if info is None:
        return _from_tfds(tfds_info.read_folder_info(root))
    checked = _checked_info(root, info)
    if info.features is None and (root / tfds_info.FEATURES_FILE).is_file():
        tfds = tfds_info.read_folder_info(root)
        image, shape = _image_layout(root, tfds.features["image"])
        checked.image, checked.shape = image, shape
        checked.coarse_key = "coarse_label" if "coarse_label" in tfds.features else None
        checked.shard_lengths = _matching_lengths(checked, tfds.lengths)
    return checked


def _matching_lengths(records: Records, lengths: dict[str, list[int]]) -> dict[str, list[int]]:
    """TFDS's shard lengths of the splits whose shards and count they agree with; a split they do
    not describe is read without them."""
    return {
        split: lengths[split]
        for split, files in records.files.items()
        if len(lengths.get(split, ())) == len(files) and sum(lengths[split]) == records.counts[split]
    }


def _from_tfds(folder: tfds_info.TfdsFolder) -> Records:
    image, shape = _image_layout(folder.root, folder.features["image"])
    listed = folder.root / tfds_info.INFO_FILE
    files = {split: [str(p) for p in paths_inside(folder.root, names, listed)] for split, names in folder.files.items()}
    coarse = folder.labels.get("coarse_label")
    return Records(
        folder.root,
        folder.name,
        folder.labels["label"],
        coarse,
        folder.counts,
        files,
        image,
        shape,
        "coarse_label" if coarse is not None else None,
        folder.lengths,
    )


def _image_layout(root: Path, entry: Feature) -> tuple[str, tuple]:
    """How features.json says the image is stored (its shape is bounded where it is parsed)."""
    spec = entry.spec
    shape = spec.shape.sizes if spec is not None else ()
    if entry.image is not None and len(shape) == 3:
        return "encoded", shape
    if entry.tensor is not None and entry.tensor.dtype == "uint8" and len(shape) in (2, 3):
        if entry.tensor.encoding == "bytes":
            return ("dynamic" if shape.count(None) > 1 else "bytes"), shape
        if entry.tensor.encoding == "none" and None not in shape:
            return "ints", shape
    raise SourceError(
        f"{root / tfds_info.FEATURES_FILE}: its 'image' feature is not one cifarkit reads "
        f"(an Image, or a uint8 Tensor stored as bytes): {entry.model_dump_json()[:120]}"
    )


def _checked_info(root: Path, info: ExportInfo) -> Records:
    """The records cifarkit's metadata describes (parsed and checked in cifarkit.metadata); the
    shards it lists must stay inside ``root``."""
    counts, files = {}, {}
    for split, entry in info.splits.items():
        if not entry.files:
            raise SourceError(f"{info.path}: lists no TFRecord shards for split {split!r}")
        counts[split] = entry.count
        files[split] = [str(p) for p in paths_inside(root, entry.files, info.path)]
    coarse = info.coarse_class_names
    image = "sized" if info.encoding == "raw" else "encoded"  # pre-TFDS raw records carry height and width
    coarse_key = "label_coarse" if info.features and "label_coarse" in info.features else None
    return Records(
        root, info.name or root.name, info.class_names, coarse, counts, files, image, (None, None, 3), coarse_key
    )


def parse_spec(records: Records) -> dict:
    """The ``tf.io.parse_single_example`` feature dict for ``records``."""
    scalar = lambda dtype: tf.io.FixedLenFeature([], dtype)  # noqa: E731
    spec = {"label": scalar(tf.int64)}
    if records.image == "dynamic":
        spec["image/value"] = scalar(tf.string)
        spec["image/shape"] = tf.io.FixedLenFeature([len(records.shape)], tf.int64)
    elif records.image == "ints":
        spec["image"] = tf.io.FixedLenFeature([math.prod(records.shape)], tf.int64)
    else:
        spec["image"] = scalar(tf.string)
    if records.image == "sized":
        spec["height"] = spec["width"] = scalar(tf.int64)
    return spec


def _decoder(records: Records, size: int | None = None, crop=None):
    """parsed example -> uint8 image; ``size`` squares it (a JPEG decoding only its square). With a
    :class:`~cifarkit.readers.image_decode.RandomCrop`, (parsed example, seed) -> its random-resized
    crop (a JPEG decoding only its box). Every image's header and size were checked before
    (:func:`.record_checks.check_split`)."""

    from ..readers.image_decode import cut_random_crop, decode_random_crop, decode_squared
    from ..readers.squaring import resize_shorter_centre

    kind, shape = records.image, records.shape
    channels = shape[-1] if len(shape) == 3 and shape[-1] else 3
    if crop is not None and kind == "encoded":
        return lambda example, seed: decode_random_crop(
            example["image"], seed, crop.size, crop.scale, crop.ratio, channels
        )
    if crop is not None:
        whole = _decoder(records)
        return lambda example, seed: cut_random_crop(whole(example), seed, crop)
    if size and kind == "encoded":
        return lambda example: decode_squared(example["image"], size, channels)
    if size:
        whole = _decoder(records)
        return lambda example: resize_shorter_centre(whole(example), size)
    reshape = [-1 if d is None else d for d in shape]

    def decode(example):
        if kind == "encoded":
            return tf.io.decode_image(example["image"], channels=channels, expand_animations=False)
        if kind == "sized":
            pixels = tf.io.decode_raw(example["image"], tf.uint8)
            return tf.reshape(pixels, tf.stack([example["height"], example["width"], 3]))
        if kind == "dynamic":
            return tf.reshape(tf.io.decode_raw(example["image/value"], tf.uint8), example["image/shape"])
        if kind == "ints":
            return tf.reshape(tf.cast(example["image"], tf.uint8), reshape)
        return tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), reshape)

    return decode


def open_records(root: Path, info: ExportInfo | None):
    """A :class:`~cifarkit.readers.reader.DataReader` over a TFRecord dataset's shards."""
    return reader_for(describe(root, info))


def reader_for(records: Records):
    """The reader. Every shard's framing and record count are checked now, and a split's records
    before its pipeline is built (:mod:`.record_checks`): TensorFlow reads only records cifarkit
    has checked."""
    from ..readers.records import RecordReader
    from .record_checks import check_split, shard_counts

    shard_counts(records)  # before TensorFlow is even imported
    for shards in records.files.values():
        OPENED_SHARDS.update(dict.fromkeys(shards))
    return RecordReader(
        records.name,
        records.root,
        records.class_names,
        records.counts,
        records.static_shape,
        coarse_class_names=records.coarse_class_names,
        files=records.files,
        shard_lengths=records.shard_lengths,
        parser=record_parser(records),
        batch_parser=record_batch_parser(records),
        check_split=lambda split: check_split(records, split),
        coarse=records.coarse_key is not None,
    )


def record_parser(records: Records):
    """``(with_coarse, size=None, crop=None) -> (serialized record[, seed] -> (uint8 image, int32
    label[, int64 coarse label]))``, the image squared to ``size`` or cut by ``crop`` (then each
    record comes with its seed). Labels are parsed as int64 and
    range-checked before they are narrowed (:func:`.record_checks.checks`)."""

    from .record_checks import checks

    features = parse_spec(records)
    coarse = records.coarse_key
    if coarse:
        features[coarse] = tf.io.FixedLenFeature([], tf.int64)

    def parser(with_coarse: bool, size: int | None = None, crop=None):
        decode_image = _decoder(records, size, crop)
        side = crop.size if crop is not None else size
        shape = (side, side, records.shape[-1] or 3) if side else records.static_shape

        def parse(record, *seed):  # seed: the crop's int64 [2], where there is a crop
            example = tf.io.parse_single_example(record, features)
            valid = tf.debugging.Assert(checks(records, example, with_coarse), ["a record's label is out of range"])
            with tf.control_dependencies([valid]):
                image = decode_image(example, *seed)
                label = tf.cast(example["label"], tf.int32)
            if shape is not None:
                image = tf.ensure_shape(image, shape)
            return (image, label, example[coarse]) if with_coarse else (image, label)

        return parse

    return parser


# Images of one batch decoded side by side, so that a batch or two in flight already fill the cores.
DECODES_AT_ONCE = 64


def record_batch_parser(records: Records):
    """``(with_coarse, size=None) -> (batch of serialized records -> (uint8 images, int64 labels[,
    int64 coarse labels]))``, or None where the images' shapes vary (a batch could not stack them).
    The whole batch is parsed at once (``tf.io.parse_example``: a per-record parse costs about as
    much as a 32x32 PNG's decode) and its labels range-checked together before any image is
    decoded; each image is then decoded as :func:`record_parser` decodes it."""

    from .record_checks import checks

    features = parse_spec(records)
    coarse = records.coarse_key
    if coarse:
        features[coarse] = tf.io.FixedLenFeature([], tf.int64)
    image_keys = [key for key in features if key not in ("label", coarse)]

    def parser(with_coarse: bool, size: int | None = None):
        shape = (size, size, records.shape[-1] or 3) if size else records.static_shape
        if shape is None:
            return None
        decode_image = _decoder(records, size)
        spec = tf.TensorSpec(shape, tf.uint8)

        def parse(batch):
            example = tf.io.parse_example(batch, features)
            valid = tf.debugging.Assert(
                tf.reduce_all(checks(records, example, with_coarse)), ["a record's label is out of range"]
            )
            with tf.control_dependencies([valid]):
                images = tf.map_fn(
                    lambda one: tf.ensure_shape(decode_image(one), shape),
                    {key: example[key] for key in image_keys},
                    fn_output_signature=spec,
                    parallel_iterations=DECODES_AT_ONCE,
                )
            return (images, example["label"], example[coarse]) if with_coarse else (images, example["label"])

        return parse

    return parser


# Every TFRecord shard a reader opened in this process (insertion-ordered), so that a corrupt
# record, which TensorFlow reports only by its offset, can be traced to its file.
OPENED_SHARDS: dict[str, None] = {}


def name_corrupt_shard(message: str) -> str:
    """``message`` (TensorFlow's "corrupted record at N") with the shard that fails its checks
    put in front; unchanged when no opened shard does. Runs only after such an error: it reads
    the shards' framing and CRCs, which the normal path leaves to TensorFlow."""
    bad = [(shard, offset) for shard in reversed(OPENED_SHARDS) if (offset := first_bad_record(shard)) is not None]
    # The shard whose first bad record is at the offset TensorFlow names (it counts from the
    # record's data, after its 12-byte header; we from the header); else the latest opened.
    for shard, offset in bad:
        if any(f" {at}" in message for at in (offset, offset + 12)):
            return f"{shard}: {message}"
    if bad:
        shard, offset = bad[0]
        return f"{shard}: bad record at {offset} ({message})"
    return message


# TensorFlow's image decoders, refusing an image whose header passed the record checks but whose
# data does not decode; they name neither the shard nor the record.
UNDECODABLE = (
    "Invalid PNG",
    "Invalid JPEG",
    "Uncompress failed",
    "Unknown image file format",
    "Input size should match",
    "Got 0 frames",
)


def name_undecodable_image(message: str) -> str | None:
    """For TensorFlow's refusal of an encoded image in a record: the shard and record of the first
    image in the opened shards that Pillow cannot decode either, else the latest opened shard.
    None for any other message, or when no shard was opened. Runs only after such an error."""
    found = [message.index(kind) for kind in UNDECODABLE if kind in message]
    if not OPENED_SHARDS or not found:
        return None
    import io
    import re

    message = re.split(r"\s*\[\[|\s*\[Op:|\n", message[min(found) :])[0].strip()  # TensorFlow's words only

    from PIL import Image

    from .codecs.example import NotAnExample, example_features, one_value
    from .codecs.record_frame import FramingError, records_of

    for shard in reversed(OPENED_SHARDS):
        try:
            for index, (_, data) in enumerate(records_of(shard)):
                encoded = one_value(example_features(data).get("image"), bytes)
                if encoded is None:
                    continue
                try:
                    with Image.open(io.BytesIO(bytes(encoded))) as image:
                        image.load()
                except Exception:  # Pillow's many kinds of refusal: this is the image
                    return f"{shard}: record {index} holds an image that cannot be decoded ({message})"
        except (OSError, FramingError, NotAnExample):
            continue
    return f"{next(reversed(OPENED_SHARDS))}: an image in its records cannot be decoded ({message})"
