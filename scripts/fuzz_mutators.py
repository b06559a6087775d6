"""Mutators of scripts/fuzz_sources.py for bytes and pickles and for the text formats: JSON, CSV,
lines of names (fuzz_records.py has those of TFRecords, images and TFLite models).

Each mutator takes a ``random.Random`` and the seed's bytes and returns new bytes and a few words
saying what it did (kept beside a saved finding). A value meant to lead out of a folder holds the
token ``@CASE@``; the fuzzer writes the case's own sandbox in its place, so an absolute path
still points at a sentinel it watches, never at a file of the machine.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import pickletools
import random

CASE = "@CASE@"  # replaced by the case's sandbox folder when the case is written

# ---------------------------------------------------------------------------
# Bytes and pickles (the CIFAR batch, archive and IDX targets)
# ---------------------------------------------------------------------------

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 3072, 10000]
OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]
GLOBALS = [
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytes"),
    ("builtins", "getattr"),
    ("os", "system"),
]
ARGS = [
    b"K\x00",
    b"K\x01",
    b"J\xff\xff\xff\xff",
    b"N",
    b"\x88",
    b"X\x02\x00\x00\x00u1",
    b"X\x02\x00\x00\x00V8",
    b"X\x02\x00\x00\x00O8",
    b"X\x01\x00\x00\x00C",
    b"C\x08AAAAAAAA",
    b"(K\x00t",
    b"(K\x02M\x00\x0ct",
    b"}",
    b"]",
    b"\x8a\x09" + b"\xff" * 8 + b"\x00",
]


def opcode_offsets(data: bytes) -> list[int]:
    """Offsets of a pickle's opcodes whose argument is short: mutating pixel payloads teaches nothing."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001 - not a pickle (a .bin or a names file)
        return []
    return [pos for op, arg, pos in ops if not (isinstance(arg, (bytes, str)) and len(arg) > 64)]


def _position(rng: random.Random, data: bytes, structure: list[int]) -> int:
    if structure and rng.random() < 0.8:
        return rng.choice(structure)
    return rng.randrange(len(data) + 1)


def _global_call(rng: random.Random) -> bytes:
    module, name = rng.choice(GLOBALS)
    args = b"".join(rng.choice(ARGS) for _ in range(rng.randrange(5)))
    return f"c{module}\n{name}\n".encode() + b"(" + args + b"t" + rng.choice([b"R", b"R", b"b", b""])


def _integer(rng: random.Random) -> bytes:
    value = rng.choice(INTERESTING)
    width = rng.choice([1, 2, 4, 8])
    return (value % 256**width).to_bytes(width, "little")


def mutate_bytes(rng: random.Random, data: bytes, structure: list[int], pool: list[bytes]) -> bytes:
    """One mutation of ``data``; ``structure`` are offsets worth hitting, ``pool`` splice donors."""
    buf = bytearray(data)
    pos = _position(rng, data, structure)
    choice = rng.randrange(10)
    if choice == 0 and buf:
        buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
    elif choice == 1:
        buf[pos : pos + 1] = rng.choice(OPCODES)
    elif choice == 2:
        buf[pos:pos] = rng.choice(OPCODES) + bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
    elif choice == 3:
        value = _integer(rng)
        buf[pos + 1 : pos + 1 + len(value)] = value
    elif choice == 4:
        del buf[pos : pos + rng.randrange(1, 64)]
    elif choice == 5:
        buf[pos:pos] = _global_call(rng)
    elif choice == 6:  # a run of one opcode span, repeated: allocation bombs in miniature
        span = bytes(buf[pos : pos + rng.randrange(1, 8)])
        buf[pos:pos] = span * rng.choice([10, 1000, 20000])
    elif choice == 7 and pool:
        donor = rng.choice(pool)
        start = rng.randrange(len(donor))
        buf[pos:pos] = donor[start : start + rng.randrange(1, 256)]
    elif choice == 8:
        del buf[pos:]
    else:
        buf[pos : pos + 1] = bytes([rng.randrange(256)])
    return bytes(buf)


def mutate_binary(rng: random.Random, data: bytes, structure: list[int]) -> tuple[bytes, str]:
    """Bytes of a binary format (no pickle opcodes): flips, integers over 4-byte fields (offsets
    and sizes in a flatbuffer or a header), deletions, insertions, truncation."""
    buf = bytearray(data)
    pos = _position(rng, data, structure)
    choice = rng.randrange(7)
    if choice == 0 and buf:
        buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        return bytes(buf), f"bit flip at {pos}"
    if choice in (1, 2):
        at = pos - pos % 4
        value = rng.choice(INTERESTING + [len(data), len(data) - at, at])
        buf[at : at + 4] = (value % 2**32).to_bytes(4, "little")
        return bytes(buf), f"u32 {value} at {at}"
    if choice == 3:
        size = rng.randrange(1, 64)
        del buf[pos : pos + size]
        return bytes(buf), f"{size} bytes deleted at {pos}"
    if choice == 4:
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        return bytes(buf), f"bytes inserted at {pos}"
    if choice == 5:
        return bytes(buf[:pos]), f"cut at {pos}"
    buf[pos : pos + 1] = bytes([rng.randrange(256)])
    return bytes(buf), f"byte set at {pos}"


def text_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Byte-level damage to a text file: not UTF-8, a NUL, a BOM, cut short, a flipped bit."""
    pos = rng.randrange(len(data) + 1)
    choice = rng.randrange(6)
    if choice == 0:
        return data[:pos] + b"\xff\xfe\xc3" + data[pos:], f"invalid UTF-8 at {pos}"
    if choice == 1:
        return data[:pos] + b"\0" + data[pos:], f"NUL at {pos}"
    if choice == 2:
        return b"\xef\xbb\xbf" + data, "UTF-8 byte order mark"
    if choice == 3:
        return data[:pos], f"cut at {pos}"
    if choice == 4 and data:
        at = min(pos, len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :], f"bit flip at {at}"
    return data.replace(b"\n", b"\r\n"), "CRLF line ends"


# ---------------------------------------------------------------------------
# Values an attacker puts into metadata
# ---------------------------------------------------------------------------

# Names that must never become a path as they are: leading out, absolute, separators, control
# characters, names two file systems see as one, cifarkit's own staging names, too long, a lone
# surrogate (not encodable as a file name).
ATTACK_NAMES = (
    "../victim",
    "../../victim",
    "../../../victim",
    f"{CASE}/victim",
    f"{CASE}/victim/keep.txt",
    "/",
    "",
    ".",
    "..",
    "a/b",
    "a\\b",
    "C:victim",
    "x\0y",
    "two\nlines",
    " ",
    "\t",
    "cat ",
    "CAT",
    "e\u0301",
    "\u00e9",
    ".partial-train",
    "x" * 300,
    "\u202etxt",
    "\udc80",
    "train",
    "test",
)
# Numbers written as strings (TFDS's int64 fields: shardLengths, numClasses, dimensions).
DIGIT_STRINGS = (
    "0",
    "-1",
    "1",
    "99",
    "30000",
    "100000",
    "999999999999",
    str(2**62),
    str(2**64),
    "9" * 5000,
    "1e3",
    " 6",
    "6.0",
    "0x10",
    "",
)
NUMBERS = (
    0,
    -1,
    1,
    2,
    99,
    255,
    256,
    30000,
    2**31,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63),
    10**12,
    1e308,
    -1e308,
    0.5,
    float("nan"),
    float("inf"),
)
OTHER_TYPES = (None, True, False, 0, -1, 3.5, "", "x", "3", [], {}, [0], ["x"], {"a": 1})
WORDS = (
    "png",
    "jpeg",
    "raw",
    "bytes",
    "none",
    "auto",
    "uint8",
    "int64",
    "float32",
    "string",
    "tfrecord",
    "jpg",
    "arrayrecord",
    "tensorflow_datasets.core.features.tensor_feature.Tensor",
)
BIG_INT = "@BIGINT@"  # a 5,000-digit integer literal (json.dumps refuses to write one)
DEEP = "@DEEP@"  # arrays nested 100,000 deep


def _attack_string(rng: random.Random, old: str) -> str:
    if old.strip().lstrip("-").isdigit() and rng.random() < 0.7:
        return rng.choice(DIGIT_STRINGS)
    pick = rng.random()
    if pick < 0.6:
        return rng.choice(ATTACK_NAMES)
    if pick < 0.8:
        return rng.choice(WORDS)
    return old * (rng.choice([2, 1000]) if len(old) < 1000 else 2)  # long, never hundreds of MB


# ---------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------


def _pick(rng: random.Random, pool: tuple):
    """A value from ``pool``, copied: a list put into one document is never another's."""
    return copy.deepcopy(rng.choice(pool))


def _nodes(value, out: list) -> list:
    """Every (container, key) pair below ``value``, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.append((value, key))
        _nodes(child, out)
    return out


def _mutate_node(rng: random.Random, container, key) -> str:
    old = container[key]
    choice = rng.randrange(9)
    if choice == 0:
        container[key] = _pick(rng, OTHER_TYPES)
    elif choice in (1, 2):
        if isinstance(old, str):
            container[key] = _attack_string(rng, old)
        else:
            container[key] = rng.choice(NUMBERS)
    elif choice == 3:
        container[key] = rng.choice([BIG_INT, "9" * 5000, "x" * 200_000])
    elif choice == 4:
        container[key] = DEEP
    elif choice == 5:
        del container[key]
        return f"{key!r} removed"
    elif choice == 6 and isinstance(old, list):
        copies = rng.choice([2, 10_000])  # a list a few MB long at most, however often it is picked
        grown = (old or ["x"]) * (copies if len(json.dumps(old, default=str)) * copies < 4_000_000 else 2)
        # Copies, not references: a later 200 KB string put into one shared entry would otherwise
        # appear 10,000 times in the file (gigabytes: a MemoryError of the fuzzer's own).
        container[key] = json.loads(json.dumps(grown, default=str))
    elif choice == 6 and isinstance(old, dict):
        old[rng.choice(["name", "splits", "x", "format", "features", "count"])] = _pick(rng, OTHER_TYPES)
    elif choice == 7 and isinstance(old, (int, float)) and not isinstance(old, bool):
        container[key] = rng.choice([old + 1, old - 1, -old, old * 1000, 0])
    elif choice == 8 and isinstance(old, list) and old:
        old.append(old[rng.randrange(len(old))])  # a repeated entry: a split, a shard, a class twice
    else:
        container[key] = _pick(rng, OTHER_TYPES + NUMBERS)
    return f"{key!r}: {_short(container[key])}"


def _short(value) -> str:
    if isinstance(value, (list, dict)):
        return f"<{type(value).__name__} of {len(value)}>"
    return repr(value)[:60]


def mutate_json(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Structure-aware: values of another type, huge numbers, 5,000-digit numbers and strings,
    deep nesting, names that lead out, repeated entries; then, sometimes, damaged bytes."""
    try:
        doc = json.loads(data)
    except ValueError:
        return text_bytes(rng, data)
    notes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        nodes = _nodes(doc, [])
        if not nodes or rng.random() < 0.03:
            doc = [doc] if nodes and rng.random() < 0.3 else _pick(rng, OTHER_TYPES)
            notes.append("top level replaced")
            continue
        container, key = rng.choice(nodes)
        notes.append(_mutate_node(rng, container, key))
    text = json.dumps(doc, indent=rng.choice([None, 1, 2]), ensure_ascii=rng.random() < 0.5, allow_nan=True)
    # One deep value per file: a document copied into itself can hold the marker thousands of times.
    text = text.replace(f'"{BIG_INT}"', "9" * 5000).replace(f'"{DEEP}"', "[" * 100_000 + "]" * 100_000, 1)
    text = text.replace(f'"{DEEP}"', "[]")
    out = text.encode("utf-8", "surrogatepass")  # a lone surrogate stays: not UTF-8
    if rng.random() < 0.15:
        out, note = text_bytes(rng, out)
        notes.append(note)
    return out, "; ".join(notes)


# ---------------------------------------------------------------------------
# CSV (an export's manifest.csv) and lines of names (labels.txt, label.labels.txt)
# ---------------------------------------------------------------------------

_CELL_ATTACKS = {
    "label": ("99", "-1", "10", "100", str(2**63), "x", "", "1.5", "9" * 5000, " 3", "0x1"),
    "coarse_label": ("20", "-1", "99", "x", ""),
    "index": ("-1", "999999999999", "9" * 5000, "0", "x", ""),
    "path": (
        "../../victim/keep.txt",
        f"{CASE}/victim/keep.txt",
        "train/../../../victim/keep.txt",
        "",
        "train",
        "missing.png",
        "C:/x.png",
        "train\\..\\..\\x.png",
    ),
}


def mutate_csv(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Long fields, wrong columns, out-of-range labels and indices, paths and splits that lead
    out, rows dropped or repeated; then, sometimes, damaged bytes."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"))))
    if len(rows) < 2:
        return text_bytes(rng, data)
    header, body = rows[0], rows[1:]
    choice = rng.randrange(9)
    row = rng.choice(body)
    column = rng.randrange(len(header))
    name = header[column] if column < len(row) else "?"
    if choice == 0:
        row[column] = "x" * 200_000
        note = f"200 KB {name} field"
    elif choice in (1, 2):
        row[column] = rng.choice(_CELL_ATTACKS.get(name, ATTACK_NAMES))
        note = f"{name}: {row[column][:40]!r}"
    elif choice == 3:
        if rng.random() < 0.5:
            row.append("extra")
        else:
            del row[rng.randrange(len(row))]
        note = "a row with the wrong number of columns"
    elif choice == 4:
        if rng.random() < 0.5:
            del header[column]
        else:
            header[column] = rng.choice(["", "Label", "x", header[(column + 1) % len(header)]])
        note = f"header column {name!r} removed or renamed"
    elif choice == 5:
        note = rng.choice(["a row removed", "a row repeated", "rows repeated 10,000 times", "header only"])
        if note == "a row removed":
            body.remove(row)
        elif note == "a row repeated":
            body.append(list(row))
        elif note == "header only":
            body = []
        else:
            body = body * 10_000
    elif choice == 6:
        other = rng.choice(body)
        row[column], other[column] = other[column], row[column]
        note = f"{name} cells swapped"
    elif choice == 7:
        row[header.index("split") if "split" in header else column] = rng.choice(ATTACK_NAMES)
        note = "split name that leads out"
    else:
        return text_bytes(rng, data)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header] + body)
    return out.getvalue().encode("utf-8", "surrogatepass"), note


def mutate_lines(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A file of names, one a line: names missing or extra, repeated, colliding once made safe,
    leading out, very long, or 10 MB of them; then, sometimes, damaged bytes."""
    lines = data.decode("utf-8", "replace").splitlines()
    choice = rng.randrange(8)
    at = rng.randrange(len(lines) + 1)
    if choice == 0 and lines:
        del lines[min(at, len(lines) - 1) :]
        note = f"cut to {len(lines)} names"
    elif choice == 1:
        lines.insert(at, rng.choice(ATTACK_NAMES))
        note = f"name inserted: {lines[at][:40]!r}"
    elif choice == 2 and lines:
        lines[min(at, len(lines) - 1)] = rng.choice(ATTACK_NAMES)
        note = "a name replaced by one that cannot be a folder"
    elif choice == 3 and lines:
        first = lines[0]
        lines.insert(at, rng.choice([first, first + " ", first.upper(), " " + first]))
        note = "a name repeated, or equal once trimmed or case-folded"
    elif choice == 4:
        lines = lines + [f"n{i:07d}" for i in range(rng.choice([1000, 1_200_000]))]
        note = f"{len(lines)} names"
    elif choice == 5:
        lines = [] if rng.random() < 0.5 else [""] * 5
        note = "no names"
    elif choice == 6 and lines:
        lines[min(at, len(lines) - 1)] *= 1000
        note = "a very long name"
    else:
        out, note = text_bytes(rng, data)
        return out, note
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), note
