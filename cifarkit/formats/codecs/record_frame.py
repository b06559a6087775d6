"""TFRecord framing, written and checked without TensorFlow.

A TFRecord file is a sequence of records, each an 8-byte little-endian length, the masked CRC-32C
of those 8 bytes, the data, and the masked CRC-32C of the data. TensorFlow's reader allocates
whatever a length field claims before it reads the data, so a 16-byte file claiming 2^40 bytes
takes the process down. :func:`count_records` walks a shard's headers first (a seek per record,
bodies unread: about 1 us a record, 50 ms for CIFAR-10's 60,000) and refuses a header whose CRC
is wrong or whose length runs past the end of the file, in one line naming the shard and the
offset; TensorFlow then checks the data CRCs as it reads. The walk is done once per shard per
process (cached by path, size, modification time and inode).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ...errors import SourceError

HEADER = 12  # length (8 bytes) and its masked CRC (4)
FOOTER = 4  # the data's masked CRC
_CRC_MASK_DELTA = 0xA282EAD8  # from TensorFlow's record format: masked = rot15(crc) + delta
_HEAD = struct.Struct("<QI")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    return struct.pack("<I", masked_crc32c(data))


def frame_record(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)


class FramingError(ValueError):
    """A record header that cannot be right; ``offset`` is where its record starts."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"record at byte {offset:,}: {reason}")
        self.offset = offset


def _next_header(head: bytes, offset: int, size: int) -> int:
    """The length of the record whose header ``head`` starts at ``offset`` of a ``size``-byte file."""
    if len(head) < HEADER:
        raise FramingError(offset, f"{size - offset} bytes left, shorter than a record header (truncated?)")
    length, crc = _HEAD.unpack(head)
    if masked_crc32c(head[:8]) != crc:
        raise FramingError(offset, "its length field fails its CRC (not a TFRecord file, or corrupt)")
    if length > size - offset - HEADER - FOOTER:
        raise FramingError(
            offset, f"claims {length:,} bytes, more than the {max(size - offset - 16, 0):,} left in the file"
        )
    return length


def walk(fd: int, size: int, *, stop: int | None = None) -> tuple[int, int]:
    """(records, offset) after checking the headers of the first ``stop`` records (all by default)
    of the open file ``fd``; raises :class:`FramingError`."""
    offset, count = 0, 0
    while offset < size and (stop is None or count < stop):
        length = _next_header(os.pread(fd, HEADER, offset), offset, size)
        offset += HEADER + length + FOOTER
        count += 1
    return count, offset


# (path, size, mtime_ns, inode) -> records: a shard is walked once per process while it is unchanged
_COUNTS: dict[tuple, int] = {}


def count_records(path: str | Path) -> int:
    """The number of records in a TFRecord shard, its framing checked; one line naming the shard
    and the offset of the first bad header."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read TFRecord shard ({exc.strerror or exc})") from None
    try:
        stat = os.fstat(fd)
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key not in _COUNTS:
            _COUNTS[key] = walk(fd, stat.st_size)[0]
        return _COUNTS[key]
    except FramingError as exc:
        raise SourceError(f"{path}: not a valid TFRecord shard: {exc}") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read TFRecord shard ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


_BLOCK = 4 << 20  # bytes read at a time when every record is wanted


def records_of(path: str | Path):
    """(offset, data) of each record of a shard, in order, its header checked (raises
    :class:`FramingError`; TensorFlow checks the data's CRC as it reads). ``data`` is a view
    into a block of the file, valid until the next record is asked for; a few MB in memory."""
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        block, start, offset = b"", 0, 0  # block holds the file's bytes from offset - start
        while offset < size:
            if len(block) - start < HEADER:
                block, start = block[start:] + handle.read(_BLOCK), 0
            length = _next_header(block[start : start + HEADER], offset, size)
            end = start + HEADER + length + FOOTER
            if end > len(block):
                block, start = block[start:] + handle.read(max(_BLOCK, end - len(block))), 0
                end = HEADER + length + FOOTER
            yield offset, memoryview(block)[start + HEADER : end - FOOTER]
            start, offset = end, offset + HEADER + length + FOOTER


def read_record(path: str | Path, index: int) -> tuple[int, bytes]:
    """(offset, data) of record ``index`` of a shard, its data CRC checked; for explaining a
    record that failed (the normal path never reads bodies here)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        _, offset = walk(handle.fileno(), size, stop=index)
        length = _next_header(os.pread(handle.fileno(), HEADER, offset), offset, size)
        data = os.pread(handle.fileno(), length + FOOTER, offset + HEADER)
    if masked_crc32c(data[:length]) != struct.unpack("<I", data[length:])[0]:
        raise FramingError(offset, "its data fails its CRC (corrupt)")
    return offset, data[:length]


def first_bad_record(path: str | Path) -> int | None:
    """The byte offset of the first record in a shard whose framing or CRCs are wrong, or None
    when every record checks out. For naming the shard after TensorFlow reports a corrupt
    record (it gives only the offset)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            offset = 0
            while offset < size:
                length = _next_header(os.pread(handle.fileno(), HEADER, offset), offset, size)
                data = os.pread(handle.fileno(), length + FOOTER, offset + HEADER)
                if masked_crc32c(data[:length]) != struct.unpack("<I", data[length:])[0]:
                    return offset
                offset += HEADER + length + FOOTER
    except FramingError as exc:
        return exc.offset
    except OSError:
        return 0
    return None
