"""Mutators of scripts/fuzz_sources.py for binary formats: TFRecord framing, ``tf.train.Example``
records (encoded and decoded here, without TensorFlow), PNG and JPEG headers, TFLite flatbuffers.

Each takes a ``random.Random`` and the seed's bytes and returns new bytes and a few words saying
what it did. Where a format has checksums (TFRecord's CRC-32C, PNG's CRC-32) they are mostly
made right again, so that what the mutation says is believed by the layer below the reader.
"""

from __future__ import annotations

import random
import struct
import zlib

from fuzz_mutators import mutate_binary

# The codec's own protobuf pieces: the fuzzer frames what cifarkit would write, byte for byte.
from cifarkit.formats.codecs.example import _field, _read_varint, _varint

_LABELS = (2**62, -1, 99, 10, 100, 2**31, 2**32, 2**63 - 1, -(2**63), 0, 1)


# ---------------------------------------------------------------------------
# TFRecord framing and tf.train.Example records
# ---------------------------------------------------------------------------


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C (tensorflow/core/lib/hash/crc32c.h)."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + masked_crc(length) + record + masked_crc(record)


def records_of(shard: bytes) -> list[bytes]:
    """The records of a well-formed shard (the seeds are)."""
    records, offset = [], 0
    while offset + 12 <= len(shard):
        (length,) = struct.unpack("<Q", shard[offset : offset + 8])
        records.append(shard[offset + 12 : offset + 12 + length])
        offset += 16 + length
    return records


def mutate_framing(rng: random.Random, shard: bytes, pool: list[bytes]) -> tuple[bytes, str]:
    """Length fields claiming huge sizes (with a correct length CRC, so the claim is believed),
    shards cut at and between records, records dropped, repeated or from another shard, record
    bytes changed under a correct CRC."""
    records = records_of(shard)
    if not records:
        return mutate_binary(rng, shard, [])
    i = rng.randrange(len(records))
    framed = [frame(r) for r in records]
    choice = rng.randrange(8)
    if choice in (0, 1):
        length = rng.choice(
            [
                2**40,
                2**63 - 1,
                2**64 - 1,
                len(records[i]) + 1,
                len(records[i]) + 4096,
                0,
                max(0, len(records[i]) - 1),
                2**31,
            ]
        )
        header = struct.pack("<Q", length)
        crc = masked_crc(header) if rng.random() < 0.8 else framed[i][8:12]
        framed[i] = header + crc + framed[i][12:]
        return b"".join(framed), f"record {i} claims {length} bytes"
    if choice == 2:
        keep = rng.randrange(len(records))
        return b"".join(framed[:keep]), f"cut after {keep} of {len(records)} records"
    if choice == 3:
        cut = rng.randrange(len(shard))
        return shard[:cut], f"cut at byte {cut}"
    if choice == 4:
        how = rng.choice(["dropped", "repeated", "moved last"])
        if how == "dropped":
            del framed[i]
        elif how == "repeated":
            framed.insert(i, framed[i])
        else:
            framed.append(framed.pop(i))
        return b"".join(framed), f"record {i} {how}"
    if choice == 5:
        data, note = mutate_binary(rng, records[i], [])
        framed[i] = frame(data)
        return b"".join(framed), f"record {i}: {note}, CRC made right"
    if choice == 6 and pool:
        donor = rng.choice(pool)
        framed.insert(i, frame(donor))
        return b"".join(framed), f"a record of another shard inserted at {i}"
    data, note = mutate_binary(rng, shard, [])
    return data, f"shard bytes: {note}"


def _fields(data: bytes):
    """(field number, wire type, value) of a protobuf message; only varints and length-delimited."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        if tag & 7 == 0:
            value, pos = _read_varint(data, pos)
        else:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        yield tag >> 3, tag & 7, value


def parse_example(record: bytes) -> dict[bytes, tuple[str, list]]:
    """A ``tf.train.Example`` as {key: ("bytes" | "int64" | "float", values)}."""
    features = {}
    ((_, _, body),) = [f for f in _fields(record) if f[0] == 1]  # Example.features
    for _, _, entry in _fields(body):  # map<string, Feature>
        parts = {n: v for n, _, v in _fields(entry)}
        number, _, values = next(_fields(parts[2]))  # Feature's oneof
        inner = b"".join(v for _, _, v in _fields(values))
        if number == 1:
            features[parts[1]] = ("bytes", [v for _, _, v in _fields(values)])
        elif number == 3:
            ints, pos = [], 0
            while pos < len(inner):
                value, pos = _read_varint(inner, pos)
                ints.append(value - (1 << 64) if value >= 1 << 63 else value)
            features[parts[1]] = ("int64", ints)
        else:
            features[parts[1]] = ("float", list(struct.unpack(f"<{len(inner) // 4}f", inner)))
    return features


def example(features: dict[bytes, tuple[str, list]]) -> bytes:
    """The inverse of :func:`parse_example`, for any values (several, none, of any kind)."""
    entries = b""
    for key in sorted(features):
        kind, values = features[key]
        if kind == "bytes":
            feature = _field(1, b"".join(_field(1, v) for v in values))
        elif kind == "int64":
            feature = _field(3, _field(1, b"".join(_varint(v) for v in values)))
        else:
            feature = _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))
        entries += _field(1, _field(1, key) + _field(2, feature))
    return _field(1, entries)


def png_bytes(width: int, height: int, depth: int = 8, colour: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG whose header says ``width`` x ``height``; its data is ``rows`` (zero rows of the
    stated size when None and the size is small, else a few bytes: a header that lies)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    if rows is None:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour, 1)
        row = 1 + (width * channels * depth + 7) // 8
        rows = bytes(row * height) if row * height <= 1 << 20 else bytes(64)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _image_payload(rng: random.Random, pool: dict[str, bytes]) -> tuple[bytes, str]:
    choice = rng.choice(
        [
            "bomb",
            "big",
            "0x0",
            "1x1",
            "33x31",
            "grey",
            "16-bit",
            "rgba",
            "jpeg",
            "lying header",
            "truncated",
            "random",
            "empty",
        ]
    )
    if choice in ("bomb", "big", "jpeg"):
        return pool.get(choice, b""), f"image: {choice} ({len(pool.get(choice, b''))} bytes)"
    made = {
        "0x0": lambda: png_bytes(0, 0),
        "1x1": lambda: png_bytes(1, 1),
        "33x31": lambda: png_bytes(33, 31),
        "grey": lambda: png_bytes(32, 32, colour=0),
        "16-bit": lambda: png_bytes(32, 32, depth=16),
        "rgba": lambda: png_bytes(32, 32, colour=6),
        "lying header": lambda: png_bytes(30000, 30000),
        "truncated": lambda: png_bytes(32, 32)[:60],
        "random": lambda: rng.randbytes(rng.randrange(1, 200)),
        "empty": lambda: b"",
    }
    return made[choice](), f"image: {choice}"


def _key_text(key: bytes) -> str:
    return key.decode("utf-8", "replace")  # a mutated key may be any bytes


def _mutate_feature(rng: random.Random, features: dict, key: bytes, pool: dict[str, bytes]) -> str:
    kind, values = features[key]
    choice = rng.randrange(6)
    if choice < 2 and kind == "int64":
        if key.endswith(b"shape"):
            features[key] = (
                "int64",
                rng.choice(
                    [
                        [30000, 30000, 3],
                        [-1, 32, 3],
                        [0, 0, 3],
                        [2**62, 2, 3],
                        [32, 32],
                        [32, 32, 3, 1],
                        [100000, 100000, 1],
                    ]
                ),
            )
        else:
            features[key] = ("int64", [rng.choice(_LABELS + (30000, 0))])
    elif choice < 2 and key in (b"image", b"image/value"):
        if key == b"image/value" or not values or (values[0][:4] != b"\x89PNG" and rng.random() < 0.5):
            size = len(values[0]) if values else 0
            features[key] = ("bytes", [bytes(rng.choice([size - 1, size + 1, 0, size * 4, 3 * 30000]))])
        else:
            data, note = _image_payload(rng, pool)
            features[key] = ("bytes", [data])
            return f"{key.decode('utf-8', 'replace')}: {note}"
    elif choice == 2:
        features[key] = rng.choice(
            [(kind, []), (kind, values * 2), ("float", [1.5]), ("bytes", [b"7"]), ("int64", [1])]
        )
    elif choice == 3:
        del features[key]
        return f"{key.decode('utf-8', 'replace')} removed"
    elif choice == 4:
        features[rng.choice([b"\xff\xfekey", key + b"x", b"", b"label/extra"])] = features.pop(key)
        return f"{key.decode('utf-8', 'replace')} renamed"
    else:
        features[key] = ("bytes", [rng.choice([b"\xff\xfe\xfa", b"x" * 100_000, b"train_00001"])])
    return f"{key.decode('utf-8', 'replace')}: {str(features.get(key))[:60]}"


def mutate_example(rng: random.Random, shard: bytes, pool: dict[str, bytes]) -> tuple[bytes, str]:
    """Records that parse as TFRecords (CRCs right) but whose Example says something else: labels
    2^62, -1, 99; images that are bombs, 0x0, another size, or lie in their header; declared shapes
    of 30000 x 30000; keys missing, renamed or of another kind; records that are not Examples."""
    records = records_of(shard)
    notes = []
    for _ in range(rng.choice([1, 1, 2])):
        i = rng.randrange(len(records))
        if rng.random() < 0.1:
            records[i] = rng.choice(
                [rng.randbytes(40), b"", b"\x0a\x05\x0a\x03\xff\xfe\xfd", b"\x0a\xff\xff\xff\xff\x0f"]
            )
            notes.append(f"record {i} is not an Example")
            continue
        try:
            features = parse_example(records[i])
        except (ValueError, IndexError, KeyError, StopIteration, struct.error):
            features = {}  # replaced by a non-Example in an earlier round
        if not features:
            continue
        key = rng.choice(sorted(features))
        notes.append(f"record {i} {_mutate_feature(rng, features, key, pool)}")
        records[i] = example(features)
    return b"".join(frame(r) for r in records), "; ".join(notes)


# ---------------------------------------------------------------------------
# Image files and TFLite flatbuffers
# ---------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[list]:
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append([data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]])
        pos += 12 + length
    return chunks


def _png_from(chunks: list[list], fix_crc: bool = True) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) if fix_crc else 0
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
    return out


def mutate_png(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Header fields (size, depth, colour type, interlace) with the CRC made right, so the lie is
    believed; chunks dropped, repeated or cut; the compressed data damaged."""
    chunks = _png_chunks(data)
    choice = rng.randrange(6)
    if choice < 2 and chunks and chunks[0][0] == b"IHDR":
        ihdr = bytearray(chunks[0][1])
        field = rng.choice(["width", "height", "both", "depth", "colour", "interlace"])
        size = rng.choice([0, 1, 31, 30000, 65535, 100000, 2**31 - 1, 2**32 - 1, 10001])
        if field in ("width", "both"):
            ihdr[0:4] = struct.pack(">I", size)
        if field in ("height", "both"):
            ihdr[4:8] = struct.pack(">I", size)
        if field in ("depth", "colour", "interlace"):
            ihdr[{"depth": 8, "colour": 9, "interlace": 12}[field]] = rng.choice([0, 1, 2, 3, 4, 6, 7, 16, 255])
        chunks[0][1] = bytes(ihdr)
        return _png_from(chunks, rng.random() < 0.9), f"IHDR {field} -> {size}"
    if choice == 2 and chunks:
        i = rng.randrange(len(chunks))
        how = rng.choice(["dropped", "repeated"])
        chunks[i : i + 1] = [] if how == "dropped" else [chunks[i], list(chunks[i])]
        return _png_from(chunks), f"chunk {i} {how}"
    if choice == 3:
        for chunk in chunks:
            if chunk[0] == b"IDAT" and chunk[1]:
                body, note = mutate_binary(rng, chunk[1], [])
                chunk[1] = body
                return _png_from(chunks), f"IDAT {note}, CRC made right"
    if choice == 4:
        return mutate_binary(rng, data, list(range(min(len(data), 64))))
    cut = rng.randrange(len(data))
    return data[:cut], f"cut at {cut}"


def mutate_jpeg(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """The frame header (size, components), markers dropped, the file cut short."""
    sof = next((i for i in range(len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2)), None)
    choice = rng.randrange(4)
    if choice < 2 and sof is not None:
        buf = bytearray(data)
        field = rng.choice(["height", "width", "components", "precision"])
        value = rng.choice([0, 1, 30000, 65535, 3, 4, 255])
        at = {"precision": sof + 4, "height": sof + 5, "width": sof + 7, "components": sof + 9}[field]
        if field in ("height", "width"):
            buf[at : at + 2] = struct.pack(">H", value)
        else:
            buf[at] = value % 256
        return bytes(buf), f"SOF {field} -> {value}"
    if choice == 2:
        return mutate_binary(rng, data, list(range(min(len(data), 700))))
    cut = rng.randrange(len(data))
    return data[:cut], f"cut at {cut}"


def tflite_structure(data: bytes) -> list[int]:
    """Offsets of a TFLite flatbuffer outside its weight buffers: the tables, vectors and strings
    the interpreter follows (mutating weights teaches nothing)."""
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:
        return []
    import flatbuffers

    model = schema.Model.GetRootAs(data, 0)
    weights = []
    for i in range(model.BuffersLength()):
        table = model.Buffers(i)._tab
        o = flatbuffers.number_types.UOffsetTFlags.py_type(table.Offset(4))
        if o:
            start = table.Vector(o)
            if table.VectorLen(o) > 256:
                weights.append((start + 64, start + table.VectorLen(o) - 64))

    def inside(pos: int) -> bool:
        return any(a <= pos < b for a, b in weights)

    return [pos for pos in range(0, len(data), 4) if not inside(pos)]
