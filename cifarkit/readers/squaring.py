"""Squaring an image of any size: its central square in its own pixels, then resized.

The one definition every reader uses for mixed-size images (image trees, TFRecord exports of
photos, ``predict``), in TensorFlow for tf.data and in ``keras.ops`` for the backends without
it; the two agree pixel for pixel. TensorFlow and Keras are imported by the function that needs
them, so a TensorFlow-free install squares through ``keras.ops`` alone.
"""

from __future__ import annotations

import numpy as np

from ..runtime.lazy import ops, tf


def centre_square(height, width):
    """``(top, left, side)`` of an image's central square, in its own pixels: the side is the
    shorter side, the odd pixel left over goes to the bottom or right."""
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


# Antialiasing (a kernel as wide as the shrink) matters only where bilinear's two taps would skip
# source pixels: a shrink by more than this factor on a side (a photo squared to CIFAR's 32). Up
# to it (at exactly 2 the taps are a 2x2 box), and enlarging, every source pixel falls under a
# tap, and plain bilinear costs a fifth as much (0.4 ms against 2.3 ms a ~400x300 photo to 256).
ANTIALIAS_FACTOR = 2


def antialiased(height: int, width: int, size: int) -> bool:
    """Whether an image of ``height`` x ``width`` is resized to ``size`` with antialiasing."""
    return max(height, width) > ANTIALIAS_FACTOR * size


def resize_square(image, size: int):
    """An image (a square, or a crop's box of any shape) to ``size`` x ``size`` uint8: bilinear with
    half-pixel centres, antialiased only where a side shrinks by more than :data:`ANTIALIAS_FACTOR`."""

    def resized(antialias: bool):
        out = tf.round(tf.image.resize(image, [size, size], method="bilinear", antialias=antialias))
        # Both filters' weights are positive and sum to 1: the result is within 0..255 already.
        return tf.cast(out, tf.uint8)

    height, width = image.shape[0], image.shape[1]
    if height is not None and width is not None:
        return resized(antialiased(height, width, size))
    shape = tf.shape(image)
    smooth = tf.reduce_max(shape[:2]) > ANTIALIAS_FACTOR * size
    return tf.cond(smooth, lambda: resized(True), lambda: resized(False))


def resize_shorter_centre(image, size: int):
    """One image of any size as a ``size`` x ``size`` square: its central square (the shorter side
    long), resized. The paper's treatment of ImageNet's variable-resolution images; for folder
    trees it runs per image in the reader so that batches have one shape.

    Cropping first, in the image's own pixels, is what a JPEG can be decoded as
    (:func:`cifarkit.readers.image_decode.decode_squared` decodes only the square), so every path (this,
    the fused JPEG read, :func:`resize_shorter_centre_ops`) agrees pixel for
    pixel. Resizing first would blend a few pixels from outside the square into its edges.
    """
    shape = tf.shape(image)
    top, left, side = centre_square(shape[0], shape[1])
    return resize_square(image[top : top + side, left : left + side, :], size)


def resize_shorter_centre_ops(image: np.ndarray, size: int) -> np.ndarray:
    """One (H, W, C) uint8 image as :func:`resize_shorter_centre` squares it: the
    central square in the image's own pixels, resized to ``size`` x ``size`` (bilinear,
    antialiased as :func:`resize_square` decides), rounded back to uint8 (half to even, as
    TensorFlow's path)."""
    side = min(image.shape[0], image.shape[1])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = image[top : top + side, left : left + side].astype(np.float32)
    resized = ops.image.resize(
        ops.convert_to_tensor(square[None]),
        (size, size),
        interpolation="bilinear",
        antialias=antialiased(side, side, size),
    )
    return np.clip(np.round(ops.convert_to_numpy(resized)[0]), 0, 255).astype(np.uint8)
