"""JPEG encoding through simplejpeg (libjpeg-turbo).

About 15 us for a 32x32 image against about 90 us through Pillow: the same codec, the same quality
scale and the same 4:2:0 chroma subsampling, without Pillow's per-call set-up.
"""

from __future__ import annotations

import numpy as np

SUBSAMPLING = "420"  # Pillow's default for RGB at quality < 100, so files match what it writes


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode one (H, W, 3) uint8 image; deterministic for equal input and quality."""
    import simplejpeg  # loaded by the first JPEG, not by a PNG or raw export

    image = np.ascontiguousarray(image)
    if image.shape[-1] == 1:  # grey (MNIST): a one-component JPEG
        return simplejpeg.encode_jpeg(image, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
    return simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB", colorsubsampling=SUBSAMPLING)
