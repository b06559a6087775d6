"""Batch norm that trains through TensorFlow's fused kernel: the same layer, weights and maths as
``keras.layers.BatchNormalization``, about a third of its time on whitenet's activations.

Keras 3's batch norm is backend-neutral ops: a cast to float32, two reductions for the moments,
the normalisation and a cast back, each a pass over the activations and each with its own
gradient. TensorFlow's ``FusedBatchNormV3`` does the forward pass in one kernel and the backward
in one more, in bfloat16 or float32 (oneDNN's on a CPU). Measured forward and backward on
whitenet's bfloat16 activations at batch 1024: 2.5-4.1x faster; a whole whitenet step 1.26x
(``scripts/bench_batch_norm.py``, docs/BENCHMARKS.md).

Only training on TensorFlow takes the fused path, and only at channel counts where it is faster
(multiples of 16). Inference, other backends and the settings the kernel lacks (masks, renorm,
synchronised statistics, an axis other than the last of a 4-D input) run Keras's own code, so
exports (SavedModel, TFLite, ONNX) see plain ops. The moving averages are Keras's: the batch
variance without Bessel's correction, mixed in at ``momentum``.
"""

from __future__ import annotations

import keras

FUSED_DTYPES = ("float32", "bfloat16")  # what the kernel takes on a CPU (float16 only on a GPU)
# oneDNN's kernel is fast only on whole blocks of 16 channels: measured fwd+bwd at batch 128,
# 2.2-4.1x Keras's at 32, 48, 64 and 256 channels, 0.5-0.9x at 22, 24, 40, 67 and 72.
CHANNEL_BLOCK = 16


@keras.saving.register_keras_serializable(package="cifarkit")
class FusedBatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is one TensorFlow kernel."""

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and mask is None and self._fusable(inputs):
            return self._fused_training(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fusable(self, inputs) -> bool:
        rank = len(inputs.shape)
        return (
            keras.backend.backend() == "tensorflow"
            and rank == 4
            and self.axis in (-1, rank - 1)
            and inputs.shape[-1] is not None
            and inputs.shape[-1] % CHANNEL_BLOCK == 0
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES
        )

    def _fused_training(self, inputs):
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        empty = tf.zeros([0], "float32")  # the kernel's training mode takes no population statistics
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
        )  # fmt: skip
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
        variance = unbiased_variance * (count - 1.0) / count  # the kernel reports n/(n-1) times Keras's
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)
