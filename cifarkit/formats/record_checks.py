"""TFRecord datasets checked before TensorFlow reads them.

TensorFlow trusts what a shard says: a length field is allocated before its bytes are read, a
PNG's header is allocated before its pixels are, a label of 2^62 is narrowed to int32 without a
word, and a record that is not an Example is reported with its raw bytes in the message (which
Python cannot decode: a UnicodeDecodeError, not an error). So before a pipeline reads a split:

- every shard's framing is walked and its records counted against the shard lengths and split
  counts the metadata lists (:func:`shard_counts`; a seek per record, bodies unread), so a shard
  cut short, or with records added, is refused in one line naming it, by every command;
- every record is parsed here, in Python, once per shard per process (:func:`check_split`):
  both CRCs, the Example's structure as strictly as TensorFlow parses it, the label (and coarse
  label) as an int64 against the number of classes, an encoded image's header against
  :func:`~cifarkit.sources.image_file.pixel_budget`, raw pixels against the size their shape
  gives. The first record that fails is refused in one line: its shard, its place, what is
  wrong. About 8 us a record (0.4 s for 50,000 CIFAR records), against about 40 us a record
  for TensorFlow to parse and decode them.

Inside the pipeline the label is range-checked again before it is narrowed (a shard rewritten
after it was checked), an assertion lost in the noise of the decoding beside it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..runtime.lazy import tf
from ..sources.image_file import SPLIT_PIXELS_PER_BYTE, size_refusal, split_pixel_budget
from .codecs.example import (
    NotAnExample,
    example_features,
    feature_values,
    one_value,
    packed_int64s,
)
from .codecs.record_frame import FramingError, count_records, records_of

MAX_CHANNELS = 4  # RGBA: the most a raw image's last dimension may hold


def shard_counts(records) -> dict[str, list[int]]:
    """Records in each shard of each split of a :class:`~.tfrecord_read.Records`, each shard's
    framing checked; one line naming a shard that is missing, unreadable, or holds other than
    the metadata lists."""
    counts: dict[str, list[int]] = {}
    for split, shards in records.files.items():
        for shard in shards:
            try:
                present = Path(shard).is_file()
            except OSError as exc:  # a name from the metadata that no file system holds (too long)
                raise SourceError(f"{records.root}: TFRecord shard {Path(shard).name[:80]!r} cannot be opened "
                                  f"({exc.strerror})") from None  # fmt: skip
            if not present:
                raise SourceError(f"{records.root}: TFRecord shard {Path(shard).name} is missing")
        counts[split] = [count_records(shard) for shard in shards]
        listed = records.shard_lengths.get(split)
        if listed:
            for shard, held, length in zip(shards, counts[split], listed):
                if held != length:
                    raise SourceError(
                        f"{shard}: holds {held:,} records; the dataset's metadata lists {length:,} "
                        f"(a shard cut short or replaced?)"
                    )
        if sum(counts[split]) != records.counts[split]:
            raise SourceError(
                f"{records.root}: the {split} split's shards hold {sum(counts[split]):,} records; the "
                f"dataset's metadata lists {records.counts[split]:,}"
            )
    _check_declared_size(records)
    return counts


def _check_declared_size(records) -> None:
    """Raw pixels of a declared shape (features.json) are parsed into a tensor of that size before
    a record's own length is known: each value takes at least a byte of a record, so a shape no
    shard could hold one record of is refused before TensorFlow allocates it."""
    if records.image not in ("ints", "bytes"):
        return
    values = math.prod(d for d in records.shape if d is not None)  # a dimension that varies: at least 1
    largest = max((os.path.getsize(s) for shards in records.files.values() for s in shards), default=0)
    if values > largest:
        raise SourceError(
            f"{records.root / 'features.json'}: declares images of shape {list(records.shape)} "
            f"({values:,} values), more than any of its shards ({largest:,} bytes at most) can hold"
        )


# (each shard's path, size, mtime_ns and inode, what was checked): splits whose every record passed
_CHECKED: set[tuple] = set()


def check_split(records, split: str) -> None:
    """Parse and check every record of a split's shards (once per process while they are
    unchanged); one line naming the first that fails. The split's encoded images together may
    decode to no more than :func:`~cifarkit.sources.image_file.split_pixel_budget` allows for all its
    shards' bytes: a command that holds a split (info, export) is bounded by what it reads."""
    shards = records.files[split]
    stats = [os.stat(shard) for shard in shards]
    key = (
        tuple((s, t.st_size, t.st_mtime_ns, t.st_ino) for s, t in zip(shards, stats)),
        records.image,
        records.shape,
        len(records.class_names),
        records.coarse_key,
        len(records.coarse_class_names or ()),
    )
    if key in _CHECKED:
        return
    tally = [0]  # pixels of the encoded images so far
    check = record_check(records, tally)
    for shard in shards:
        try:
            for index, (offset, data) in enumerate(records_of(shard)):
                reason = check(data)
                if reason is not None:
                    raise SourceError(f"{shard}: record {index} (at byte {offset:,}): {reason}")
        except FramingError as exc:
            raise SourceError(f"{shard}: not a valid TFRecord shard: {exc}") from None
        except OSError as exc:
            raise SourceError(f"{shard}: cannot read TFRecord shard ({exc.strerror or exc})") from None
    held = sum(t.st_size for t in stats)
    if tally[0] > split_pixel_budget(held):
        raise SourceError(
            f"{records.root}: the {split} split's images decode to {tally[0]:,} pixels, more than "
            f"{SPLIT_PIXELS_PER_BYTE} per byte of its {held:,}-byte shards: a decompression bomb?"
        )
    _CHECKED.add(key)


def record_check(records, tally: list | None = None):
    """``serialised record -> None, or what is wrong with it`` for the records' layout; the
    pixels of encoded images are added to ``tally[0]``."""
    labels = [("label", records.class_names)]
    if records.coarse_key:
        labels.append((records.coarse_key, records.coarse_class_names))
    image = _image_check(records, [0] if tally is None else tally)

    def check(data: bytes) -> str | None:
        try:
            features = example_features(data)
            for key, names in labels:
                value = one_value(features.get(key), int)
                if value is None:
                    return f"its '{key}' is not one int64 ({_show(features.get(key))})"
                if not 0 <= value < (len(names) if names else 1 << 63):
                    return f"its '{key}' {value} is out of range for the dataset's {len(names)} classes"
            return image(features)
        except NotAnExample as exc:
            return f"not a tf.train.Example ({exc})"

    return check


def _image_check(records, tally: list):
    kind, shape = records.image, records.shape
    key = "image/value" if kind == "dynamic" else "image"

    def check(features: dict) -> str | None:
        if kind == "ints":
            return _ints_problem(features.get("image"), math.prod(shape))
        data = one_value(features.get(key), bytes)
        if data is None:
            return f"its '{key}' is not one bytes value ({_show(features.get(key))})"
        if kind == "encoded":
            return _encoded_problem(data, shape, tally)
        declared = {
            "bytes": shape,
            "dynamic": _ints(features.get("image/shape")),
            "sized": (one_value(features.get("height"), int), one_value(features.get("width"), int), 3),
        }[kind]
        if declared is None or None in declared or len(declared) != len(shape):
            return f"its image's shape is not {len(shape)} integers ({_show(declared)})"
        if min(declared) < 1:
            return f"its image's shape {list(declared)} holds no pixels"
        if any(known not in (None, given) for known, given in zip(shape, declared)):
            return f"its image's shape {list(declared)} is not the dataset's {[d or -1 for d in shape]}"
        if math.prod(declared) != len(data):
            return (
                f"its image holds {len(data):,} bytes, not the {math.prod(declared):,} its shape {list(declared)} needs"
            )
        return None

    return check


def _ints(feature) -> tuple | None:
    if feature is None:
        return None
    values = feature_values(feature)
    return tuple(values) if all(isinstance(v, int) for v in values) else None


def _ints_problem(feature, count: int) -> str | None:
    """Pixels stored as int64 values: ``count`` of them, each 0-255. Packed (as TFDS writes them),
    they are checked on the bytes with numpy: a value 0-255 is one varint byte, or two whose
    second is 1; any other layout goes through the general decoder, value by value."""
    packed = packed_int64s(feature) if feature is not None else None
    if packed is None:
        values = feature_values(feature) if feature is not None else []
        if len(values) != count or not all(isinstance(v, int) for v in values):
            return f"its 'image' is not {count:,} int64 values (the dataset's shape)"
        bad = next((v for v in values if not 0 <= v <= 255), None)
        return None if bad is None else f"its 'image' holds {bad}, not a uint8 pixel value"
    octets = np.frombuffer(packed, np.uint8)
    last = octets < 0x80  # the last byte of each varint
    held = int(np.count_nonzero(last))
    if held != count:
        return f"its 'image' holds {held:,} values, not the {count:,} of the dataset's shape"
    more = np.flatnonzero(~last)
    if len(more) and (not last[-1] or np.any(octets[more + 1] != 1)):
        return "its 'image' holds a value outside 0-255, not a uint8 pixel"
    return None


_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"  # the signature, then the IHDR chunk's length and type
_JPEG = b"\xff\xd8"
# JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC): height and width at 3 and 5 past the length
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _encoded_problem(data: bytes, shape: tuple, tally: list) -> str | None:
    size = encoded_size(data)
    if size is None:
        return f"its image is not a PNG or JPEG whose header gives its size (it starts {bytes(data[:8])!r})"
    refusal = size_refusal(*size, len(data))
    if refusal is not None:
        return refusal
    width, height = size
    tally[0] += width * height
    if None not in shape[:2] and (height, width) != tuple(shape[:2]):
        return f"its image is {height}x{width}; the dataset's images are {shape[0]}x{shape[1]}"
    return None


def encoded_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header, as the decoders read them;
    None for anything else (or a JPEG whose markers do not lead to a frame header)."""
    if data[:16] == _PNG and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != _JPEG:
        return None
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
        elif marker in _SOF:
            return (
                (int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big"))
                if at + 9 <= len(data)
                else None
            )
        elif marker in (0xD9, 0xDA):  # the end, or the scan data, before any frame header
            return None
        else:
            at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def checks(records, example, with_coarse: bool):
    """A boolean tensor: whether a parsed example's labels are in range, as int64 (again: the
    shard may have been rewritten since :func:`check_split` read it)."""
    ok = _in_range(example["label"], len(records.class_names))
    if with_coarse and records.coarse_class_names:
        ok = tf.logical_and(ok, _in_range(example[records.coarse_key], len(records.coarse_class_names)))
    return ok


def _in_range(label, classes: int):
    return tf.logical_and(label >= 0, label < classes)


def _show(value) -> str:
    if isinstance(value, memoryview):
        value = bytes(value)
    return repr(value)[:60]
