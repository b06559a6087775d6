"""Reading tar archives in place: members are streamed into memory, never extracted to disk.

Extraction is where tar files hurt people: absolute names, ``..`` components, links and device
nodes can write or point anywhere. cifarkit never extracts, and still refuses such members
outright, because a CIFAR archive never contains one. Only the members a reader asks for are kept
(the others are skipped as they stream past, never buffered), each with a size cap and all of them
together with the cap of the largest real CIFAR source. The compressed stream is read to its end,
so gzip, bz2 and xz check their CRC and length, and the file's md5 is computed from the same
single read.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..constants import MAX_DATASET_BYTES, MAX_MEMBER_BYTES
from ..errors import SourceError, UnsafeInputError
from .spill import SpilledBytes, byte_count, read_member

_READ_SIZE = 1 << 20


class _HashingReader:
    """A file wrapper that hashes every byte the tar reader pulls through it."""

    def __init__(self, raw: BinaryIO, enabled: bool = True):
        self.raw = raw
        self.md5 = hashlib.md5() if enabled else None

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.md5 is not None:
            self.md5.update(data)
        return data

    def __enter__(self) -> _HashingReader:  # used as the stream itself for a plain tar
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def drain(self) -> str | None:
        if self.md5 is None:
            return None
        while self.read(_READ_SIZE):
            pass
        return self.md5.hexdigest()


@dataclass
class ArchiveContents:
    files: dict[str, bytes | SpilledBytes]  # path inside the archive -> bytes (spill.as_bytes), regular files only
    md5: str | None  # of the whole archive file; None when not asked for


def check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse any member that could escape or is not plain data."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]):
        raise UnsafeInputError(f"{archive}: refused member '{name}': absolute path")
    if ".." in parts or ".." in name.replace("\\", "/").split("/"):
        raise UnsafeInputError(f"{archive}: refused member '{name}': '..' in path")
    if member.issym() or member.islnk():
        raise UnsafeInputError(f"{archive}: refused member '{name}': link to '{member.linkname}'")
    if not (member.isfile() or member.isdir()):
        raise UnsafeInputError(f"{archive}: refused member '{name}': not a regular file (device, fifo or other)")
    if member.size > MAX_MEMBER_BYTES:
        raise UnsafeInputError(
            f"{archive}: refused member '{name}': {member.size} bytes is more than the "
            f"{MAX_MEMBER_BYTES // 2**20} MiB cap for a CIFAR file"
        )


# Leading bytes of each compression a CIFAR archive may use, and the reader that checks its CRC.
_COMPRESSIONS: list[tuple[bytes, Callable[[BinaryIO], BinaryIO]]] = [
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", lambda raw: bz2.BZ2File(raw)),
    (b"\xfd7zXZ\x00", lambda raw: lzma.LZMAFile(raw)),
]


def _decompressed(raw: BinaryIO, head: bytes) -> BinaryIO:
    for magic, opener in _COMPRESSIONS:
        if head.startswith(magic):
            return opener(raw)
    return raw  # a plain tar


def _drain(stream: BinaryIO) -> None:
    # Reading to the end is what makes gzip/bz2/xz compare their CRC and length with the data.
    while stream.read(_READ_SIZE):
        pass


def _read_members(tar: tarfile.TarFile, path: Path, keep: Callable[[str], bool]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = seen = 0
    for member in tar:
        check_member(member, path)
        seen += member.isfile()
        if member.isdir() or not keep(member.name):
            continue  # the stream skips its bytes block by block
        if member.name in files:
            raise SourceError(f"{path}: member '{member.name}' appears twice; cannot tell which is the dataset")
        total += member.size
        if total > MAX_DATASET_BYTES:
            raise UnsafeInputError(
                f"{path}: refused: its dataset files hold more than {MAX_DATASET_BYTES // 10**6} MB, "
                "more than any CIFAR dataset"
            )
        handle = tar.extractfile(member)
        data = read_member(handle, member.size) if handle else b""  # a temporary file under spill.arrays_on_disk
        if byte_count(data) != member.size:
            raise SourceError(f"{path}: member '{member.name}' is truncated")
        files[member.name] = data
    if not seen:
        raise SourceError(f"{path}: the archive holds no files")
    return files


def read_archive(path: Path, *, md5: bool = True, keep: Callable[[str], bool] = lambda name: True) -> ArchiveContents:
    """Stream a (compressed) tar, checking every member and keeping those ``keep`` accepts.

    ``md5=False`` skips hashing (about 0.3 s for CIFAR-10) when nobody will look at the sum."""
    try:
        with open(path, "rb") as raw:
            reader = _HashingReader(raw, enabled=md5)
            # "r|": a forward-only stream, so the file is read (and decompressed) exactly once.
            with _decompressed(reader, raw.peek(8)[:8]) as stream:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    files = _read_members(tar, path, keep)
                _drain(stream)
            md5 = reader.drain()
    except (tarfile.TarError, EOFError, zlib.error, OSError, lzma.LZMAError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise SourceError(f"{path}: no such file") from None
        detail = str(exc) or type(exc).__name__
        raise SourceError(f"{path}: corrupt or truncated archive ({detail})") from None
    return ArchiveContents(files, md5)
