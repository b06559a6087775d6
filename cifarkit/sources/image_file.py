"""One image file of any format Pillow reads, decoded to (H, W, 3) uint8, or refused by name.

Shared by the folder-tree source, the lazily decoded images of :mod:`.labelled` and prediction;
a module of its own so that those two sources need not import each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SourceError

# Pixels an image header may claim: 100 megapixels (a 10000 x 10000 photo, 300 MB decoded as RGB)
# is far beyond any dataset image; a bigger claim is a decompression bomb (a 20000 x 20000 PNG of
# zeros is a few hundred KB on disk and 1.2 GB decoded), refused before anything is decoded.
MAX_PIXELS = 100_000_000
# Pillow modes of 16 or 32 bits per grey pixel; scaled to 8 bits by keeping the high byte.
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: Path) -> np.ndarray:
    """Decode any image Pillow reads into (H, W, 3) uint8, the first frame of an animation.

    Grey is repeated, alpha dropped, palettes looked up, CMYK and YCCK JPEGs (Adobe's inverted
    CMYK included) converted to RGB; a header claiming more than :data:`MAX_PIXELS` is refused.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns of big or odd files; our own checks speak
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                _check_pixels(path, image.size)
                return _to_rgb(path, image)
    except SourceError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice its default limit
        raise _too_big(path, str(exc).split(",")[0]) from None
    except Exception as exc:  # Pillow raises many kinds for a crafted file; all mean "not readable"
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise SourceError(f"{path}: cannot decode image ({type(exc).__name__}: {reason})") from None


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise _too_big(path, f"{width} x {height} pixels")


def _too_big(path: Path, what: str) -> SourceError:
    return SourceError(
        f"{path}: image larger than cifarkit reads ({what}; the limit is {MAX_PIXELS // 1_000_000} "
        "megapixels), refused before decoding: a decompression bomb?"
    )


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
