"""Byte encodings the export formats use: PNG (:mod:`.png`), JPEG (:mod:`.jpeg`) and the
``tf.train.Example`` protobuf inside TFRecord framing (:mod:`.example`). None imports TensorFlow,
so export workers stay small and start at once.

This is the loop that runs 60,000 times, so encoding skips imageio's per-call plugin lookup
(several times the cost of encoding a 32x32 image). Reading stays with Pillow and TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .jpeg import encode_jpeg
from .png import encode_png, encode_pngs

IMAGE_CODECS = ("jpg", "jpeg", "png")  # "jpg" as the tree format says it, "jpeg" as TFRecord does


def encode_image(image: np.ndarray, codec: str, quality: int = 95) -> bytes:
    """Encode one (H, W, 3) uint8 image as JPEG or PNG bytes; deterministic for equal input."""
    if codec in ("jpg", "jpeg"):
        return encode_jpeg(image, quality)
    return encode_png(np.ascontiguousarray(image))


def encode_images(images, codec: str, quality: int = 95) -> Iterator[bytes]:
    """Encode a batch: an (N, H, W, 3) array (PNG filters the whole batch in one numpy pass) or
    any iterable of (H, W, 3) images, such as a folder tree's images of mixed sizes."""
    if codec not in ("jpg", "jpeg") and isinstance(images, np.ndarray):
        yield from encode_pngs(images)
        return
    for image in images:
        yield encode_image(image, codec, quality)
