"""TFRecord shards: one feature spec, used both to write and to parse.

Writing needs no TensorFlow: a ``tf.train.Example`` is a tiny protobuf and a TFRecord is a
length, a masked CRC-32C, the bytes and another masked CRC-32C, so worker processes can encode
and frame records themselves. Importing TensorFlow would cost about 550 MB of memory and
several seconds in every writer process; reading and parsing use ``tf.io`` as usual
(:func:`parse_spec`), and the tests check both directions against TensorFlow.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic import open_atomic
from .image_tree import encode_images


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


# --- tf.train.Example protobuf encoding --------------------------------------------------------
# Example{features=1: Features{feature=1: map<string, Feature>}}; map entries are messages
# {key=1, value=2}; Feature is a oneof {bytes_list=1, float_list=2, int64_list=3}, and each list
# holds `repeated value = 1` (int64 packed). Keys are written sorted, as protobuf's
# deterministic serialisation does.


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 are ten-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Tags, lengths and labels of a CIFAR record are all small: a table lookup instead of a loop
# (about 30 varints a record, 60,000 records).
_SMALL_VARINTS = tuple(_encode_varint(i) for i in range(1 << 14))


def _varint(value: int) -> bytes:
    if 0 <= value < 1 << 14:
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=None)
def _map_key(key: str) -> bytes:
    return _field(1, key.encode())  # map entry's key


def _feature(value: bytes | int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return _field(1, _field(1, value))  # bytes_list{value: [value]}
    return _field(3, _field(1, _varint(int(value))))  # int64_list{value: [value]} packed


def example_bytes(features: dict[str, bytes | int]) -> bytes:
    """Serialise a ``tf.train.Example`` holding one value per feature (runs once per image)."""
    entries = b"".join(_field(1, _map_key(key) + _field(2, _feature(features[key]))) for key in sorted(features))
    return _field(1, entries)


# --- TFRecord framing ---------------------------------------------------------------------------

_CRC_MASK_DELTA = 0xA282EAD8  # from TensorFlow's record format: masked = rot15(crc) + delta


def _masked_crc(data: bytes) -> bytes:
    import google_crc32c

    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF)


def frame_record(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


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


def first_bad_record(path: str | Path) -> int | None:
    """The byte offset of the first record in a shard whose framing or CRCs are wrong, or None
    when every record checks out. For naming the shard after TensorFlow reports a corrupt
    record (it gives only the offset); TensorFlow does the checking on the normal path."""
    try:
        handle = open(path, "rb")
    except OSError:
        return 0
    with handle:
        offset, size = 0, os.fstat(handle.fileno()).st_size
        while True:
            header = handle.read(12)  # length (8 bytes) and its masked CRC (4)
            if not header:
                return None
            if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
                return offset
            (length,) = struct.unpack("<Q", header[:8])
            if length > size - offset - 16:  # longer than what is left: never allocate it
                return offset
            data = handle.read(length)
            if len(data) < length or _masked_crc(data) != handle.read(4):
                return offset
            offset += 12 + length + 4
