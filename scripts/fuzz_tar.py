"""Mutations of WebDataset tar shards for scripts/fuzz_sources.py (the ``webdataset`` target).

A shard is taken apart into its members (header fields and data) and put back together with one
thing changed, most often with the header's checksum made right again so that the reader's
deeper checks are reached: a member's name (``../x.png``, an absolute path, a key with two dots,
spaces, 150 characters), its type (a link to a file outside, a device, a folder, pax and GNU
long-name headers), its declared size (10 GB, 2^40 in GNU's base-256, one byte off), its data
(``.cls`` labels that are no number or out of range, ``.json`` through the JSON mutator, images
through the PNG and JPEG mutators or a bomb), or the archive's structure (members dropped,
repeated or swapped, the file cut, garbage after it, header bytes changed at random).
"""

from __future__ import annotations

import io
import random
import tarfile

import fuzz_mutators as mut
import fuzz_records as rec

BLOCK = 512
NAMES = (
    "../x.png",
    "../../victim/keep.txt",
    "/etc/passwd",
    "a/b.png",
    "train_00000.x.png",
    "train 00000.png",
    ".hidden.png",
    "train_00000",
    "x" * 150 + ".png",
    "tr\u0430in_00000.png",  # a Cyrillic a
    "",
)
TYPES = (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE, b"x", b"L", b"Z")
LABELS = (b"", b"-1", b"10", b"100", b"9" * 20, b" 3", b"3\n", b"0x3", b"\xff", b"3.0", b"\xd9\xa3", b"03")
SIZES = (0, 1, 10 << 30, 1 << 40, -1, +1)  # the last two: one byte less or more than the data


def members_of(shard: bytes) -> list[list]:
    """[TarInfo, data] of each member, in order."""
    with tarfile.open(fileobj=io.BytesIO(shard)) as tar:
        return [[m, tar.extractfile(m).read() if m.isfile() else b""] for m in tar.getmembers()]


def build(members: list[list]) -> tuple[bytes, list[int]]:
    """The tar of ``members`` (GNU headers, as any tool might write them) and each header's offset."""
    out, offsets, at = [], [], 0
    for info, data in members:
        info.size = len(data)
        header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        offsets.append(at + len(header) - BLOCK)  # a long name comes as headers before its own
        out += [header, data, bytes(-len(data) % BLOCK)]
        at += len(header) + len(data) + (-len(data) % BLOCK)
    return b"".join(out) + bytes(2 * BLOCK), offsets


def fix_checksum(data: bytearray, at: int) -> None:
    header = data[at : at + BLOCK]
    total = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
    data[at + 148 : at + 156] = b"%06o\0 " % total


def _set_size(data: bytearray, at: int, size: int) -> None:
    if size < 8**11:
        data[at + 124 : at + 136] = b"%011o\0" % size
    else:  # GNU's base-256
        data[at + 124 : at + 136] = b"\x80" + size.to_bytes(11, "big")


def _data_change(rng: random.Random, info, data: bytes, pool: dict[str, bytes]) -> tuple[bytes, str]:
    ext = info.name.split(".", 1)[-1]
    if ext == "cls":
        label = rng.choice(LABELS)
        return label, f"{info.name}: label {label!r}"
    if ext == "json":
        return mut.mutate_json(rng, data)
    if rng.random() < 0.3:
        return rec._image_payload(rng, pool)
    return (rec.mutate_jpeg if ext == "jpg" else rec.mutate_png)(rng, data)


def _structure(rng: random.Random, members: list[list], i: int) -> str:
    kind = rng.choice(["drop", "repeat", "swap", "foreign"])
    if kind == "drop":
        del members[i]
    elif kind == "repeat":
        members.insert(i, [tarfile.TarInfo(members[i][0].name), members[i][1]])
    elif kind == "swap" and len(members) > 1:
        j = rng.randrange(len(members))
        members[i], members[j] = members[j], members[i]
    else:  # a member of another sample's name in this one's place
        members[i][0].name = members[rng.randrange(len(members))][0].name
    return f"member {i}: {kind}"


def mutate_shard(rng: random.Random, shard: bytes, pool: dict[str, bytes]) -> tuple[bytes, str]:
    """One change to a tar shard, and what it was."""
    members = members_of(shard)
    i = rng.randrange(len(members))
    info, data = members[i]
    kind = rng.choice(["name", "type", "size", "data", "data", "data", "structure", "bytes", "cut"])
    note = ""
    if kind == "name":
        info.name = rng.choice(NAMES)
        note = f"member {i} named {info.name!r}"
    elif kind == "type":
        info.type, info.linkname = rng.choice(TYPES), rng.choice(["/etc/passwd", "../../victim/keep.txt", "x.png"])
        note = f"member {i} of type {info.type!r} -> {info.linkname}"
    elif kind == "data":
        members[i][1], note = _data_change(rng, info, data, pool)
    elif kind == "structure":
        note = _structure(rng, members, i)
    tar, offsets = build(members)
    out = bytearray(tar)
    at = offsets[min(i, len(offsets) - 1)] if offsets else 0
    if kind == "size":
        size = rng.choice(SIZES)
        size = len(data) + size if size in (-1, 1) else size
        _set_size(out, at, max(size, 0))
        note = f"member {i} declares {size:,} bytes"
    elif kind == "bytes":
        for _ in range(rng.choice([1, 1, 2, 8])):
            out[at + rng.randrange(BLOCK)] = rng.randrange(256)
        note = f"header {i}: bytes changed"
    if kind in ("size", "bytes") and rng.random() < 0.8:
        fix_checksum(out, at)
        note += ", checksum made right"
    if kind == "cut":
        cut = rng.randrange(len(out))
        garbage = rng.random() < 0.3
        out, note = (out + rng.randbytes(700), "garbage after") if garbage else (out[:cut], f"cut at byte {cut:,}")
    return bytes(out), note
