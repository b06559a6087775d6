"""``tf.train.Example`` records in TFRecord framing, written without TensorFlow.

A ``tf.train.Example`` is a tiny protobuf and a TFRecord is a length, a masked CRC-32C, the bytes
and another masked CRC-32C, so export workers encode and frame records themselves: importing
TensorFlow would cost about 550 MB of memory and several seconds in every worker process. The
tests parse what this writes with TensorFlow.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

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


def _feature(value: bytes | int | tuple) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return _field(1, _field(1, value))  # bytes_list{value: [value]}
    if isinstance(value, tuple):  # int64_list{value: [...]} packed, as TFDS stores a shape
        return _field(3, _field(1, b"".join(_varint(int(v)) for v in value)))
    return _field(3, _field(1, _varint(int(value))))  # int64_list{value: [value]} packed


def example_bytes(features: dict[str, bytes | int | tuple]) -> bytes:
    """Serialise a ``tf.train.Example``: one value per feature, or a tuple of ints (runs once per image)."""
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
