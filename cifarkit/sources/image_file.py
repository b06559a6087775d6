"""One image file of any format Pillow reads, decoded to (H, W, 3) uint8, or refused by name.

Shared by the folder-tree source, the lazily decoded images of :mod:`.labelled` and prediction;
a module of its own so that those two sources need not import each other.
"""

from __future__ import annotations

import io
import os
import re
import struct
from pathlib import Path

import numpy as np

from ..errors import SourceError

# Pixels an image header may claim, whatever the file: 100 megapixels (a 10000 x 10000 photo,
# 300 MB decoded as RGB) is far beyond any dataset image.
MAX_PIXELS = 100_000_000
# Below this, an image is decoded whatever its size on disk: 4096 x 4096 (48 MB as RGB).
FLOOR_PIXELS = 4096 * 4096
# Above the floor, pixels an image may claim per byte of its file. Photographs take 1-6 bits a
# pixel as JPEG at the usual qualities (1.3-8 pixels a byte) and 8-24 as PNG (under one pixel a
# byte); a decompression bomb reaches 300-1,000 (a PNG of zeros: a 20000 x 20000 image in
# 400 KB). 64 leaves an honest image 8 times room and holds what a file of a few MB decodes to
# at a few hundred MB (a 300 KB PNG of 9900 x 9900, 294 MB as RGB, is refused).
PIXELS_PER_BYTE = 64
# What all the images of one split of records may decode to together, per byte of its shards:
# CIFAR's PNGs take 0.4 pixels a byte, photos as JPEG 1.3-8, so 16 refuses only bombs, and holds a
# few MB of shards to a few hundred MB of pixels. No cap: an honest photo export may hold billions.
SPLIT_PIXELS_PER_BYTE = 16
# Pillow modes of 16 or 32 bits per grey pixel; scaled to 8 bits by keeping the high byte.
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pixel_budget(file_bytes: int) -> int:
    """The pixels an image of ``file_bytes`` encoded bytes may decode to."""
    return min(MAX_PIXELS, max(FLOOR_PIXELS, PIXELS_PER_BYTE * max(file_bytes, 0)))


def split_pixel_budget(shard_bytes: int) -> int:
    """The pixels a split's images may decode to together, from its shards' bytes."""
    return max(FLOOR_PIXELS, SPLIT_PIXELS_PER_BYTE * max(shard_bytes, 0))


def size_refusal(width: int, height: int, file_bytes: int) -> str | None:
    """Why a ``width`` x ``height`` image in ``file_bytes`` bytes is not decoded, or None."""
    if width < 1 or height < 1:
        return f"its header gives {width} x {height} pixels, an image with no pixels"
    if width * height <= pixel_budget(file_bytes):
        return None
    limit = (
        f"the limit is {MAX_PIXELS // 1_000_000} megapixels"
        if width * height > MAX_PIXELS
        else f"{PIXELS_PER_BYTE} pixels per byte of its {file_bytes:,}-byte file above "
        f"{FLOOR_PIXELS / 1e6:.1f} megapixels"
    )
    return (
        f"image larger than cifarkit reads ({width} x {height} pixels; {limit}), refused before decoding: "
        "a decompression bomb?"
    )


def read_image(path: Path, data: bytes | None = None) -> np.ndarray:
    """Decode any image Pillow reads into (H, W, 3) uint8, the first frame of an animation.

    Grey is repeated, alpha dropped, palettes looked up, CMYK and YCCK JPEGs (Adobe's inverted
    CMYK included) converted to RGB; a header claiming more than :func:`pixel_budget` allows for
    the file's size is refused before anything is decoded. ``data``: the encoded bytes, when they
    are not the file at ``path`` (a record's image; ``path`` then names it in messages).
    """
    return _decode(path, data, None)[0]


def read_image_scaled(path: Path, pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(image, the file's (height, width)) as :func:`read_image`, but an image of more than 4 x
    ``pixels`` pixels comes scaled down to no fewer than ``pixels``: a JPEG at 1/2, 1/4 or 1/8
    scale as libjpeg decodes it, other formats reduced by a whole factor (:func:`_scaled_down`).
    For prediction, which needs a small square."""
    return _decode(path, None, pixels)


def _decode(path: Path, data: bytes | None, draft: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    import warnings

    from PIL import Image

    try:
        size = len(data) if data is not None else os.stat(path).st_size
        head = data[:24] if data is not None else _head(path)
        if head[:8] == _PNG_SIGNATURE and len(head) == 24:  # Pillow refuses a 0 x 0 PNG without saying why
            _check_pixels(path, struct.unpack(">II", head[16:24]), size)
        with warnings.catch_warnings():  # Pillow warns of big or odd files; our own checks speak
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data) if data is not None else path) as image:
                width, height = image.size
                _check_pixels(path, image.size, size)
                if draft and width * height > 4 * draft:
                    image = _scaled_down(image, draft)
                return _to_rgb(path, image), (height, width)
    except SourceError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice its default limit
        raise SourceError(f"{path}: image larger than cifarkit reads ({str(exc).split(',')[0]})") from None
    except Exception as exc:  # Pillow raises many kinds for a crafted file; all mean "not readable"
        reason = re.sub(r"<_io\.BytesIO object at \w+>", "its bytes", (str(exc).strip().splitlines() or [""])[0])
        raise SourceError(f"{path}: cannot decode image ({type(exc).__name__}: {reason})") from None


def _scaled_down(image, pixels: int):
    """A large image with no fewer than ``pixels`` pixels: a JPEG scaled by libjpeg as it decodes,
    any other format decoded, then reduced by a whole factor in Pillow (box filter, uint8), so that
    what follows (conversion to RGB, the resize to the model's size) never copies the full image."""
    width, height = image.size
    if image.format == "JPEG":
        scale = (pixels / (width * height)) ** 0.5
        image.draft(image.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
        return image
    factor = int((width * height / pixels) ** 0.5)
    try:
        return image.reduce(factor)
    except (ValueError, NotImplementedError):  # modes Pillow cannot reduce (palette, 1-bit)
        return image.convert("RGB").reduce(factor)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # then IHDR's length and type, its width and height (big-endian)


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(24)


def _check_pixels(path: Path, size: tuple[int, int], file_bytes: int) -> None:
    refusal = size_refusal(*size, file_bytes)
    if refusal is not None:
        raise SourceError(f"{path}: {refusal}")


def _to_rgb(path: Path, image) -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8."""
    if image.mode in _WIDE_GREY_MODES:
        grey = np.asarray(image).astype(np.int64)  # byte order already resolved by Pillow
        high = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)  # 16-bit grey: keep the high byte
        return np.ascontiguousarray(np.repeat(high[..., None], 3, axis=-1))
    if image.mode == "F":
        raise SourceError(f"{path}: unsupported pixel type (floating point, Pillow mode F)")
    if image.mode == "PA":
        image = image.convert("RGBA")  # the one mode Pillow cannot take straight to RGB
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)
