"""Tar archives written byte for byte the same on every run, and walked without trusting them.

Writing: each member's header is the one Python's tarfile writes (``TarInfo.tobuf``, POSIX ustar)
with every field that would vary between runs fixed (time, owner, mode), so an export written
twice is the same bytes and its members' offsets are known as they are written (a DALI index
needs them); :func:`member_header` makes it from one such header, the name and size replaced.

Reading: :class:`TarWalk` goes from header to header itself, instead of ``tarfile``, so each
member is checked before any of its data is read: the header's checksum, a regular file (never a
link, a device or a folder, which are refused, not skipped), a plain name of one path component,
and a size that fits in what is left of the file (a header that declares 10 GB in a 10 KB file
is refused there, not read). Nothing is ever extracted; a member's bytes are read only when asked
for, so memory holds one member at a time.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import SourceError

BLOCK = 512  # tar's unit: a header, and the padding of each member's data
RECORD = 20 * BLOCK  # an archive ends padded to whole records, as tarfile and GNU tar write it
# 2000-01-01 00:00:00 UTC: the time every member carries (0 makes GNU tar warn of an
# "implausibly old time stamp" on extraction).
FIXED_MTIME = 946_684_800
FIXED_MODE = 0o644


def tarfile_header(name: str, size: int) -> bytes:
    """The ustar header Python's tarfile writes for a regular file ``name`` of ``size`` bytes,
    with every field that could vary between runs fixed."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, FIXED_MTIME, FIXED_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, encoding="ascii", errors="strict")


_PROTOTYPE = tarfile_header("x", 0)
_MAX_USTAR_SIZE = 8**11 - 1  # 11 octal digits


def member_header(name: str, size: int) -> bytes:
    """:func:`tarfile_header`, byte for byte, at a tenth of its cost: tarfile's header of one
    member with the name and size fields replaced and the checksum computed again as tarfile
    does (six octal digits, NUL, space). It is a third of an export's time otherwise."""
    raw = name.encode("ascii")
    if not raw or len(raw) > 100 or size > _MAX_USTAR_SIZE:
        return tarfile_header(name, size)  # tarfile's own refusal, or its other encodings
    header = bytearray(_PROTOTYPE)
    header[0:100] = raw.ljust(100, b"\0")
    header[124:136] = b"%011o\0" % size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def padding(size: int) -> bytes:
    """The zero bytes after ``size`` bytes of data, up to the next block."""
    return bytes(-size % BLOCK)


def archive_end(written: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, after ``written`` bytes of members."""
    end = written + 2 * BLOCK
    return bytes(2 * BLOCK + (-end % RECORD))


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of its data, after the header
    size: int


# Type flags of a regular file: "0", and NUL in old archives. Everything else is refused by name.
_REGULAR = (b"0", b"\0")
_KINDS = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"5": "a folder",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"x": "a pax header",
    b"g": "a pax global header",
    b"L": "a GNU long name",
    b"K": "a GNU long link name",
}
_NAME = re.compile(r"[\x21-\x7e]{1,100}")  # printable ASCII, no spaces: one token of a DALI index


class TarWalk:
    """The members of one tar file, header by header (see the module's notes)."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        try:
            info = os.stat(self.path)
            if not stat.S_ISREG(info.st_mode):
                raise SourceError(f"{self.path}: not a regular file; refused as a tar shard")
            self.handle = open(self.path, "rb")  # noqa: SIM115  (closed by close(), or by the with block)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read it ({exc.strerror or exc})") from None
        self.size = os.fstat(self.handle.fileno()).st_size

    def __enter__(self) -> TarWalk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.handle.close()

    def __iter__(self) -> Iterator[Member]:
        at = 0
        while True:
            header = self._read(at, BLOCK)
            if len(header) < BLOCK:
                if header.strip(b"\0"):
                    raise SourceError(f"{self.path}: ends inside a tar header at byte {at:,} (truncated?)")
                return  # the end blocks missing: every member before was whole
            if not header.strip(b"\0"):
                return  # the end of the archive
            member = self._member(header, at)
            yield member
            at = member.offset + member.size + (-member.size % BLOCK)

    def read(self, member: Member) -> bytes:
        """A member's data (its size was checked against the file's when its header was read)."""
        data = self._read(member.offset, member.size)
        if len(data) != member.size:
            raise SourceError(f"{self.path}: member {member.name!r} is cut short (the file changed while read?)")
        return data

    def _read(self, at: int, size: int) -> bytes:
        try:
            self.handle.seek(at)
            return self.handle.read(size)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read it ({exc.strerror or exc})") from None

    def _member(self, header: bytes, at: int) -> Member:
        where = f"{self.path}: the tar header at byte {at:,}"
        if _checksum(header) != _number(header[148:156], where, "checksum"):
            raise SourceError(f"{where} has a wrong checksum; not a tar archive, or a damaged one")
        raw = header[:100].split(b"\0", 1)[0]
        prefix = header[345:500].split(b"\0", 1)[0] if header[257:263] == b"ustar\0" else b""  # POSIX, not GNU
        name = (prefix + b"/" + raw if prefix else raw).decode("latin-1")
        kind = header[156:157]
        if kind not in _REGULAR:
            what = _KINDS.get(kind, f"of type {kind!r}")
            raise SourceError(f"{where}: member {name!r} is {what}, not a regular file; refused")
        if not _NAME.fullmatch(name) or "/" in name or name.startswith("."):
            raise SourceError(
                f"{where}: member name {name!r} is not a plain file name (one component of printable ASCII); refused"
            )
        size = _number(header[124:136], where, "size")
        offset = at + BLOCK
        if size > self.size - offset:
            raise SourceError(
                f"{where}: member {name!r} declares {size:,} bytes, more than the {self.size - offset:,} "
                "left in the file; refused before reading"
            )
        return Member(name, offset, size)


def _checksum(header: bytes) -> int:
    """The header's bytes summed with its checksum field counted as spaces (POSIX's rule)."""
    return sum(header[:148]) + 8 * 0x20 + sum(header[156:])


def _number(field: bytes, where: str, what: str) -> int:
    """A numeric header field: octal text, or GNU's base-256 for large sizes (a set top bit)."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise SourceError(f"{where}: its {what} is negative; refused")
    text = field.replace(b"\0", b" ").strip()
    if not text or not re.fullmatch(rb"[0-7]+", text):
        raise SourceError(f"{where}: its {what} field is not a number ({field!r}); not a tar archive")
    return int(text, 8)
