"""Evaluation in ``keras.ops``, for Keras backends without TensorFlow (JAX, PyTorch).

- :class:`TenCropModel`: the paper's test-time averaging (the softmax over four corner crops, the
  centre crop and their mirrors) as a Keras model, so that Keras compiles it on any backend. The
  windows are those of :func:`cifarkit.augment.device.ten_crop_windows`, the same the TensorFlow
  path (:func:`cifarkit.augment.recipes.ten_crop_transform`) takes.
"""

from __future__ import annotations

import keras
from keras import ops

from ..augment.device import TEN_CROPS, run_ops


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
