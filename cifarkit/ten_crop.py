"""Evaluation and prediction in ``keras.ops``, for Keras backends without TensorFlow (JAX, PyTorch).

- :class:`TenCropModel`: the paper's test-time averaging (the softmax over four corner crops, the
  centre crop and their mirrors) as a Keras model, so that Keras compiles it on any backend. The
  windows are those of :func:`cifarkit.device_augment.ten_crop_windows`, the same the TensorFlow
  path (:func:`cifarkit.recipes.ten_crop_transform`) takes.
- :func:`resize_shorter_centre_ops`: :func:`cifarkit.augment.resize_shorter_centre` (shorter side
  to the model's size, then the centre) for one image to predict.
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
    """One (H, W, C) uint8 image: shorter side to ``size`` (bilinear, antialiased), then the
    central ``size`` x ``size``, rounded back to uint8; the sizes rounded as TensorFlow's path
    rounds them (float32, half to even)."""
    h, w = np.float32(image.shape[0]), np.float32(image.shape[1])
    scale = np.float32(size) / min(h, w)
    new_h, new_w = (max(size, int(np.round(np.float32(side * scale)))) for side in (h, w))
    resized = ops.image.resize(ops.convert_to_tensor(image[None].astype(np.float32)), (new_h, new_w),
                               interpolation="bilinear", antialias=True)  # fmt: skip
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = ops.convert_to_numpy(resized)[0, top : top + size, left : left + size, :]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
