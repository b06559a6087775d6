"""Evaluation and prediction in ``keras.ops``, for Keras backends without TensorFlow (JAX, PyTorch).

- :class:`TenCropModel`: the paper's test-time averaging (the softmax over four corner crops, the
  centre crop and their mirrors) as a Keras model, so that Keras compiles it on any backend. The
  windows are those of :func:`cifarkit.device_augment.ten_crop_windows`, the same the TensorFlow
  path (:func:`cifarkit.recipes.ten_crop_transform`) takes.
- :func:`resize_shorter_centre_ops`: :func:`cifarkit.augment.resize_shorter_centre` (the central
  square, resized to the model's size) for one image to predict.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .device_augment import TEN_CROPS, run_ops


class TenCropModel(keras.Model):
    """uint8 images -> class probabilities averaged over the ten views of a saved model's recipe."""

    def __init__(self, augmentation, network, **kwargs):
        super().__init__(**kwargs)
        self.augmentation, self.network = augmentation, network

    def call(self, images):
        views = run_ops(self.augmentation.steps, self.augmentation.stats, images, "ten_crop")  # (N, 10, S, S, C)
        logits = self.network(ops.reshape(views, (-1,) + tuple(views.shape[2:])), training=False)
        probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        return ops.mean(ops.reshape(probabilities, (-1, TEN_CROPS, probabilities.shape[-1])), axis=1)


def resize_shorter_centre_ops(image: np.ndarray, size: int) -> np.ndarray:
    """One (H, W, C) uint8 image as :func:`cifarkit.augment.resize_shorter_centre` squares it: the
    central square in the image's own pixels, resized to ``size`` x ``size`` (bilinear,
    antialiased), rounded back to uint8 (half to even, as TensorFlow's path)."""
    side = min(image.shape[0], image.shape[1])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    square = image[top : top + side, left : left + side].astype(np.float32)
    resized = ops.image.resize(ops.convert_to_tensor(square[None]), (size, size), interpolation="bilinear",
                               antialias=True)  # fmt: skip
    return np.clip(np.round(ops.convert_to_numpy(resized)[0]), 0, 255).astype(np.uint8)
