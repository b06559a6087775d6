"""``tf.train.Example`` records in TFRecord framing, written and read back without TensorFlow.

A ``tf.train.Example`` is a tiny protobuf and a TFRecord is a length, a masked CRC-32C, the bytes
and another masked CRC-32C, so export workers encode and frame records themselves: importing
TensorFlow would cost about 550 MB of memory and several seconds in every worker process. The
tests parse what this writes with TensorFlow.
"""

from __future__ import annotations

import functools
import struct

from .record_frame import first_bad_record, frame_record  # noqa: F401  (the framing: the writers' names)

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


@functools.cache
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


# --- decoding, for explaining a record TensorFlow refused ------------------------------------------
# Protobuf's wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit (3 and 4,
# groups, are not in these messages).


class NotAnExample(ValueError):
    """Bytes that do not parse as a ``tf.train.Example``."""


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise NotAnExample("a varint runs past its message" if at >= len(data) else "a varint longer than 10 bytes")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value & ((1 << 64) - 1), at


def _fields(data: bytes):
    """(field number, wire type, value) of one message: an int for varints and fixed fields,
    bytes for length-delimited ones."""
    at = 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise NotAnExample("field number 0")
        if wire == 0:
            value, at = _read_varint(data, at)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if at + width > len(data):
                raise NotAnExample("a fixed-width field runs past its message")
            value, at = int.from_bytes(data[at : at + width], "little"), at + width
        elif wire == 2:
            length, at = _read_varint(data, at)
            if length > len(data) - at:
                raise NotAnExample(f"a field claims {length:,} bytes, more than its message holds")
            value, at = data[at : at + length], at + length
        else:
            raise NotAnExample(f"wire type {wire}, which tf.train.Example does not use")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature_values(feature: bytes) -> list:
    """A ``Feature``'s list: bytes, floats or (signed) ints; the last of the oneof wins."""
    values: list = []
    for kind, wire, payload in _fields(feature):
        if kind not in (1, 2, 3) or wire != 2:
            continue  # an unknown field: skipped, as protobuf does
        values = []
        for number, item_wire, item in _fields(payload):
            if number != 1:
                continue
            if kind == 1 and item_wire == 2:
                values.append(bytes(item))
            elif kind == 2 and item_wire == 2:  # packed floats
                if len(item) % 4:
                    raise NotAnExample("packed floats whose length is not a whole number of values")
                values += [v for (v,) in struct.iter_unpack("<f", item)]
            elif kind == 2 and item_wire == 5:
                values.append(struct.unpack("<f", item.to_bytes(4, "little"))[0])
            elif kind == 3 and item_wire == 2:  # packed int64
                at = 0
                while at < len(item):
                    value, at = _read_varint(item, at)
                    values.append(_signed(value))
            elif kind == 3 and item_wire == 0:
                values.append(_signed(item))
            else:
                raise NotAnExample(
                    f"a value of wire type {item_wire} in a {('bytes', 'float', 'int64')[kind - 1]} list"
                )
    return values


def _length(data: bytes, at: int) -> tuple[int, int]:
    """A varint at ``at``: the one- and two-byte cases (every tag, and the lengths of a CIFAR
    record) without the loop."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    second = data[at + 1]
    if second < 0x80:
        return (first & 0x7F) | second << 7, at + 2
    return _read_varint(data, at)


def _skip(data: bytes, at: int, end: int, tag: int) -> int:
    """Past the value of an unknown field, as protobuf (and TensorFlow) skip it."""
    wire = tag & 7
    if tag >> 3 == 0 or wire not in (0, 1, 2, 5):
        raise NotAnExample(
            "field number 0" if tag >> 3 == 0 else f"wire type {wire}, which tf.train.Example does not use"
        )
    if wire == 0:
        return _read_varint(data, at)[1]
    if wire == 2:
        length, at = _length(data, at)
        return at + length
    return at + (8 if wire == 1 else 4)


_KEY, _VALUE = 0x0A, 0x12  # map entry {key = 1, value = 2}, both length-delimited


def example_features(data: bytes) -> dict[str, memoryview]:
    """{key: its serialised ``Feature``} of a serialised ``tf.train.Example``; raises
    :class:`NotAnExample`. As strict as TensorFlow's own parser about the structure (each map
    entry a key, then a value, and nothing else), which reports a failure there with the raw
    bytes in its message, where Python cannot even decode it as text. Later keys win."""
    try:
        return _example_features(data)
    except IndexError:
        raise NotAnExample("a field runs past the end of its message") from None


def _example_features(data: bytes) -> dict[str, memoryview]:
    features: dict[str, memoryview] = {}
    view, at, end = memoryview(data), 0, len(data)
    while at < end:
        tag, at = _length(data, at)
        if tag != _KEY:  # Example.features is field 1; anything else is skipped
            at = _skip(data, at, end, tag)
            if at > end:
                raise NotAnExample("a field runs past the end of its message")
            continue
        length, at = _length(data, at)
        entries, stop = at, at + length
        while entries < stop:
            if data[entries] != _KEY:  # Features holds its map (field 1) and nothing else, for TensorFlow
                tag = _length(data, entries)[0]
                raise NotAnExample(f"field {tag >> 3} (wire type {tag & 7}) in its features, which hold a map only")
            length, entry = _length(data, entries + 1)
            entries = entry + length
            if data[entry] != _KEY:
                raise NotAnExample("a feature map entry that does not start with its key")
            length, key_at = _length(data, entry + 1)
            key_stop = key_at + length
            if data[key_stop] != _VALUE:
                raise NotAnExample("a feature map entry whose key is not followed by its value")
            length, value_at = _length(data, key_stop + 1)
            if value_at + length != entries or entries > stop:
                raise NotAnExample("a feature map entry whose parts do not add up to its length")
            try:
                features[str(view[key_at:key_stop], "utf-8")] = view[value_at:entries]
            except UnicodeDecodeError:
                raise NotAnExample("a feature map entry whose key is not UTF-8") from None
        if stop > end:
            raise NotAnExample("its features run past the end of the record")
        at = stop
    return features


def one_value(feature, kind: type):
    """The single value of a serialised ``Feature`` if it holds exactly one of ``kind`` (int or
    bytes), else None; the usual layouts read without the general decoder."""
    if feature is None:
        return None
    try:
        if (
            kind is int
            and len(feature) == 5
            and feature[0] == 0x1A
            and feature[1:4] == b"\x03\x0a\x01"
            and feature[4] < 0x80
        ):
            return feature[4]  # int64_list {packed value: [v]}, v < 128
        if kind is bytes and len(feature) > 4 and feature[0] == 0x0A:  # bytes_list {value: [bytes]}
            length, at = _length(feature, 1)
            if at + length == len(feature) and feature[at] == 0x0A:
                size, start = _length(feature, at + 1)
                if start + size == len(feature):
                    return feature[start:]
    except IndexError:
        pass
    values = feature_values(feature)
    return values[0] if len(values) == 1 and isinstance(values[0], kind) else None


def feature_values(feature) -> list:
    """A serialised ``Feature``'s values: bytes, floats or (signed) ints; raises :class:`NotAnExample`."""
    return _feature_values(bytes(feature))


def packed_int64s(feature) -> memoryview | None:
    """The packed varints of a serialised ``Feature`` that is one packed ``int64_list`` (as
    protobuf writes one), for checking many values at once; None for any other layout."""
    try:
        if len(feature) < 2 or feature[0] != 0x1A:
            return None
        length, start = _length(feature, 1)
        if start + length != len(feature) or start >= len(feature) or feature[start] != 0x0A:
            return None
        length, first = _length(feature, start + 1)
        return memoryview(feature)[first:] if first + length == len(feature) else None
    except (IndexError, NotAnExample):
        return None


def parse_example(data: bytes) -> dict[str, list]:
    """A serialised ``tf.train.Example`` as {key: list of bytes, floats or ints}; raises
    :class:`NotAnExample` naming what is wrong. Pure Python, no TensorFlow (a fuzzing target)."""
    return {key: feature_values(value) for key, value in example_features(data).items()}
