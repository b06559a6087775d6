"""A small, fast PNG encoder for 8-bit RGB images.

For a 32x32 image Pillow spends about twice as long in Python-level set-up as zlib spends
compressing, and a CIFAR export encodes 60,000 of them. A PNG is a signature and three chunks
(IHDR, IDAT, IEND), each length + type + data + CRC-32; the rows are stored with the "Up" filter
(each byte minus the byte above it, modulo 256), which numpy computes for a whole batch of images
at once and which compresses photographs nearly as well as per-row adaptive filtering.

The deflate stream comes from the standard library's zlib at level 1. Not ISA-L (``isal``),
although it is about 3x faster: at its levels 1 and 2 a fresh process now and then writes a
different (equally valid) stream for the same image, about 1 image in 50,000 of real CIFAR-10,
a few bytes longer or shorter, while one process always repeats itself; so a re-run export would
not end byte-identical. zlib's output depends only on the input, the level and zlib's version
(recorded in every export's state). Level 1 is zlib's fastest and, for CIFAR's noisy 32x32
photographs, smaller than ISA-L's (2,432 bytes an image on average against 2,493; level 6:
2,420; raw rows: 3,104). Every PNG decoder reads it; the tests decode them with imageio and
TensorFlow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np

_LEVEL = 1  # zlib's fastest; CIFAR images barely compress at any level (see above)

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_UP = 2  # PNG filter type 2: Up
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
_IDAT_CRC = zlib.crc32(b"IDAT")

# Recorded in an export's state: another zlib version may write other (valid) bytes, and a
# resumed export must not mix the two.
COMPRESSOR = f"zlib {zlib.ZLIB_RUNTIME_VERSION} level {_LEVEL}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _head(height: int, width: int, channels: int = 3) -> bytes:
    """Signature and IHDR: 8-bit samples, colour type 2 (RGB) or 0 (grey, MNIST), no interlace."""
    return _SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0))


def _up_filtered(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, 1 + 3W) PNG scanlines, each prefixed with filter type Up."""
    n, height, width, channels = images.shape
    flat = images.reshape(n, height, width * channels)
    rows = np.empty((n, height, 1 + width * channels), dtype=np.uint8)
    rows[:, :, 0] = _FILTER_UP
    rows[:, 0, 1:] = flat[:, 0]  # the row above the first row counts as zeros
    np.subtract(flat[:, 1:], flat[:, :-1], out=rows[:, 1:, 1:])  # uint8 arithmetic wraps modulo 256
    return rows


def encode_pngs(images: np.ndarray) -> Iterator[bytes]:
    """Encode an (N, H, W, 3) uint8 batch as lossless PNGs, one bytes object per image."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected (N, H, W, 3) or (N, H, W, 1) uint8 images, got shape {images.shape}")
    head = _head(images.shape[1], images.shape[2], images.shape[3])
    pack, crc32, compress = struct.Struct(">I").pack, zlib.crc32, zlib.compress
    for rows in _up_filtered(images):
        data = compress(rows.tobytes(), _LEVEL)
        yield head + pack(len(data)) + b"IDAT" + data + pack(crc32(data, _IDAT_CRC)) + _IEND


def encode_png(image: np.ndarray) -> bytes:
    """Encode one (H, W, 3) uint8 image as a lossless PNG."""
    return next(encode_pngs(np.asarray(image)[None]))


# IHDR's colour types and the bit depths each allows (the PNG specification, table 11.1)
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def structure_problem(data: bytes) -> str | None:
    """What libpng (TensorFlow's PNG decoder) refuses before the pixels that Pillow's ``verify``
    lets through: a header field out of range, IHDR not first or twice, no IDAT, nothing after
    IEND. Chunk CRCs and the compressed data are checked by Pillow."""
    at, seen = 8, []
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"IHDR" and (seen or length != 13):
            return "a second or misplaced IHDR chunk" if seen else "an IHDR chunk of the wrong length"
        if kind == b"IHDR":
            depth, colour, compression, filtering, interlace = data[at + 16 : at + 21]
            if depth not in _DEPTHS.get(colour, ()) or (compression, filtering) != (0, 0) or interlace > 1:
                return f"an invalid IHDR (bit depth {depth}, colour type {colour}, interlace {interlace})"
        seen.append(kind)
        at += 12 + length
        if kind == b"IEND":
            break
    if not seen or seen[0] != b"IHDR" or b"IDAT" not in seen or seen[-1] != b"IEND":
        return "its chunks are not IHDR first, then IDAT, then IEND last"
    return None
